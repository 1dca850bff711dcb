"""The LLM client protocol every explainer and scorer talks to, and token accounting.

Two calls cover detection/fuzzing-style auto-interpretability: free generation (the
explainer) and the log-probability of a few candidate first tokens (the scorers read
P(Yes)/P(No) instead of parsing generated text, so a scorer never fails to parse).

Sampling parameters are arguments of each call, never state on the client: delphi's
shared mutable ``SamplingParams`` leaked one scorer's settings into the next call.

Token accounting distinguishes *logical* prompt tokens (what a stateless API would
bill: the whole prompt of every call) from *computed* ones (what this process ran
through the model). The difference is ``cached_prompt_tokens``: tokens answered from
the response cache or from a reused prompt-prefix KV cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Message = dict[str, str]  # {"role": "system" | "user" | "assistant", "content": str}
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class Generation:
    """One generated completion."""

    text: str  # decoded completion, special tokens removed
    prompt_tokens: int  # logical prompt length, chat template included
    completion_tokens: int  # tokens sampled (a final end-of-turn token included)
    cached_prompt_tokens: int  # of prompt_tokens, how many were not computed by this call
    usage: str = "server"  # where the counts come from (interp.llm.usage.USAGE_SOURCES)


@dataclass(frozen=True)
class ChoiceLogprobs:
    """Log-probabilities of candidate answers as the assistant's first token."""

    logprobs: dict[str, float]  # candidate -> log P(its first token); -inf if unknown
    prompt_tokens: int
    cached_prompt_tokens: int
    usage: str = "server"  # where the counts come from (interp.llm.usage.USAGE_SOURCES)


@dataclass(frozen=True)
class TextLogprobs:
    """Log-probabilities of a given (teacher-forced) assistant reply, token by token.

    ``tokens[i]`` is the i-th token of the reply as the backend's tokenizer split it,
    ``logprobs[i]`` = log P(tokens[i] | prompt, tokens[:i]). ``candidates[i]`` maps each
    requested candidate string to log P(its first token) at position i (before
    ``tokens[i]`` is seen); empty dicts when no candidates were requested.
    """

    tokens: list[str]
    logprobs: list[float]
    candidates: list[dict[str, float]]
    prompt_tokens: int  # the chat prompt (template included) plus the reply
    cached_prompt_tokens: int
    usage: str = "server"  # where the counts come from (interp.llm.usage.USAGE_SOURCES)


@runtime_checkable
class LLMClient(Protocol):
    """An explainer/scorer language model. Implementations bound their own concurrency."""

    model_id: str

    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        """Complete one chat; greedy when ``temperature == 0``.

        A chat ending with an assistant message asks for its continuation (a prefill);
        the returned text is only the continuation.
        """
        ...

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        """For each chat, log P(first token of each candidate) as the reply's first token."""
        ...

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        """Teacher-force ``continuation`` as the assistant's reply to ``messages``.

        Per-token log-probabilities of the reply (surprisal) and, at every reply
        position, log P(first token of each candidate) (simulation reads the 0-10
        distribution at each activation slot).
        """
        ...

    def close(self) -> None:
        """Release files, connections or the model."""
        ...


def check_messages(messages: list[Message]) -> None:
    """Reject malformed chats early, with the fix, instead of deep inside a template."""
    if not messages:
        raise ValueError("messages is empty: pass at least one {'role': 'user', 'content': ...}")
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise ValueError(
                f"messages[{i}]={m!r} must be a dict with role in {ROLES} and a str content"
            )


@dataclass
class TokenUsage:
    """Running totals of one latent's (or one task's) LLM calls.

    ``usage_tokenizer`` / ``usage_missing`` count the calls whose server sent no token
    counts: counted with ``llm.tokenizer`` instead, or not at all (0 tokens added).
    """

    prompt: int = 0  # logical prompt tokens
    completion: int = 0
    prompt_computed: int = 0  # prompt tokens actually run through the model here
    calls: int = 0
    usage_tokenizer: int = 0
    usage_missing: int = 0

    def _count(self, source: str) -> None:
        self.calls += 1
        self.usage_tokenizer += source == "tokenizer"
        self.usage_missing += source == "missing"

    def add_generation(self, g: Generation) -> None:
        self.prompt += g.prompt_tokens
        self.completion += g.completion_tokens
        self.prompt_computed += g.prompt_tokens - g.cached_prompt_tokens
        self._count(g.usage)

    def add_choices(self, choices: list[ChoiceLogprobs]) -> None:
        for c in choices:
            self.prompt += c.prompt_tokens
            self.prompt_computed += c.prompt_tokens - c.cached_prompt_tokens
            self._count(c.usage)

    def add_text(self, t: TextLogprobs) -> None:
        """A teacher-forced reply: prompt and reply are all prompt tokens (nothing sampled)."""
        self.prompt += t.prompt_tokens
        self.prompt_computed += t.prompt_tokens - t.cached_prompt_tokens
        self._count(t.usage)

    def add(self, other: TokenUsage) -> None:
        for name, value in other.as_dict().items():
            setattr(self, name, getattr(self, name) + value)

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "prompt_computed": self.prompt_computed,
            "calls": self.calls,
            "usage_tokenizer": self.usage_tokenizer,
            "usage_missing": self.usage_missing,
        }


class MeteredClient:
    """Wraps a client and adds every call's tokens to ``usage`` (one meter per latent)."""

    def __init__(self, inner: LLMClient) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.usage = TokenUsage()

    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        g = await self.inner.generate(
            messages, max_new_tokens=max_new_tokens, temperature=temperature
        )
        self.usage.add_generation(g)
        return g

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        out = await self.inner.next_token_logprobs(prompts, candidates)
        self.usage.add_choices(out)
        return out

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        out = await self.inner.continuation_logprobs(messages, continuation, candidates)
        self.usage.add_text(out)
        return out

    def close(self) -> None:
        self.inner.close()
