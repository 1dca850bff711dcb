"""Example construction for explaining and scoring latents (disjoint splits)."""

from interp.latents.examples import (
    ActiveContexts,
    Example,
    LatentExamples,
    active_contexts,
    build_examples,
    top_contexts,
)

__all__ = [
    "ActiveContexts",
    "Example",
    "LatentExamples",
    "active_contexts",
    "build_examples",
    "top_contexts",
]
