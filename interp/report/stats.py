"""Per-point figures of the sweep report: medians of scores with bootstrap confidence
intervals, latent counts, LLM cost; Spearman correlations between scorers."""

from __future__ import annotations

from typing import Any

import numpy as np

from interp.report.runset import ReportConfig
from interp.report.sweepdata import LatentTable, Point


def point_stats(point: Point, table: LatentTable | None, cfg: ReportConfig) -> dict[str, Any]:
    """Per-point figures: training summary, latent counts by status, per-scorer medians
    with bootstrap 95% CIs (real and control explanations), LLM cost per latent."""
    t = point.train
    stats: dict[str, Any] = {
        k: t.get(k) for k in ("fvu", "l0", "dead_pct", "ce_increase", "measured_on")
    }
    if table is None:
        return stats
    mask = table.point_mask(point)
    status = table.text("status")[mask]
    ok = mask & (table.text("status") == "ok")
    stats["n_latents"] = int(mask.sum())
    stats["status"] = {s: int((status == s).sum()) for s in sorted({str(x) for x in status})}
    for source in ("scores", "control"):
        for scorer in table.scorers(source):
            vals = table.score(scorer, source)[ok]
            vals = vals[np.isfinite(vals)]
            if len(vals):
                stats[f"{source}.{scorer}"] = (float(np.median(vals)),
                                               *median_ci(vals, cfg.n_boot, cfg.seed), len(vals))  # fmt: skip
    for key in ("prompt_tokens", "completion_tokens", "wall_s"):
        vals = table.number(key)[mask]
        vals = vals[np.isfinite(vals)]
        stats[key] = float(vals.mean()) if len(vals) else None
    return stats


def median_ci(values: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """95% confidence interval of the median of ``values`` [n].

    Percentile bootstrap up to ``BOOTSTRAP_MAX`` values; above, the distribution-free
    order-statistic interval (ranks n/2 -/+ 1.96 sqrt(n)/2 of the sorted values), which
    the bootstrap approaches anyway and which costs one partial sort instead of
    ``n_boot`` resamples of n values.
    """
    n = len(values)
    if n < 3:
        return float(np.min(values)), float(np.max(values))
    if n > BOOTSTRAP_MAX:
        half = 1.96 * np.sqrt(n) / 2
        lo, hi = int(np.floor(n / 2 - half)), int(np.ceil(n / 2 + half))
        part = np.partition(values, [lo, min(hi, n - 1)])
        return float(part[lo]), float(part[min(hi, n - 1)])
    rng = np.random.default_rng(seed)
    meds = np.median(values[rng.integers(0, n, size=(n_boot, n))], axis=1)
    return float(np.quantile(meds, 0.025)), float(np.quantile(meds, 0.975))


BOOTSTRAP_MAX = 2000


def scorer_correlations(table: LatentTable) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Spearman correlation [S, S] and pair counts [S, S] of the scorers' primary metrics
    over latents whose explanation every pair scored (pairwise complete, status ok)."""
    names = table.scorers("scores")
    ok = table.text("status") == "ok"
    scores = [table.score(s)[ok] for s in names]
    corr = np.full((len(names), len(names)), np.nan)
    count = np.zeros((len(names), len(names)), dtype=int)
    for i, a in enumerate(scores):
        for j, b in enumerate(scores):
            both = np.isfinite(a) & np.isfinite(b)
            count[i, j] = int(both.sum())
            if count[i, j] >= 3 and np.ptp(a[both]) > 0 and np.ptp(b[both]) > 0:
                corr[i, j] = float(np.corrcoef(_ranks(a[both]), _ranks(b[both]))[0, 1])
    return names, corr, count


def _ranks(x: np.ndarray) -> np.ndarray:
    """[n] ranks of ``x`` [n], ties sharing their average rank (scipy's rankdata)."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    return (last - (counts - 1) / 2.0)[inverse]
