"""Scorers, their registry and their metrics.

A scorer is ``async def score_x(ctx: ScoreContext, explanation: str) -> ScorerOutput``,
registered by name with a :class:`~interp.score.spec.ScorerSpec` in
:mod:`interp.score.registry`. Only the registry (light) is imported here; every other
name below is imported on first use, because :mod:`interp.config` imports
:mod:`interp.score.config` (the ``scorer.*`` section) and must stay light: no numpy, no
scorer module, no import cycle through the modules that import the config.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr
from interp.score.registry import (
    register_scorer,
    scorer_names,
    scorer_spec,
    scorer_specs,
    unregister_scorer,
)
from interp.score.spec import ScorerSpec

_LAZY = {
    "ClassifierOutput": "interp.score.classifier",
    "yes_probability": "interp.score.classifier",
    "ResourceInputs": "interp.score.context",
    "ScoreContext": "interp.score.context",
    "ScoreResources": "interp.score.context",
    "ScorerOutput": "interp.score.context",
    "aggregate": "interp.score.metrics",
    "auroc": "interp.score.metrics",
    "classification_metrics": "interp.score.metrics",
    "Scorer": "interp.score.run",
    "get_scorer": "interp.score.run",
    "run_scorers": "interp.score.run",
}

__all__ = [
    "ClassifierOutput",
    "ResourceInputs",
    "ScoreContext",
    "ScoreResources",
    "Scorer",
    "ScorerOutput",
    "ScorerSpec",
    "aggregate",
    "auroc",
    "classification_metrics",
    "get_scorer",
    "register_scorer",
    "run_scorers",
    "scorer_names",
    "scorer_spec",
    "scorer_specs",
    "unregister_scorer",
    "yes_probability",
]


__getattr__ = lazy_getattr(__name__, _LAZY)
