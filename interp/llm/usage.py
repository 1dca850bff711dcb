"""Token counts of HTTP replies that came without ``usage``: counted here, or flagged.

An OpenAI-compatible server is asked for ``usage`` with every reply, but some omit it
(proxies, older llama.cpp builds, some hosted APIs). Counting such a call as 0 tokens
would make every cost column under-report with no sign of it, so each call's
``usage`` says where its counts come from:

* ``"server"``: the reply's ``usage``;
* ``"tokenizer"``: counted here with ``llm.tokenizer`` (the prompt as rendered with
  its chat template, the completion's text); an estimate, since the server's template
  and stop tokens may differ by a few tokens, and cached prompt tokens are unknown (0);
* ``"missing"``: no ``usage`` and no tokenizer (or it failed): 0 tokens, flagged.

The client's ``stats`` count the last two (``usage_tokenizer``, ``usage_missing``),
each record counts its calls of each kind (``tokens.usage_tokenizer``,
``tokens.usage_missing``) and the first such reply logs one warning per client naming
the server and the fix.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol, TypeVar

from interp.llm.base import Message

log = logging.getLogger(__name__)

USAGE_SOURCES = ("server", "tokenizer", "missing")

T = TypeVar("T")


class _Client(Protocol):
    """What the counter needs of ``OpenAIClient``."""

    cfg: Any
    stats: dict[str, int]

    def render_chat(self, messages: list[Message], *, prefill: bool, why: str) -> str: ...

    def _tokenizer(self, why: str) -> Any: ...


def usage_source(data: Any) -> str:
    """The source of a reply's counts: "server" if it carries ``usage``, else "missing"."""
    return "server" if isinstance(data, dict) and data.get("usage") is not None else "missing"


class UsageCounter:
    """Fills in the token counts of one client's replies that came without ``usage``."""

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.server = ""  # the URL of the last reply without usage (set by the client)
        self._warned = False
        client.stats.setdefault("usage_tokenizer", 0)
        client.stats.setdefault("usage_missing", 0)

    def fill(self, result: T, prompt: str | list[Message], completion: str = "") -> T:
        """``result`` (a Generation, ChoiceLogprobs or TextLogprobs) with its counts
        from the tokenizer when the server sent none; unchanged when it did."""
        if getattr(result, "usage", "server") != "missing":
            return result
        counted, why = self._count(prompt, completion)
        self._warn(why)
        if counted is None:
            self.client.stats["usage_missing"] += 1
            return result
        self.client.stats["usage_tokenizer"] += 1
        n_prompt, n_completion = counted
        fields = {"prompt_tokens": n_prompt, "cached_prompt_tokens": 0, "usage": "tokenizer"}
        if hasattr(result, "completion_tokens"):
            fields["completion_tokens"] = n_completion
        return dataclasses.replace(result, **fields)  # type: ignore[type-var]

    def _count(self, prompt: str | list[Message], completion: str) -> tuple[Any, str]:
        """((prompt tokens, completion tokens) or None, why not)."""
        if not self.client.cfg.tokenizer:
            return None, "llm.tokenizer is not set"
        try:
            tok = self.client._tokenizer("counting tokens")
            if not isinstance(prompt, str):
                prompt = self.client.render_chat(prompt, prefill=False, why="counting tokens")
            n_prompt = len(tok(prompt, add_special_tokens=True)["input_ids"])
            n_completion = len(tok(completion, add_special_tokens=False)["input_ids"])
        except Exception as e:  # a tokenizer that fails must not fail the call
            return None, f"llm.tokenizer={self.client.cfg.tokenizer!r} failed: {e}"
        return (n_prompt, n_completion), ""

    def _warn(self, why_not: str) -> None:
        if self._warned:
            return
        self._warned = True
        server = self.server or "the server"
        if not why_not:
            log.warning(
                "%s sends replies without 'usage': counting their tokens with "
                "llm.tokenizer=%s instead (an estimate; records count such calls in "
                "tokens.usage_tokenizer)", server, self.client.cfg.tokenizer,
            )  # fmt: skip
            return
        log.warning(
            "%s sends replies without 'usage' and %s: their tokens are recorded as 0 and "
            "flagged (tokens.usage_missing on each record, usage_missing in the summary). "
            "Fix: set llm.tokenizer to the served model's tokenizer to count them here, or "
            "use a server that reports usage (vLLM and llama.cpp's server do)",
            server, why_not,
        )  # fmt: skip
