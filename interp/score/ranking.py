"""Scorers that give every held-out example one real number (embedding, surprisal).

The number should be higher on activating examples than on non-activating ones; the
score is the AUROC of that separation, overall and per activation quantile (each
quantile's activating examples against all non-activating ones), with the mean number
per class beside it and a bootstrap interval of the AUROC (each class resampled alone). A NaN number (the LLM gave nothing usable) is counted in
``n_failed``, never dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from interp.explain.prompts import NEWLINE, TokenRenderer
from interp.latents.examples import Example, LatentExamples
from interp.score.context import ScoreContext
from interp.score.metrics import DEFAULT_CONFIDENCE, _auroc_stat, auroc, stratified_ci


def held_out(examples: LatentExamples) -> list[Example]:
    """The scorers' examples: held-out activating ones first, then non-activating ones."""
    return [*examples.score_active, *examples.score_inactive]


def plain_text(example: Example, render: TokenRenderer) -> str:
    """An example as ordinary text (real newlines, special tokens dropped), stripped."""
    return "".join(render.strings(example.tokens)).replace(NEWLINE, "\n").strip()


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if len(x) else None


@dataclass(frozen=True)
class RankingOutput:
    """Per-example numbers of one scorer on one latent.

    ``labels`` [n] bool (True = activating), ``values`` [n] float (NaN = failed),
    ``quantiles`` [n] int (-1 = non-activating). ``value_name`` names the number in the
    metrics ("similarity", "loss_reduction").
    """

    name: str
    value_name: str
    labels: np.ndarray
    values: np.ndarray
    quantiles: np.ndarray
    n_resamples: int = 0  # bootstrap resamples for the AUROC interval (0 = none)
    confidence: float = DEFAULT_CONFIDENCE

    def metrics(self) -> dict[str, Any]:
        ok = ~np.isnan(self.values)
        y, v, q = self.labels[ok], self.values[ok], self.quantiles[ok]
        ci = stratified_ci(
            v[y], v[~y], _auroc_stat, n_resamples=self.n_resamples, confidence=self.confidence
        )
        per_quantile = [
            {
                "quantile": int(k),
                "n": int(np.sum(q == k)),
                "auroc": auroc(
                    np.r_[np.ones(np.sum(q == k), bool), np.zeros(np.sum(~y), bool)],
                    np.r_[v[q == k], v[~y]],
                ),
                f"mean_{self.value_name}": _mean(v[q == k]),
            }
            for k in sorted(set(q[y].tolist()))
        ]
        return {
            "auroc": auroc(y, v),
            "auroc_ci": list(ci),
            f"mean_{self.value_name}_active": _mean(v[y]),
            f"mean_{self.value_name}_inactive": _mean(v[~y]),
            "n": int(ok.sum()),
            "n_failed": int((~ok).sum()),
            "per_quantile": per_quantile,
        }


def ranking_output(
    ctx: ScoreContext,
    name: str,
    value_name: str,
    examples: list[Example],
    values: list[float] | np.ndarray,
) -> RankingOutput:
    """Pair each example's label and quantile with its number (intervals per ``ctx.cfg``)."""
    return RankingOutput(
        name,
        value_name,
        np.array([e.quantile >= 0 for e in examples], dtype=bool),
        np.asarray(values, dtype=np.float64),
        np.array([e.quantile for e in examples], dtype=np.int64),
        ctx.cfg.bootstrap_resamples,
        ctx.cfg.confidence,
    )
