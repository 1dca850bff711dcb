"""Content-addressed LLM response cache: a rerun of a latent range re-pays nothing.

Each entry is keyed by sha256 of (model id, method, prompt, sampling params) and
appended as one JSON line to a file owned by one interpret range (one writer), flushed
and fsynced per entry. A task killed mid-write leaves at most a torn last line; loading
skips lines that do not parse. A cached answer costs no model time and reports all of
its prompt tokens as cached, and keeps where its counts came from (``usage``: the
server's, counted with the tokenizer, or missing; see :mod:`interp.llm.usage`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

from interp.llm.base import (
    ChoiceLogprobs,
    Generation,
    LLMClient,
    Message,
    TextLogprobs,
    check_messages,
)

log = logging.getLogger(__name__)


def cache_key(model_id: str, method: str, prompt: Any, params: dict[str, Any]) -> str:
    """sha256 of everything that determines the response."""
    blob = json.dumps(
        {"model": model_id, "method": method, "prompt": prompt, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class ResponseCache:
    """Append-only JSONL map from cache key to a JSON response."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._entries: dict[str, dict[str, Any]] = {}
        self._file: Any = None
        self.n_skipped = self._load()

    def _load(self) -> int:
        if not self.path.exists():
            return 0
        skipped = 0
        for line in self.path.read_bytes().split(b"\n"):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._entries[entry["key"]] = entry["value"]
            except (ValueError, KeyError, TypeError):
                skipped += 1  # a torn write from a killed task
        if skipped:
            log.warning("%s: skipped %d unreadable line(s)", self.path, skipped)
        return skipped

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict[str, Any] | None:
        return self._entries.get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self._entries[key] = value
        f = self._open()
        f.write(json.dumps({"key": key, "value": value}, ensure_ascii=False).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())

    def _open(self) -> Any:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            torn = (
                self.path.exists()
                and self.path.stat().st_size > 0
                and not _ends_in_newline(self.path)
            )
            self._file = open(self.path, "ab")  # noqa: SIM115 - held open across puts
            if torn:  # keep the torn fragment on its own (skipped) line
                self._file.write(b"\n")
        return self._file

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _ends_in_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class CachedClient:
    """Adds the response cache to any ``LLMClient``; counts cache hits as cached tokens."""

    def __init__(self, inner: LLMClient, cache: ResponseCache) -> None:
        self.inner = inner
        self.cache = cache
        self.model_id = inner.model_id
        self.hits = 0
        self.misses = 0

    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        check_messages(messages)
        params = {"max_new_tokens": max_new_tokens, "temperature": temperature}
        key = cache_key(self.model_id, "generate", messages, params)
        if (hit := self.cache.get(key)) is not None:
            self.hits += 1
            return Generation(
                hit["text"], hit["prompt_tokens"], hit["completion_tokens"], hit["prompt_tokens"],
                hit.get("usage", "server"),
            )  # fmt: skip
        self.misses += 1
        g = await self.inner.generate(
            messages, max_new_tokens=max_new_tokens, temperature=temperature
        )
        self.cache.put(
            key,
            {
                "text": g.text,
                "prompt_tokens": g.prompt_tokens,
                "completion_tokens": g.completion_tokens,
                **_usage_source(g),
            },
        )
        return g

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        keys = [
            cache_key(self.model_id, "next_token_logprobs", p, {"candidates": candidates})
            for p in prompts
        ]
        out: list[ChoiceLogprobs | None] = []
        for key in keys:
            hit = self.cache.get(key)
            out.append(
                None
                if hit is None
                else ChoiceLogprobs(
                    _floats(hit["logprobs"]),
                    hit["prompt_tokens"],
                    hit["prompt_tokens"],
                    hit.get("usage", "server"),
                )
            )
        missing = [i for i, o in enumerate(out) if o is None]
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = await self.inner.next_token_logprobs([prompts[i] for i in missing], candidates)
            for i, c in zip(missing, fresh):
                out[i] = c
                value = {"logprobs": _jsonable(c.logprobs), "prompt_tokens": c.prompt_tokens,
                         **_usage_source(c)}  # fmt: skip
                self.cache.put(keys[i], value)
        return [o for o in out if o is not None]

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        check_messages(messages)
        params = {"continuation": continuation, "candidates": list(candidates)}
        key = cache_key(self.model_id, "continuation_logprobs", messages, params)
        if (hit := self.cache.get(key)) is not None:
            self.hits += 1
            return TextLogprobs(
                hit["tokens"],
                [_float(x) for x in hit["logprobs"]],
                [_floats(c) for c in hit["candidates"]],
                hit["prompt_tokens"],
                hit["prompt_tokens"],
                hit.get("usage", "server"),
            )
        self.misses += 1
        t = await self.inner.continuation_logprobs(messages, continuation, candidates)
        value = {
            "tokens": t.tokens,
            "logprobs": [_json_float(x) for x in t.logprobs],
            "candidates": [_jsonable(c) for c in t.candidates],
            "prompt_tokens": t.prompt_tokens,
            **_usage_source(t),
        }
        self.cache.put(key, value)
        return t

    def close(self) -> None:
        self.cache.close()
        self.inner.close()


def _usage_source(result: Any) -> dict[str, str]:
    """Where a response's token counts came from, kept unless the server's ``usage``
    (so a hit on a reply without usage is still flagged)."""
    return {} if result.usage == "server" else {"usage": result.usage}


def _json_float(v: float) -> float | None:
    """-inf is not JSON: store it as null."""
    return None if v == float("-inf") else v


def _float(v: float | None) -> float:
    return float("-inf") if v is None else float(v)


def _jsonable(logprobs: dict[str, float]) -> dict[str, float | None]:
    return {k: _json_float(v) for k, v in logprobs.items()}


def _floats(logprobs: dict[str, float | None]) -> dict[str, float]:
    return {k: _float(v) for k, v in logprobs.items()}
