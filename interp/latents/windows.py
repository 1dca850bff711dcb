"""Context windows of one latent: activating contexts, and example windows cut from them.

A latent's entries are (global token index, activation), token-ascending as the store
keeps them. Context ``c`` is global tokens ``[c * ctx_len, (c + 1) * ctx_len)``. An
example is ``window`` tokens of one context; an activating example puts the context's
strongest token ``ceil(center * window)`` tokens from the window's start (clipped so the
window stays inside its context).

Legend: ``n`` entries of the latent, ``C`` activating contexts, ``W`` window tokens.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np

ExampleKind = Literal["active", "random", "neighbour", "similar"]


class Example(NamedTuple):
    """A window of text shown to the LLM."""

    tokens: np.ndarray  # [W] token ids
    acts: np.ndarray  # [W] float32 activation of the latent per token (0 = silent)
    quantile: int  # 0 = strongest activating quantile; -1 = non-activating
    context: int  # index of the context window in the collected tokens
    kind: ExampleKind = "active"  # how it was chosen; non-activating ones never "active"


class ActiveContexts(NamedTuple):
    """Activating contexts of one latent, in context order."""

    context: np.ndarray  # [C] int64 context index
    max_act: np.ndarray  # [C] float32 strongest activation in the context
    max_tok: np.ndarray  # [C] int64 global token index of that activation


def active_contexts(tok: np.ndarray, val: np.ndarray, ctx_len: int) -> ActiveContexts:
    """Group entries (``tok`` ascending) by context; the first maximum wins ties."""
    tok = np.asarray(tok, dtype=np.int64)
    val = np.asarray(val, dtype=np.float32)
    if len(tok) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return ActiveContexts(empty, np.zeros(0, np.float32), empty)
    if np.any(np.diff(tok) < 0):
        raise ValueError("token indices of a latent must be ascending (the store's CSR order)")
    ctx = tok // ctx_len
    starts = np.flatnonzero(np.r_[True, ctx[1:] != ctx[:-1]])
    # sorted by context, then strongest, then earliest: each group keeps its slots
    first = np.lexsort((tok, -val, ctx))[starts]
    return ActiveContexts(ctx[starts], val[first], tok[first])


def top_contexts(found: ActiveContexts, n: int) -> ActiveContexts:
    """The ``n`` strongest activating contexts, strongest first (ties: earlier context)."""
    order = strength_order(found)[: max(n, 0)]
    return ActiveContexts(found.context[order], found.max_act[order], found.max_tok[order])


def strength_order(found: ActiveContexts) -> np.ndarray:
    """[C] indices into ``found``, strongest context first (ties: earlier context)."""
    return np.argsort(-found.max_act, kind="stable")


def tokens_before(window: int, center: float) -> int:
    """Tokens of a window before its centre token: ``ceil(center * window)``, at most W-1."""
    return min(window - 1, max(0, math.ceil(center * window - 1e-9)))


class Cutter:
    """Cuts example windows of one latent out of the collected token array."""

    def __init__(
        self,
        tok: np.ndarray,
        val: np.ndarray,
        token_ids: np.ndarray,
        ctx_len: int,
        window: int,
        center: float,
    ) -> None:
        self.tok = np.asarray(tok, dtype=np.int64)
        self.val = np.asarray(val, dtype=np.float32)
        self.token_ids = token_ids
        self.ctx_len = ctx_len
        self.window = window
        self.before = tokens_before(window, center)

    def around(self, token: int, quantile: int, kind: ExampleKind) -> Example:
        """The window whose centre is global ``token`` (clipped to its context)."""
        ctx, pos = divmod(int(token), self.ctx_len)
        start = min(max(pos - self.before, 0), self.ctx_len - self.window)
        return self.at(ctx, start, quantile, kind)

    def at(self, ctx: int, start: int, quantile: int, kind: ExampleKind) -> Example:
        """The window of context ``ctx`` starting ``start`` tokens into it."""
        lo = ctx * self.ctx_len + start
        hi = lo + self.window
        acts = np.zeros(self.window, dtype=np.float32)
        a, b = np.searchsorted(self.tok, [lo, hi])
        acts[self.tok[a:b] - lo] = self.val[a:b]
        return Example(np.asarray(self.token_ids[lo:hi]).copy(), acts, quantile, int(ctx), kind)
