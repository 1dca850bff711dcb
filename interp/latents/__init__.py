"""Example construction for explaining and scoring latents (disjoint splits)."""

from interp.latents.cooccurrence import CooccurrenceIndex, index_for_range
from interp.latents.examples import (
    ActiveContexts,
    Example,
    LatentExamples,
    active_contexts,
    build_examples,
    top_contexts,
)
from interp.latents.negatives import SimilarPool

__all__ = [
    "ActiveContexts",
    "CooccurrenceIndex",
    "Example",
    "LatentExamples",
    "SimilarPool",
    "active_contexts",
    "build_examples",
    "index_for_range",
    "top_contexts",
]
