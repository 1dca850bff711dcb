"""Explainers: prompts that show highlighted examples, and robust parsing of the reply."""

from interp.explain.explainer import ExplainResult, explain, parse_explanation
from interp.explain.prompts import TokenRenderer, explain_messages, highlight, highlight_mask

__all__ = [
    "ExplainResult",
    "TokenRenderer",
    "explain",
    "explain_messages",
    "highlight",
    "highlight_mask",
    "parse_explanation",
]
