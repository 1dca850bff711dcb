"""Example construction for explaining and scoring latents (disjoint splits).

Names resolve lazily (PEP 562): importing the package (as the light config module does
for its ``config`` submodule) imports none of its heavy modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExamplesConfig": "interp.latents.config",
    "CooccurrenceIndex": "interp.latents.cooccurrence",
    "index_for_range": "interp.latents.cooccurrence",
    "ActiveContexts": "interp.latents.examples",
    "Example": "interp.latents.examples",
    "LatentExamples": "interp.latents.examples",
    "active_contexts": "interp.latents.examples",
    "build_examples": "interp.latents.examples",
    "top_contexts": "interp.latents.examples",
    "SimilarPool": "interp.latents.negatives",
    "build_negative_sources": "interp.latents.sources",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interp.latents' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
