"""Example construction for explaining and scoring latents (disjoint splits).

Names resolve lazily (PEP 562): importing the package (as the light config module does
for its ``config`` submodule) imports none of its heavy modules.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS)
