"""Spec of the embedding scorer (:mod:`interp.score.embedding`): the AUROC of explanation
/ example similarity under a sentence embedder, the task-wide ``embedder`` resource."""

from __future__ import annotations

from interp.score.spec import ScorerSpec

EMBEDDING = ScorerSpec(
    "embedding",
    "interp.score.embedding:score_embedding",
    "auroc",
    resources={"embedder": "interp.score.embedding:load_embedder"},
)
