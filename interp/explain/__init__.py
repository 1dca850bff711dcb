"""Explainers: prompts that show highlighted examples, robust parsing of the reply, the
single-token baseline and the random-explanation control.

Names resolve lazily (PEP 562): importing the package (as the light config module does
for its ``config`` submodule) imports none of its heavy modules.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_EXPORTS = {
    "ExplainerConfig": "interp.explain.config",
    "derangement": "interp.explain.control",
    "ExplainResult": "interp.explain.explainer",
    "check_reply": "interp.explain.explainer",
    "explain": "interp.explain.explainer",
    "parse_explanation": "interp.explain.explainer",
    "TokenRenderer": "interp.explain.prompts",
    "escape_markers": "interp.explain.prompts",
    "explain_messages": "interp.explain.prompts",
    "highlight": "interp.explain.prompts",
    "highlight_mask": "interp.explain.prompts",
    "single_token_explanation": "interp.explain.single_token",
    "top_marked_tokens": "interp.explain.single_token",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
