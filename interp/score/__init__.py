"""Scorers by name, and their metrics.

A scorer is ``async def score_x(ctx: ScoreContext, explanation: str) -> ScorerOutput``.
``SCORERS`` maps each name of ``ScorerConfig.names`` to ``"module:function"``; a scorer's
module is imported only when that scorer runs (the embedding and intervention scorers
pull heavy dependencies that a detection-only run never needs).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable, Sequence
from typing import get_args

from interp.config import ScorerName
from interp.score.classifier import ClassifierOutput, yes_probability
from interp.score.context import ScoreContext, ScoreResources, ScorerOutput
from interp.score.metrics import aggregate, auroc, classification_metrics

SCORERS: dict[str, str] = {
    "detection": "interp.score.classifier:score_detection",
    "fuzzing": "interp.score.classifier:score_fuzzing",
    "fuzzing_active": "interp.score.classifier:score_fuzzing_active",
    "intruder": "interp.score.intruder:score_intruder",
    "surprisal": "interp.score.surprisal:score_surprisal",
    "simulation": "interp.score.simulation:score_simulation",
    "embedding": "interp.score.embedding:score_embedding",
    "intervention": "interp.score.intervention:score_intervention",
}
assert set(SCORERS) == set(get_args(ScorerName)), "SCORERS and ScorerConfig.names disagree"

Scorer = Callable[[ScoreContext, str], Awaitable[ScorerOutput]]

__all__ = [
    "SCORERS",
    "ClassifierOutput",
    "ScoreContext",
    "ScoreResources",
    "ScorerOutput",
    "aggregate",
    "auroc",
    "classification_metrics",
    "get_scorer",
    "run_scorers",
    "yes_probability",
]


def get_scorer(name: str) -> Scorer:
    """The scorer function registered as ``name`` (its module imported now)."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose from {sorted(SCORERS)}")
    module, function = SCORERS[name].split(":")
    try:
        return getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"scorer {name!r} is registered as {SCORERS[name]} but cannot be loaded ({e}); "
            "drop it from scorer.names or install what it needs"
        ) from e


async def run_scorers(
    names: Sequence[str], ctx: ScoreContext, explanation: str
) -> dict[str, ScorerOutput]:
    """Every requested scorer on one latent, concurrently (the backend bounds the load).

    Unknown names fail before any scorer starts. Each scorer gets its own random stream
    spawned from ``ctx.rng`` (in the order of ``names``), so one scorer's draws never
    shift another's.
    """
    unknown = [n for n in names if n not in SCORERS]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; choose from {sorted(SCORERS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"scorer names {list(names)} repeat a scorer; list each once")
    scorers = [get_scorer(n) for n in names]
    rngs = ctx.rng.spawn(len(names))
    outputs = await asyncio.gather(
        *(f(_with_rng(ctx, r), explanation) for f, r in zip(scorers, rngs))
    )
    return dict(zip(names, outputs))


def _with_rng(ctx: ScoreContext, rng: object) -> ScoreContext:
    from dataclasses import replace

    return replace(ctx, rng=rng)
