"""What the main job prints when it ends: per point, what was found and how sure it is.

A few lines per sweep point, from the gather's ``summary.json``: latents explained and
scored (and the failures by status), the dictionary's FVU and L0, and for every scorer
its headline metric (and AUROC where it has one): the median over latents with its 95%
interval, the control's median, and the paired real - control mean difference with its
interval, marked when the interval excludes zero. Then where the full results are.
When the last gather failed or did not finish, that comes first: the summary shown is
then an earlier one (:mod:`interp.report.gather_state`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from interp.report.costs import usage_warning
from interp.report.gather_state import stale_lines
from interp.report.summary import fmt, fmt_ci, headline


def format_brief(summary: dict[str, Any]) -> list[str]:
    """The short summary of a sweep summary (``interp.report.summary.summarize``)."""
    lines = []
    for p in summary["points"]:
        d = p["dictionary"]
        failed = {k: v for k, v in p["status_counts"].items() if k != "ok"}
        lines.append(
            f"{p['architecture']} {p['sae_id']} @ {p['hookpoint']}: "
            f"{p['n_ok']}/{p['n_latents']} latents explained and scored"
            + (f" (not: {_counts(failed)})" if failed else "")
            + f"; FVU {fmt(d.get('fvu'))}, L0 {fmt(d.get('l0'), 1)}"
        )
        lines += [f"  {row}" for row in _score_lines(p)]
        if warning := usage_warning(p):
            lines.append(f"  {warning}")
    return lines


def _score_lines(p: dict[str, Any]) -> list[str]:
    rows = []
    for scorer, metrics in sorted(p["scores"].items()):
        for metric in dict.fromkeys(m for m in (headline(scorer, metrics), "auroc") if m):
            s = metrics.get(metric, {})
            if not s.get("n"):
                continue
            row = f"{scorer} {metric}: median {fmt(s['median'])} {fmt_ci(s.get('median_ci95'))}"
            ctrl = p["control"].get(scorer, {}).get(metric, {})
            if ctrl.get("n"):
                row += f", control {fmt(ctrl['median'])}"
            diff = p["real_vs_control"].get(scorer, {}).get(metric, {})
            if diff.get("n_pairs"):
                ci = diff.get("mean_diff_ci95")
                row += f", real - control {fmt(diff['mean_diff'], signed=True)} {fmt_ci(ci)}"
                row += " (interval above 0)" if ci and ci[0] > 0 else " (within noise)"
            rows.append(row)
    return rows


def brief_from_folder(root: Path) -> list[str]:
    """The short summary of sweep folder ``root`` and where its results are."""
    gather = root / "gather"
    path = gather / "summary.json"
    stale = stale_lines(root)
    if not path.is_file():
        return [*stale, f"no summary yet: {path} is missing (has gather run?)"]
    lines = format_brief(json.loads(path.read_text()))
    if stale:
        lines = [*stale, "", "the last summary that was written (stale):", *lines]
    lines += ["", f"summary: {gather / 'summary.md'}", f"table:   {gather / 'latents.parquet'}"]
    report = gather / "report" / "index.html"
    if report.is_file():
        lines.append(f"report:  {report}")
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
