"""Examples of one latent for the explainer and the scorers, from its store entries.

A latent's *activating contexts* are the context windows (``ctx_len`` tokens each)
where it fires at least once; an activating example is ``window`` tokens of such a
context around its strongest token, ``examples.center`` of the way in (3/4 by default,
so the LLM sees what led up to it). See :mod:`interp.latents.windows`.

The explainer's activating examples are drawn by ``examples.sampling`` (quantile, top,
random, mixed) and the scorers' from the contexts left, so the two are disjoint by
construction (:mod:`interp.latents.sampling`). Non-activating examples come from silent
contexts, random or hard (``examples.negatives``: co-firing neighbours, embedding-
similar), the explainer's (``n_explain_inactive``, for the contrastive explainer)
disjoint from the scorers' (:mod:`interp.latents.negatives`).

A latent with too few activating contexts for disjoint splits is returned with status
``too_rare`` and the ``reason``; one that fires in every context (nothing to contrast it
with) with ``skipped``. Everything is deterministic given (``cfg.seed``, latent), and
nothing is shared between latents but read-only indexes.

Legend: ``n`` entries of the latent, ``C`` activating contexts, ``W`` window tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np

from interp.latents.config import ExamplesConfig
from interp.latents.cooccurrence import CooccurrenceIndex
from interp.latents.negatives import SimilarPool, check_resources, choose_negatives, kind_counts
from interp.latents.sampling import quantile_of_rank, split_active, split_counts, spread
from interp.latents.windows import (
    ActiveContexts,
    Cutter,
    Example,
    active_contexts,
    top_contexts,
)

__all__ = [
    "ActiveContexts",
    "Example",
    "LatentExamples",
    "active_contexts",
    "build_examples",
    "quantile_of_rank",
    "split_counts",
    "spread",
    "top_contexts",
]

# Independent random streams per latent: the activating draw does not change when the
# negatives mode does.
_ACTIVE_STREAM, _NEGATIVE_STREAM = 0xAC, 0x4E


class LatentExamples(NamedTuple):
    """Everything the explainer and the scorers see of one latent."""

    explain: list[Example]  # activating, for the explainer, strongest first
    score_active: list[Example]  # activating, held out for the scorers
    score_inactive: list[Example]  # non-activating, for the scorers
    n_active_contexts: int
    status: Literal["ok", "too_rare", "skipped"]
    explain_inactive: Sequence[Example] = ()  # non-activating, for the contrastive explainer
    reason: str = ""  # why the latent is too_rare or skipped

    def negative_kinds(self) -> dict[str, dict[str, int]]:
        """Where the non-activating examples came from, e.g. {"score": {"neighbour": 6,
        "random": 2}, "explain": {}}: a mode that could not supply enough filled from random."""
        return {
            "explain": kind_counts(self.explain_inactive),
            "score": kind_counts(self.score_inactive),
        }


def build_examples(
    tok: np.ndarray,
    val: np.ndarray,
    token_ids: np.ndarray,
    ctx_len: int,
    cfg: ExamplesConfig,
    latent: int,
    *,
    cooccurrence: CooccurrenceIndex | None = None,
    similar: SimilarPool | None = None,
) -> LatentExamples:
    """Explain and score examples of latent ``latent`` from its (tok, val) entries.

    ``tok`` [n] ascending global token indices and ``val`` [n] activations are the
    latent's store entries; ``token_ids`` holds the id of every collected token.
    ``cooccurrence`` is required by ``negatives='neighbours'`` and ``similar`` by
    ``negatives='similar'``; both are built once per task and only read here.
    """
    if cfg.window > ctx_len:
        raise ValueError(f"examples.window={cfg.window} exceeds data.ctx_len={ctx_len}")
    check_resources(cfg, cfg.window, cooccurrence, similar)
    found = active_contexts(tok, val, ctx_len)
    n_active = len(found.context)
    if n_active < cfg.min_examples:
        return _not_built(
            n_active, "too_rare",
            f"{n_active} activating contexts < interpret.examples.min_examples="
            f"{cfg.min_examples} (collect more tokens or lower min_examples)",
        )  # fmt: skip
    n_explain, n_score = split_counts(n_active, cfg)
    if n_score == 0:
        return _not_built(
            n_active, "too_rare",
            f"{n_active} activating context(s): disjoint explain and score sets need at "
            "least 2 (raise interpret.examples.min_examples to 2 or more to skip these early)",
        )  # fmt: skip
    split = split_active(found, n_explain, n_score, cfg, _rng(cfg, latent, _ACTIVE_STREAM))
    cut = Cutter(tok, val, token_ids, ctx_len, cfg.window, cfg.center)

    def active(i: int) -> Example:
        return cut.around(int(found.max_tok[i]), int(split.quantile[i]), "active")

    explain = [active(i) for i in split.explain]
    score = [active(i) for i in split.score]
    explain_inactive, score_inactive = choose_negatives(
        found, len(token_ids) // ctx_len, cut, cfg, latent, tok, explain + score,
        _rng(cfg, latent, _NEGATIVE_STREAM), cooccurrence, similar,
    )  # fmt: skip
    if cfg.n_score_inactive and not score_inactive:
        return _not_built(
            n_active, "skipped",
            f"fires in all {n_active} contexts: no non-activating context to score against "
            "(a dense latent; detection and fuzzing are undefined for it)",
        )  # fmt: skip
    return LatentExamples(explain, score, score_inactive, n_active, "ok", explain_inactive)


def _rng(cfg: ExamplesConfig, latent: int, stream: int) -> np.random.Generator:
    return np.random.default_rng((cfg.seed, latent, stream))


def _not_built(
    n_active: int, status: Literal["too_rare", "skipped"], reason: str
) -> LatentExamples:
    return LatentExamples([], [], [], n_active, status, [], reason)
