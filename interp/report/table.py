"""The sweep table: one row per latent of every sweep point, and its summary.

Rows carry the point (model, layer, dictionary), the latent's firing statistics, its
explanation, every score, its token costs and failure state. The summary groups rows by
(dictionary, layer) and reports medians with bootstrap confidence intervals.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

METRICS = ("balanced_accuracy", "auroc", "f1", "precision", "recall")


def flatten_record(
    record: dict[str, Any], point: dict[str, Any], scorers: Iterable[str]
) -> dict[str, Any]:
    """One table row: point columns + record fields, scores as ``<scorer>_<metric>``.

    Every row has every scorer's columns (None where a latent was not scored), so the
    table's schema never depends on which record comes first.
    """
    row = {**point}
    for key in ("latent", "status", "n_active_tokens", "n_active_contexts", "max_act",
                "explanation", "raw_explanation", "wall_s", "error"):  # fmt: skip
        row[key] = record.get(key)
    scores = record.get("scores") or {}
    for scorer in sorted({*scorers, *scores}):
        result = scores.get(scorer) or {}
        for metric in (*METRICS, "n"):
            row[f"{scorer}_{metric}"] = result.get(metric)
    tokens = record.get("tokens") or {}
    row["prompt_tokens"] = tokens.get("prompt")
    row["completion_tokens"] = tokens.get("completion")
    row["prompt_tokens_computed"] = tokens.get("prompt_computed")
    return row


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    with open(path) as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median (scipy's bootstrap)."""
    from scipy.stats import bootstrap

    values = values[np.isfinite(values)]
    if len(values) < 3 or np.all(values == values[0]):
        v = float(values[0]) if len(values) else float("nan")
        return v, v
    res = bootstrap(
        (values,), np.median, n_resamples=n_boot, method="percentile", random_state=seed
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(rows: Iterable[dict[str, Any]], scorers: Iterable[str]) -> list[dict[str, Any]]:
    """Per (sae_id, layer): counts, failures, score medians with 95% CIs, token costs."""
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["sae_id"], row["layer"]), []).append(row)
    out = []
    for (sae_id, layer), group in sorted(groups.items()):
        ok = [r for r in group if r["status"] == "ok"]
        entry: dict[str, Any] = {
            "sae_id": sae_id,
            "layer": layer,
            "n_latents": len(group),
            "n_ok": len(ok),
            "status_counts": _counts(r["status"] for r in group),
            **{k: group[0].get(k) for k in ("fvu", "l0", "dead_pct", "ce_increase")},
        }
        for scorer in scorers:
            for metric in ("balanced_accuracy", "auroc"):
                vals = np.array([_num(r.get(f"{scorer}_{metric}")) for r in ok], dtype=float)
                vals = vals[np.isfinite(vals)]
                lo, hi = bootstrap_ci(vals)
                entry[f"{scorer}_{metric}_median"] = float(np.median(vals)) if len(vals) else None
                entry[f"{scorer}_{metric}_ci95"] = [lo, hi] if len(vals) else None
        prompt = np.array([_num(r.get("prompt_tokens")) for r in ok], dtype=float)
        wall = np.array([_num(r.get("wall_s")) for r in ok], dtype=float)
        entry["prompt_tokens_per_latent"] = float(np.nanmean(prompt)) if len(ok) else None
        entry["wall_s_per_latent"] = float(np.nanmean(wall)) if len(ok) else None
        out.append(entry)
    return out


def format_summary(groups: list[dict[str, Any]], scorers: Iterable[str]) -> str:
    lines = []
    for g in groups:
        lines.append(
            f"{g['sae_id']} @ layer {g['layer']}: {g['n_ok']}/{g['n_latents']} latents "
            f"explained and scored {g['status_counts']}"
        )
        if g.get("fvu") is not None:
            dead = g.get("dead_pct")
            dead_s = f"{dead:.1f}%" if dead is not None else "n/a (not trained)"
            lines.append(
                f"  SAE: FVU {g['fvu']:.3f}  L0 {g['l0']:.1f}  dead {dead_s}"
                f"  CE increase {g.get('ce_increase') or float('nan'):.3f}"
            )
        for scorer in scorers:
            med = g.get(f"{scorer}_balanced_accuracy_median")
            auc = g.get(f"{scorer}_auroc_median")
            if med is None:
                continue
            lo, hi = g[f"{scorer}_balanced_accuracy_ci95"]
            auc_s = f"{auc:.3f}" if auc is not None else "n/a"
            lines.append(
                f"  {scorer:<10} median balanced accuracy {med:.3f} [95% CI {lo:.3f}, {hi:.3f}]"
                f"  median AUROC {auc_s}"
            )
        if g.get("prompt_tokens_per_latent") is not None:
            lines.append(
                f"  LLM: {g['prompt_tokens_per_latent']:.0f} prompt tokens and "
                f"{g['wall_s_per_latent']:.1f} s per latent"
            )
    return "\n".join(lines)


def _counts(items: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def _num(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and v is not None else float("nan")
