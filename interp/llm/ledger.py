"""What every attempt of an interpret range paid the LLM: one JSON line per paid call.

A range's records count the tokens of its last attempt only. When an attempt is killed
(SIGKILL, preemption, a time limit) its records are never written, and the rerun
answers the calls that finished from the response cache (at no cost), so without a
ledger the tokens the killed attempt paid for would be counted nowhere.

:class:`LedgerClient` wraps the backend, *inside* the response cache, so it sees
exactly the calls that reached the model, and appends each one's usage as it returns
(flushed, not fsynced: a killed process loses nothing it wrote; a torn last line is
skipped when read). Each attempt of range ``i`` writes its own file,
``<interpret dir>/llm_ledger/r{i:05d}.a{n:04d}.jsonl`` (``n`` = 1 + the attempts that
paid before it), created on its first paid call. A call is recorded when it returns: a
request in flight when the process dies is not (the server may have computed it), and
a batch of log-prob prompts is recorded prompt by prompt only where the backend sends
one request per prompt (HTTP). Lines hold the fields of
:class:`interp.llm.base.TokenUsage` plus ``method`` and ``t`` (unix time).
:func:`read_ledger` sums them; gather reports the sum per point beside the tokens in
the final records.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from interp.llm.base import (
    ChoiceLogprobs,
    Generation,
    LLMClient,
    Message,
    TextLogprobs,
    TokenUsage,
)

log = logging.getLogger(__name__)

FIELDS = tuple(TokenUsage().as_dict())


class Ledger:
    """The append-only file of one attempt of range ``index`` under ``folder``."""

    def __init__(self, folder: Path, index: int) -> None:
        self.folder = Path(folder)
        self.index = index
        self.path: Path | None = None  # chosen on the first paid call
        self._file: Any = None

    def add(self, method: str, usage: TokenUsage) -> None:
        line = {"method": method, **usage.as_dict(), "t": round(time.time(), 3)}
        f = self._open()
        f.write(json.dumps(line) + "\n")
        f.flush()

    def _open(self) -> Any:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            n = len(attempt_files(self.folder, self.index)) + 1
            while True:  # "x": never append to another attempt's file
                self.path = self.folder / f"r{self.index:05d}.a{n:04d}.jsonl"
                try:
                    self._file = open(self.path, "x")  # noqa: SIM115 - held across calls
                    break
                except FileExistsError:
                    n += 1
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def attempt_files(folder: Path, index: int | None = None) -> list[Path]:
    """The ledger files of range ``index`` (every range when None), in attempt order."""
    pattern = "r*.a*.jsonl" if index is None else f"r{index:05d}.a*.jsonl"
    return sorted(Path(folder).glob(pattern))


def read_ledger(folder: Path, index: int | None = None) -> dict[str, int]:
    """Totals over every attempt's ledger of range ``index`` (every range when None):
    the :class:`TokenUsage` fields, ``attempts`` (files) and ``unreadable`` lines."""
    total = dict.fromkeys(FIELDS, 0)
    files = attempt_files(folder, index)
    unreadable = 0
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
                counts = {k: int(entry.get(k, 0)) for k in FIELDS}
            except (ValueError, TypeError, AttributeError):
                unreadable += 1  # the torn last line of a killed attempt
                continue
            for k, v in counts.items():
                total[k] += v
    if unreadable:
        log.warning("%s: skipped %d unreadable ledger line(s)", folder, unreadable)
    return {**total, "attempts": len(files), "unreadable": unreadable}


class LedgerClient:
    """Wraps the backend: every call that reaches it is appended to ``ledger``."""

    def __init__(self, inner: LLMClient, ledger: Ledger) -> None:
        self.inner = inner
        self.ledger = ledger
        self.model_id = inner.model_id

    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        g = await self.inner.generate(
            messages, max_new_tokens=max_new_tokens, temperature=temperature
        )
        usage = TokenUsage()
        usage.add_generation(g)
        self.ledger.add("generate", usage)
        return g

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        """A backend that sends one request per prompt (HTTP) is asked prompt by prompt,
        all at once, so the prompts answered before a batch fails or is killed are in
        the ledger; one that batches prompts in one forward keeps its batch."""
        if getattr(self.inner, "one_request_per_prompt", False) and len(prompts) > 1:
            outs = await asyncio.gather(*(self._choices([p], candidates) for p in prompts))
            return [c for out in outs for c in out]
        return await self._choices(prompts, candidates)

    async def _choices(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        out = await self.inner.next_token_logprobs(prompts, candidates)
        usage = TokenUsage()
        usage.add_choices(out)
        self.ledger.add("next_token_logprobs", usage)
        return out

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        out = await self.inner.continuation_logprobs(messages, continuation, candidates)
        usage = TokenUsage()
        usage.add_text(out)
        self.ledger.add("continuation_logprobs", usage)
        return out

    def close(self) -> None:
        self.ledger.close()
        self.inner.close()
