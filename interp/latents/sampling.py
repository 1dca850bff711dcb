"""Which activating contexts the explainer sees and which the scorers hold out.

Contexts are ranked by their max activation and cut into ``n_quantiles`` equal-count
quantiles by rank (0 = strongest). The explainer's set is drawn first, by mode:

- ``quantile``: round-robin over the quantiles (top first), random within each;
- ``top``: the strongest contexts;
- ``random``: uniform over all activating contexts;
- ``mixed``: ``round(mixed_top_fraction * n_explain)`` strongest, the rest drawn as in
  ``quantile`` from the contexts left.

The scorers' set is then drawn from the contexts *not* taken, quantile-spread (default)
or uniformly: the two sets are disjoint by construction in every mode (and asserted).
delphi reseeds both draws identically, so its explainer's top examples are scored again.

Legend: ``C`` activating contexts, ``Q`` quantiles.
"""

from __future__ import annotations

import numpy as np

from interp.latents.config import ExamplesConfig
from interp.latents.windows import ActiveContexts, strength_order


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
    n_explain = max(1, min(n_explain, n_contexts - 1))  # leave the scorers at least one
    return n_explain, max(0, min(cfg.n_score_active, n_contexts - n_explain))


class ActiveSplit:
    """The explain and score picks of one latent, as indices into its ``ActiveContexts``."""

    def __init__(self, explain: np.ndarray, score: np.ndarray, quantile: np.ndarray) -> None:
        assert not np.intersect1d(explain, score).size, "explain and score sets overlap"
        assert len(np.unique(explain)) == len(explain) and len(np.unique(score)) == len(score)
        self.explain = explain  # [e] strongest first
        self.score = score  # [s] in draw order
        self.quantile = quantile  # [C] quantile of every activating context


def split_active(
    found: ActiveContexts,
    n_explain: int,
    n_score: int,
    cfg: ExamplesConfig,
    rng: np.random.Generator,
) -> ActiveSplit:
    """Draw the explainer's contexts by ``cfg.sampling``, then the scorers' from the rest."""
    n = len(found.context)
    rank = strength_order(found)  # rank -> context index
    quantile = np.empty(n, dtype=np.int64)
    quantile[rank] = quantile_of_rank(n, cfg.n_quantiles)
    free = np.ones(n, dtype=bool)
    if cfg.sampling == "top":
        explain = rank[:n_explain]
    elif cfg.sampling == "random":
        explain = rng.choice(n, size=n_explain, replace=False)
    elif cfg.sampling == "mixed":
        top = rank[: round(cfg.mixed_top_fraction * n_explain)]
        free[top] = False
        rest = _quantile_draw(free, quantile, cfg.n_quantiles, n_explain - len(top), rng)
        explain = np.concatenate([top, rest])
    else:
        explain = _quantile_draw(free, quantile, cfg.n_quantiles, n_explain, rng)
    free[:] = True
    free[explain] = False
    if cfg.score_sampling == "random":
        score = rng.permutation(np.flatnonzero(free))[:n_score]
    else:
        score = _quantile_draw(free, quantile, cfg.n_quantiles, n_score, rng)
    position = np.empty(n, dtype=np.int64)
    position[rank] = np.arange(n)
    explain = explain[np.argsort(position[explain], kind="stable")]
    return ActiveSplit(explain.astype(np.int64), score.astype(np.int64), quantile)


def _quantile_draw(
    free: np.ndarray, quantile: np.ndarray, n_quantiles: int, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` of the ``free`` contexts, dealt round-robin over quantiles, random within."""
    pools = [rng.permutation(np.flatnonzero(free & (quantile == q))) for q in range(n_quantiles)]
    take = spread(n, np.array([len(p) for p in pools]))
    return np.concatenate([p[:t] for p, t in zip(pools, take)] + [np.zeros(0, np.int64)])
