"""The OpenAI wire format, read defensively: token counts, texts, top log-prob lists and
the echoed prompt of ``/completions``.

Whatever a server sends that cannot be used raises :class:`_Garbage` (the transport
retries it, then reports the body, :mod:`interp.llm.http_transport`). Log-probs come
from top-k lists, so a token outside a list reads ``-inf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from interp.llm.base import Generation
from interp.llm.usage import usage_source

NEG_INF = float("-inf")


class _Garbage(ValueError):
    """A 2xx body that cannot be used (retried, then raised as LLMResponseError)."""


def _usage(data: dict[str, Any]) -> tuple[int, int, int]:
    """(prompt, completion, cached prompt) tokens; a malformed ``usage`` is garbage."""
    usage = data.get("usage")
    if usage is None:  # flagged by usage_source, counted by UsageCounter if it can
        return 0, 0, 0
    if not isinstance(usage, dict):
        raise _Garbage(f"usage is {usage!r}, not an object")
    p, c = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    for name, v in (("prompt_tokens", p), ("completion_tokens", c), ("cached_tokens", cached)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _Garbage(f"usage.{name}={v!r} is not a count")
    if cached > p:
        raise _Garbage(f"usage says {cached} cached of {p} prompt tokens")
    return p, c, cached


def _first_choice(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise _Garbage("the body is not a JSON object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Garbage("the body has no choices")
    return choices[0]


def _parse_chat_text(data: Any) -> Generation:
    text = (_first_choice(data).get("message") or {}).get("content")
    if not isinstance(text, str) or not text.strip():
        raise _Garbage(f"empty completion (content={text!r})")
    p, c, cached = _usage(data)
    return Generation(text, p, c, cached, usage_source(data))


def _parse_completion_text(data: Any) -> Generation:
    text = _first_choice(data).get("text")
    if not isinstance(text, str) or not text.strip():
        raise _Garbage(f"empty completion (text={text!r})")
    p, c, cached = _usage(data)
    return Generation(text, p, c, cached, usage_source(data))


def _chat_top(data: Any) -> list[dict[str, Any]]:
    """The top-k list of the reply's first position."""
    lp = _first_choice(data).get("logprobs")
    if not isinstance(lp, dict) or not lp.get("content"):
        raise _Garbage(
            "no logprobs in the reply: the server must support logprobs/top_logprobs "
            "(llama.cpp's server needs --logits_all true)"
        )
    top = lp["content"][0].get("top_logprobs")
    if not isinstance(top, list) or not top:
        raise _Garbage("no top_logprobs in the reply")
    return top


def _logprob(v: Any) -> float:
    if v is None:
        return NEG_INF
    x = float(v)
    if math.isnan(x) or x > 1e-6:
        raise _Garbage(f"logprob {v!r} is not a log-probability")
    return min(x, 0.0)


def _as_pairs(top: Any) -> list[tuple[str, float]]:
    """A top-logprobs entry as (token, logprob) pairs (completions give a dict)."""
    if top is None:
        return []
    if isinstance(top, dict):
        return [(str(k), _logprob(v)) for k, v in top.items()]
    return [(str(t["token"]), _logprob(t["logprob"])) for t in top]


def _match(top: Any, candidates: Sequence[str], targets: Sequence[str | None]) -> dict[str, float]:
    """candidate -> log P(its first token) from one position's top list (-inf if absent)."""
    pairs = [(tok.lstrip(), lp) for tok, lp in _as_pairs(top)]
    out = {}
    for cand, target in zip(candidates, targets):
        want = target
        if want is None:  # no tokenizer: the longest listed token that starts the candidate
            prefixes = [t for t, _ in pairs if t and cand.startswith(t)]
            want = max(prefixes, key=len) if prefixes else None
        hits = [lp for t, lp in pairs if want and t == want]
        out[cand] = _logsumexp(hits) if hits else NEG_INF
    return out


def _logsumexp(xs: list[float]) -> float:
    m = max(xs)
    if m == NEG_INF:
        return NEG_INF
    return m + math.log(sum(math.exp(x - m) for x in xs))


