"""Scorers (detection, fuzzing) and their per-latent metrics."""

from interp.score.classifier import (
    ScorerOutput,
    run_scorers,
    score_detection,
    score_fuzzing,
    yes_probability,
)
from interp.score.metrics import auroc, classification_metrics

__all__ = [
    "ScorerOutput",
    "auroc",
    "classification_metrics",
    "run_scorers",
    "score_detection",
    "score_fuzzing",
    "yes_probability",
]
