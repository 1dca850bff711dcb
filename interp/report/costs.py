"""The LLM cost lines of a point's summary that say what the token columns cannot.

The token columns sum the final records, which count only the attempt that wrote them
(its cache hits as cached). Two things escape them: what killed or stopped attempts
paid (their calls are cache hits on the rerun; the interpret ledgers keep them, see
:mod:`interp.llm.ledger`), and calls whose server sent no ``usage`` (counted with
``llm.tokenizer``, or recorded as 0: see :mod:`interp.llm.usage`).
"""

from __future__ import annotations

from typing import Any


def cost_notes(p: dict[str, Any]) -> list[str]:
    """summary.md lines of one point (``interp.report.summary.summarize``'s entry)."""
    lines = []
    paid, cost = p.get("llm_paid"), p["cost"]
    if paid and paid.get("calls"):
        records = _total(cost, "prompt_tokens_computed")
        lines.append(
            f"LLM paid over {paid['attempts']} attempt file(s): {paid['prompt']} prompt tokens "
            f"({paid['prompt_computed']} computed), {paid['completion']} completion tokens in "
            f"{paid['calls']} calls; the final records count {records:.0f} computed prompt "
            "tokens (the rest: work of killed or stopped attempts, served from the cache on "
            "their rerun)"
        )
    if missing := _total(cost, "llm_calls_usage_missing"):
        lines.append(
            f"WARNING: {missing:.0f} LLM calls came without token counts ('usage') and count "
            "0 tokens: the costs above are under-reported. Set llm.tokenizer to the served "
            "model's tokenizer to count them, or use a server that reports usage"
        )
    if counted := _total(cost, "llm_calls_usage_tokenizer"):
        lines.append(
            f"{counted:.0f} LLM calls came without token counts: counted with llm.tokenizer "
            "(an estimate)"
        )
    return lines


def usage_warning(p: dict[str, Any]) -> str | None:
    """The brief's line when some of a point's LLM calls count 0 tokens (else None)."""
    missing = _total(p["cost"], "llm_calls_usage_missing")
    if not missing:
        return None
    return (
        f"WARNING: {missing:.0f} LLM calls without token counts (counted 0): LLM costs are "
        "under-reported (see summary.md)"
    )


def _total(cost: dict[str, Any], column: str) -> float:
    return float((cost.get(column) or {}).get("total") or 0)