def _echoed_span(
    data: Any, prompt: str, continuation: str
) -> tuple[list[str], list[float], list[Any], bool]:
    """Tokens, log-probs and top lists of ``continuation`` inside an echoed prompt, and
    whether the server's echo was shifted by one position.

    The echo covers the prompt's tokens (the first one without a log-prob), then usually
    the generated one, whose text (``text`` minus the prompt) is excluded from the
    search. The reply's tokens are those whose text overlaps the last occurrence of
    ``continuation``; a token straddling the boundary with the template counts as the
    reply's. Matching text, not token counts, keeps this independent of how a server
    renders special tokens or whether it echoes a BOS.

    Shifted echoes: llama-cpp-python (0.3.x) pairs token i with the distribution *after*
    token i when the prompt does not start with the model's BOS (Qwen's template, for
    one), so ``token_logprobs`` are garbage and ``top_logprobs[i]`` predicts token i+1.
    Which reading is right is decided from the whole echo (:func:`_is_shifted`); when
    shifted, token i's log-prob is read from ``top_logprobs[i-1]`` (-inf if outside the
    top k) and so are its candidates.
    """
    lp = _first_choice(data).get("logprobs")
    if not isinstance(lp, dict) or not isinstance(lp.get("tokens"), list):
        raise _Garbage("no echoed logprobs: the server must support echo with logprobs")
    toks = [str(t) for t in lp["tokens"]]
    lps, tops = lp.get("token_logprobs"), lp.get("top_logprobs")
    if not isinstance(lps, list) or len(lps) != len(toks):
        raise _Garbage("token_logprobs does not match tokens")
    tops = tops if isinstance(tops, list) and len(tops) == len(toks) else [None] * len(toks)
    text = _first_choice(data).get("text")
    generated = text[len(prompt) :] if isinstance(text, str) and text.startswith(prompt) else ""
    joined = "".join(toks)
    start = -1
    if generated and joined.endswith(generated):  # the generated token is echoed too
        start = joined.rfind(continuation, 0, len(joined) - len(generated))
    if start < 0:
        start = joined.rfind(continuation)
    if start < 0:
        raise _Garbage("the echoed tokens do not contain the continuation")
    stop = start + len(continuation)
    ends, pos = [], 0
    for t in toks:
        pos += len(t)
        ends.append(pos)
    idx = [i for i in range(len(toks)) if ends[i] > start and ends[i] - len(toks[i]) < stop]
    shifted = _is_shifted(toks, lps, tops)
    if shifted:
        if idx[0] == 0:
            raise _Garbage("the continuation starts the echo: nothing predicts it")
        rows = [_as_dict(tops[i - 1]) for i in idx]
        return (
            [toks[i] for i in idx],
            [r.get(toks[i], NEG_INF) for i, r in zip(idx, rows)],
            rows,
            True,
        )
    if any(lps[i] is None for i in idx):
        raise _Garbage("a token of the continuation has no log-prob")
    return [toks[i] for i in idx], [_logprob(lps[i]) for i in idx], [tops[i] for i in idx], False


def _as_dict(top: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for tok, lp in _as_pairs(top):
        out[tok] = max(out.get(tok, NEG_INF), lp)
    return out


def _is_shifted(toks: list[str], lps: list[Any], tops: list[Any]) -> bool:
    """Whether the echo pairs each token with the distribution after it (see above).

    Aligned, a token is often among the top k of its own list (its reported log-prob
    reaches the list's other entries); shifted, it is instead often listed one position
    earlier. Whitespace-only tokens are skipped (servers render special tokens as "").
    """
    inside = ahead = 0
    for i in range(1, len(toks)):
        if not toks[i].strip() or lps[i] is None:
            continue
        others = [v for k, v in _as_dict(tops[i]).items() if k != toks[i]]
        inside += bool(others) and _logprob(lps[i]) >= min(others)
        ahead += toks[i] in _as_dict(tops[i - 1])
    return ahead >= 3 and ahead > 2 * inside
