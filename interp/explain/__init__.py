"""Explainers: prompts that show highlighted examples, robust parsing of the reply, the
single-token baseline and the random-explanation control."""

from interp.explain.control import derangement
from interp.explain.explainer import ExplainResult, check_reply, explain, parse_explanation
from interp.explain.prompts import (
    TokenRenderer,
    escape_markers,
    explain_messages,
    highlight,
    highlight_mask,
)
from interp.explain.single_token import single_token_explanation, top_marked_tokens

__all__ = [
    "ExplainResult",
    "TokenRenderer",
    "check_reply",
    "derangement",
    "escape_markers",
    "explain",
    "explain_messages",
    "highlight",
    "highlight_mask",
    "parse_explanation",
    "single_token_explanation",
    "top_marked_tokens",
]
