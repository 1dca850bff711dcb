"""The single-token baseline: an explanation made of the tokens a latent fires on most.

No LLM. Among the explainer's examples (never the scorers' held-out ones), count the
marked tokens (act >= threshold x the example's max) and name the most frequent one,
plus any others at least half as frequent, e.g. ``the token "def"`` or
``the tokens "def" or "class"``. A scorer that rates this as highly as the LLM's
explanation says the latent is a token detector, or the LLM added nothing.
"""

from __future__ import annotations

from collections import Counter

from interp.explain.prompts import TokenRenderer, highlight_mask, quote
from interp.latents.examples import Example


def top_marked_tokens(
    examples: list[Example], render: TokenRenderer, threshold: float, n: int
) -> list[str]:
    """Up to ``n`` most frequent marked tokens (stripped), those >= half the top count."""
    counts: Counter[str] = Counter()
    for ex in examples:
        mask = highlight_mask(ex.acts, threshold)
        for s, on in zip(render.strings(ex.tokens), mask):
            if on and s:
                counts[s.strip() or s] += 1
    ranked = counts.most_common(n)
    if not ranked:
        return []
    return [w for w, c in ranked if 2 * c >= ranked[0][1]]


def single_token_explanation(
    examples: list[Example], render: TokenRenderer, threshold: float, n: int = 3
) -> str | None:
    """'the token "def"' / 'the tokens "def", "class" or "lambda"'; None if nothing fires."""
    words = [quote(w) for w in top_marked_tokens(examples, render, threshold, n)]
    if not words:
        return None
    if len(words) == 1:
        return f"the token {words[0]}"
    return f"the tokens {', '.join(words[:-1])} or {words[-1]}"
