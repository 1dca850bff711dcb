"""Examples of one latent for the explainer and the scorers, from its store entries.

A latent's entries are (global token index, activation). Its *activating contexts* are
the context windows (``ctx_len`` tokens each) where it fires at least once; an example
is ``window`` tokens cut from such a context around its strongest token, which sits at
about 3/4 of the example so the LLM sees what led up to it.

Contexts are ranked by their max activation and cut into ``n_quantiles`` equal-count
quantiles (0 = strongest). Within each quantile the explainer's and the scorers'
examples are drawn from one shuffled order, the explainer's first: the two sets are
disjoint by construction (delphi reseeds both draws identically, so its explainer's
top examples are scored again). Non-activating examples come from contexts where the
latent never fires, without replacement. Everything is deterministic given
(``cfg.seed``, latent).

Legend: ``n`` entries of the latent, ``C`` activating contexts, ``W`` window tokens.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

from interp.config import ExamplesConfig


class Example(NamedTuple):
    """A window of text shown to the LLM."""

    tokens: np.ndarray  # [W] token ids
    acts: np.ndarray  # [W] float32 activation of the latent per token (0 = silent)
    quantile: int  # 0 = strongest activating quantile; -1 = non-activating
    context: int  # index of the context window in the collected tokens


class LatentExamples(NamedTuple):
    """Everything the explainer and the scorers see of one latent."""

    explain: list[Example]
    score_active: list[Example]
    score_inactive: list[Example]
    n_active_contexts: int
    status: Literal["ok", "too_rare"]


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
    order = np.argsort(-found.max_act, kind="stable")[: max(n, 0)]
    return ActiveContexts(found.context[order], found.max_act[order], found.max_tok[order])


def quantile_of_rank(n: int, n_quantiles: int) -> np.ndarray:
    """[n] quantile of each rank (rank 0 = strongest): equal-count slices, top first."""
    q = np.empty(n, dtype=np.int64)
    for i, part in enumerate(np.array_split(np.arange(n), n_quantiles)):
        q[part] = i
    return q


def spread(total: int, capacity: np.ndarray) -> np.ndarray:
    """Deal ``total`` items round-robin over bins with ``capacity`` (top bins first)."""
    take = np.zeros(len(capacity), dtype=np.int64)
    while total > 0 and (capacity - take).sum() > 0:
        for q in range(len(capacity)):
            if total and take[q] < capacity[q]:
                take[q] += 1
                total -= 1
    return take


def split_counts(n_contexts: int, cfg: ExamplesConfig) -> tuple[int, int]:
    """How many explain / score examples a latent with ``n_contexts`` gets.

    With fewer contexts than both sets want, they share what exists in the configured
    proportion, so a rare latent is still scored on held-out examples.
    """
    want = cfg.n_explain + cfg.n_score_active
    if n_contexts >= want:
        return cfg.n_explain, cfg.n_score_active
    n_explain = min(cfg.n_explain, max(1, round(n_contexts * cfg.n_explain / want)))
    return n_explain, min(cfg.n_score_active, n_contexts - n_explain)


def build_examples(
    tok: np.ndarray,
    val: np.ndarray,
    token_ids: np.ndarray,
    ctx_len: int,
    cfg: ExamplesConfig,
    latent: int,
) -> LatentExamples:
    """Explain and score examples of latent ``latent`` from its (tok, val) entries."""
    if cfg.window > ctx_len:
        raise ValueError(f"examples.window={cfg.window} exceeds data.ctx_len={ctx_len}")
    n_ctx = len(token_ids) // ctx_len
    found = active_contexts(tok, val, ctx_len)
    n_active = len(found.context)
    if n_active < cfg.min_examples:
        return LatentExamples([], [], [], n_active, "too_rare")
    rng = np.random.default_rng((cfg.seed, latent))
    rank = np.argsort(-found.max_act, kind="stable")  # strongest first, ties by context
    quantile = quantile_of_rank(n_active, cfg.n_quantiles)
    pools = [rng.permutation(rank[quantile == q]) for q in range(cfg.n_quantiles)]
    sizes = np.array([len(p) for p in pools])
    n_explain, n_score = split_counts(n_active, cfg)
    take_e = spread(n_explain, sizes)
    take_s = spread(n_score, sizes - take_e)
    cut = _Cutter(tok, val, token_ids, ctx_len, cfg.window)
    position = np.empty(n_active, dtype=np.int64)
    position[rank] = np.arange(n_active)
    explain, score = [], []
    for q, pool in enumerate(pools):
        chosen_e = sorted(pool[: take_e[q]], key=lambda i: position[i])  # strongest first
        explain += [cut.active(found, i, q) for i in chosen_e]
        score += [cut.active(found, i, q) for i in pool[take_e[q] : take_e[q] + take_s[q]]]
    inactive_ctx = _inactive_contexts(found.context, n_ctx, cfg.n_score_inactive, rng)
    inactive = [cut.inactive(int(c), rng) for c in inactive_ctx]
    return LatentExamples(explain, score, inactive, n_active, "ok")


def _inactive_contexts(
    active: np.ndarray, n_ctx: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Up to ``n`` distinct contexts where the latent never fires."""
    silent = np.setdiff1d(np.arange(n_ctx), active, assume_unique=True)
    return rng.choice(silent, size=min(n, len(silent)), replace=False)


class _Cutter:
    """Cuts example windows out of the collected token array."""

    def __init__(
        self, tok: np.ndarray, val: np.ndarray, token_ids: np.ndarray, ctx_len: int, window: int
    ) -> None:
        self.tok = np.asarray(tok, dtype=np.int64)
        self.val = np.asarray(val, dtype=np.float32)
        self.token_ids = token_ids
        self.ctx_len = ctx_len
        self.window = window

    def active(self, found: ActiveContexts, i: int, quantile: int) -> Example:
        ctx = int(found.context[i])
        pos = int(found.max_tok[i]) - ctx * self.ctx_len
        # the max token at about 3/4 of the example, the window clipped to its context
        start = min(max(pos - (self.window - self.window // 4), 0), self.ctx_len - self.window)
        return self._window(ctx, start, quantile)

    def inactive(self, ctx: int, rng: np.random.Generator) -> Example:
        start = int(rng.integers(0, self.ctx_len - self.window + 1))
        return self._window(ctx, start, -1)

    def _window(self, ctx: int, start: int, quantile: int) -> Example:
        lo = ctx * self.ctx_len + start
        hi = lo + self.window
        acts = np.zeros(self.window, dtype=np.float32)
        a, b = np.searchsorted(self.tok, [lo, hi])
        acts[self.tok[a:b] - lo] = self.val[a:b]
        return Example(np.asarray(self.token_ids[lo:hi]).copy(), acts, quantile, ctx)
