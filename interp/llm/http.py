"""OpenAI-compatible HTTP backend: vLLM servers, llama.cpp's server, OpenRouter.

``OpenAIClient`` speaks the ``LLMClient`` protocol to one or more *replicas* of the same
model. Three modules, one responsibility each:

* :mod:`interp.llm.http_transport`: reaching the server (spreading over replicas and
  failover, retries with backoff, the per-attempt deadline, the concurrency bound, and
  the API key, sent only to ``llm.base_urls``); the errors it raises
  (:mod:`interp.llm.errors`) are re-exported here.
* :mod:`interp.llm.http_wire`: reading the OpenAI wire format (texts, ``usage``, top
  log-prob lists, the echoed prompt of ``/completions``).
* here: the three protocol calls built from those, client-side chat templates, and
  the accounting of replies without ``usage``.

**Accounting.** Token counts come from ``usage`` (``prompt_tokens``,
``completion_tokens``, ``prompt_tokens_details.cached_tokens``); a reply without it is
counted with ``llm.tokenizer`` or flagged ``usage_missing``, with one warning
(:mod:`interp.llm.usage`). ``stats`` counts requests, retries, failovers, failures and
those replies so a stage can report them.

**Log-probabilities.** OpenAI-style servers return only the top ``llm.top_logprobs``
tokens per position, so a candidate outside that list reads as ``-inf``. See
:meth:`OpenAIClient.next_token_logprobs` for what that does to P(Yes)/P(No).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from interp.llm.base import ChoiceLogprobs, Generation, Message, TextLogprobs, check_messages
from interp.llm.config import LLMConfig
from interp.llm.errors import LLMHTTPError, LLMResponseError, LLMUnavailableError
from interp.llm.http_transport import HTTPTransport
from interp.llm.http_wire import (
    NEG_INF,
    _chat_top,
    _echoed_span,
    _match,
    _parse_chat_text,
    _parse_completion_text,
    _usage,
)
from interp.llm.spec import Discover
from interp.llm.usage import UsageCounter, usage_source

__all__ = ["LLMHTTPError", "LLMResponseError", "LLMUnavailableError", "OpenAIClient"]

log = logging.getLogger(__name__)

SHIFTED_TOP_K = 200  # top list asked for when a server's echo is shifted (see _echoed_span)


class OpenAIClient(HTTPTransport):
    """``LLMClient`` over an OpenAI-compatible HTTP API (chat and legacy completions).

    ``discover`` returns the live base URLs (each ending in ``/v1``); it is called every
    ``refresh_s`` seconds and whenever no known replica is live. ``transport`` is for
    tests (an ``httpx`` transport); the other keywords tune :class:`HTTPTransport`.
    """

    one_request_per_prompt = True  # the ledger records each prompt of a batch as it returns

    def __init__(
        self, cfg: LLMConfig, *, discover: Discover | None = None, **transport_kw: Any
    ) -> None:
        super().__init__(cfg, discover=discover, **transport_kw)
        self.served_model = cfg.served_model or cfg.model
        self.model_id = f"openai:{self.served_model}"
        self._tok: Any = None
        self._warned_shift = False
        self.usage_counter = UsageCounter(self)  # replies without usage: counted or flagged

    def __repr__(self) -> str:  # never the headers: they hold the key
        return f"OpenAIClient(model={self.served_model!r}, urls={self.replicas.urls})"

    def _missing_usage(self, url: str) -> None:
        self.usage_counter.server = url  # named in the warning

    # ------------------------------------------------------------------ public (async)
    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        """Chat completion; a chat ending with an assistant message is continued from it
        (rendered client-side with ``llm.tokenizer`` and sent to /completions)."""
        check_messages(messages)
        if max_new_tokens <= 0 or temperature < 0:
            raise ValueError("generate needs max_new_tokens > 0 and temperature >= 0")
        sampling = {"max_tokens": max_new_tokens, "temperature": temperature}
        if messages[-1]["role"] == "assistant":
            prompt = self.render_chat(messages, prefill=True, why="an assistant prefill")
            body = {"model": self.served_model, "prompt": prompt, **sampling}
            g = await self._request("completions", body, _parse_completion_text)
            return self.usage_counter.fill(g, prompt, g.text)
        body = {"model": self.served_model, "messages": messages, **sampling}
        g = await self._request("chat/completions", body, _parse_chat_text)
        return self.usage_counter.fill(g, messages, g.text)

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        """log P(first token of each candidate) as the reply's first token, per chat.

        One chat completion with ``max_tokens=1`` and ``top_logprobs=k`` per prompt
        (k = ``llm.top_logprobs``), all in flight at once. A candidate's first token is
        found by the tokenizer when ``llm.tokenizer`` is set, else as the longest top
        token that is a prefix of the candidate; leading spaces are ignored and tokens
        that match the same way are summed.

        The top-k cut: a candidate missing from the top k gets ``-inf``, although its
        true log-prob is only known to be at most the k-th listed one. So when the
        scorer normalises P(Yes) / (P(Yes) + P(No)) and "No" is missing, the result is
        1 (an upper bound); when both are missing the ratio is undefined (nan, the
        scorer's to handle). With an instruction-following model and k = 20 both
        answers are nearly always listed; a small k makes this bias real.
        """
        if not candidates:
            raise ValueError("candidates is empty: pass the answers to score, e.g. ['Yes', 'No']")
        for p in prompts:
            check_messages(p)
        targets = self._candidate_tokens(candidates)

        def parse(data: Any) -> ChoiceLogprobs:
            top = _chat_top(data)
            p, _, cached = _usage(data)
            return ChoiceLogprobs(_match(top, candidates, targets), p, cached, usage_source(data))

        async def one(messages: list[Message]) -> ChoiceLogprobs:
            body = {
                "model": self.served_model,
                "messages": messages,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": True,
                "top_logprobs": self.cfg.top_logprobs,
            }
            return self.usage_counter.fill(
                await self._request("chat/completions", body, parse), messages
            )

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        """Teacher-force ``continuation`` as the reply: /completions with ``echo``.

        The chat is rendered client-side with ``llm.tokenizer`` (the server's template
        cannot be reached through /completions); without one this raises ValueError.
        The reply's tokens are located in the echoed prompt by their text. Candidate
        log-probs per position come from the top-k lists (-inf outside the top k).
        """
        check_messages(messages)
        if not continuation:
            raise ValueError("continuation is empty: pass the reply text to score")
        head = self.render_chat(messages, prefill=False, why="continuation_logprobs")
        prompt = head + continuation
        targets = self._candidate_tokens(candidates) if candidates else []
        body = {"model": self.served_model, "prompt": prompt, "max_tokens": 1,
                "temperature": 0.0, "echo": True, "logprobs": self.cfg.top_logprobs}  # fmt: skip

        def parse(data: dict[str, Any]) -> tuple[TextLogprobs, bool]:
            toks, lps, tops, shifted = _echoed_span(data, prompt, continuation)
            cands = [_match(top, candidates, targets) if candidates else {} for top in tops]
            p, _, cached = _usage(data)
            return TextLogprobs(toks, lps, cands, p, cached, usage_source(data)), shifted

        out, shifted = await self._request("completions", body, parse)
        if shifted and NEG_INF in out.logprobs and body["logprobs"] < SHIFTED_TOP_K:
            # a token fell outside the short top list: ask once more with a long one
            body = {**body, "logprobs": SHIFTED_TOP_K}
            out, shifted = await self._request("completions", body, parse)
        if shifted and not self._warned_shift:
            self._warned_shift = True
            log.warning(
                "%s echoes log-probs shifted by one position (llama-cpp-python with a "
                "prompt that does not start with BOS): reading them from the top-%d lists, "
                "tokens outside those read -inf; vLLM or backend=transformers are exact",
                self.served_model, body["logprobs"],
            )  # fmt: skip
        return self.usage_counter.fill(out, prompt)

    # ------------------------------------------------------------------ templates
    def render_chat(self, messages: list[Message], *, prefill: bool, why: str) -> str:
        """The chat as the model sees it, assistant turn opened (or continued)."""
        tok = self._tokenizer(why)
        text = tok.apply_chat_template(
            messages, add_generation_prompt=not prefill, continue_final_message=prefill,
            tokenize=False,
        )  # fmt: skip
        # The server tokenises the prompt as plain text and adds BOS itself when its
        # tokenizer does: drop a rendered BOS then, or the model would see two.
        bos = tok.bos_token
        if bos and text.startswith(bos) and _adds_bos(tok):
            text = text[len(bos) :]
        return text

    def _tokenizer(self, why: str) -> Any:
        if self._tok is None:
            if not self.cfg.tokenizer:
                raise ValueError(
                    f"{why} over HTTP needs the served model's chat template: set "
                    "llm.tokenizer to the same model's tokenizer (a bundled name like "
                    "smollm2-135m-instruct, a local HF folder, or a hub id)"
                )
            from interp.models.load import load_tokenizer

            self._tok = load_tokenizer(self.cfg.tokenizer)
        return self._tok

    def _candidate_tokens(self, candidates: list[str]) -> list[str | None]:
        """Each candidate's first token as text (None = find it by prefix in the reply)."""
        if not self.cfg.tokenizer:
            return [None] * len(candidates)
        tok = self._tokenizer("candidate tokens")
        out: list[str | None] = []
        for c in candidates:
            ids = tok(c, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"candidate {c!r} tokenizes to nothing: use a non-empty word")
            out.append(tok.decode(ids[:1]).lstrip())
        return out


def _adds_bos(tok: Any) -> bool:
    ids = tok("a", add_special_tokens=True)["input_ids"]
    return bool(ids) and tok.bos_token_id is not None and ids[0] == tok.bos_token_id
