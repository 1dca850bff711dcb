"""Summary statistics of a sweep, read column by column from the sweep table.

Per sweep point (one dictionary at one hookpoint, explained by one LLM; in a sweep over
architectures x layers, one point per cell): the dictionary's FVU, L0, dead % and
CE-loss increase from its training summary; failure counts by status; the distribution
of every score metric (real explanations, the random-explanation control, the
single-token baseline) with 95% confidence intervals of its mean and median; the paired
real - control difference; LLM tokens and wall time per latent (those in the final
records, and ``llm_paid``: what every attempt paid, killed ones included, from the
interpret ledgers), and the calls whose server sent no token counts.

Streaming: the table is never loaded whole. One numeric column is read at a time
(8 bytes per latent) and split by point; nothing holds a Python object per record.

Confidence intervals are bootstrap intervals. Up to ``EXACT_N`` values they resample
(1000 resamples): the mean's is ``interp.score.metrics.aggregate`` (BCa, as every
scorer summary reports it), the median's ``scipy.stats.bootstrap`` (percentile). Above
that, resampling would cost O(n x 1000) per metric (and BCa's jackknife O(n^2)), so they
come from the bootstrap's large-sample limit, computed without resampling: for the
median the exact bootstrap distribution of the sample median (the resampled median is
<= x_(j) iff at least half the resample is <= x_(j), a binomial event), for the mean the
normal law with the plug-in standard error (which BCa and percentile intervals both
approach). Both keep the gather linear in the number of latents.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from interp.records import SOURCES, score_column
from interp.report.costs import cost_notes
from interp.score.registry import headline_metric

EXACT_N = 2000
"""Above this many values, intervals use the bootstrap's large-sample limit."""
N_BOOT = 1000
COSTS = ("prompt_tokens", "completion_tokens", "prompt_tokens_computed", "wall_s", "retries")
COSTS += ("llm_calls_usage_tokenizer", "llm_calls_usage_missing")
FIRING = ("n_active_tokens", "n_active_contexts", "max_act")
TRAIN_KEYS = ("fvu", "l0", "dead_pct", "ce_increase")
FALLBACK = ("balanced_accuracy", "auroc", "correlation", "accuracy", "score")
"""Headline of a scorer the registry does not know (an older table): the first of these."""


def _dictionary(meta: dict[str, Any]) -> dict[str, Any]:
    """The point's dictionary figures; ``measured_on`` where not from training (pretrained)."""
    keys = (*TRAIN_KEYS, "measured_on") if meta.get("measured_on") else TRAIN_KEYS
    return {k: meta.get(k) for k in keys}


def headline(scorer: str, metrics: dict[str, Any]) -> str | None:
    """The name of ``scorer``'s headline metric among ``metrics`` (its spec's, see
    :mod:`interp.score.registry`, else the first of FALLBACK; None: none of them)."""
    for name in (headline_metric(scorer), *FALLBACK):
        if name in metrics:
            return name
    return None


COUNTS = ("n", "n_failed")
"""Per-latent counts of a scorer (examples scored, failed): totals and means, no CIs."""


# ----------------------------------------------------------------------------- intervals


def median_ci(values: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap (percentile) interval of the median of finite ``values`` [n]."""
    v = np.sort(values)
    n = len(v)
    if n == 0:
        return math.nan, math.nan
    if v[0] == v[-1]:
        return float(v[0]), float(v[0])
    if n <= EXACT_N:
        return _scipy_ci(v, np.median, level, seed)
    # P(resampled lower median <= u) = P(Binomial(n, F_n(u)) >= ceil(n / 2)): monotone
    # in u, so each bound is a bisection over the distinct values
    uniq = v[np.r_[True, v[1:] != v[:-1]]]
    alpha = (1 - level) / 2
    return _median_quantile(v, uniq, alpha), _median_quantile(v, uniq, 1 - alpha)


def _median_quantile(v: np.ndarray, uniq: np.ndarray, target: float) -> float:
    """Smallest distinct value u with P(bootstrap median <= u) >= target (v sorted)."""
    from scipy.stats import binom

    n, m = len(v), math.ceil(len(v) / 2)
    lo, hi = 0, len(uniq) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        p = np.searchsorted(v, uniq[mid], side="right") / n
        if binom.sf(m - 1, n, p) >= target:
            hi = mid
        else:
            lo = mid + 1
    return float(uniq[lo])


def mean_ci(values: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Bootstrap interval of the mean of finite ``values`` [n] (BCa up to EXACT_N)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    if np.all(values == values[0]):
        return float(values[0]), float(values[0])
    if n <= EXACT_N:
        from interp.score.metrics import aggregate

        agg = aggregate(values, confidence=level, seed=seed)
        return agg["ci_low"], agg["ci_high"]
    from scipy.stats import norm

    half = norm.ppf(0.5 + level / 2) * float(np.std(values)) / math.sqrt(n)
    mean = float(np.mean(values))
    return mean - half, mean + half


def _scipy_ci(values: np.ndarray, stat: Any, level: float, seed: int) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap(
        (values,), stat, n_resamples=N_BOOT, confidence_level=level, method="percentile",
        random_state=seed, vectorized=True, axis=-1,
    )  # fmt: skip
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def distribution(values: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """n, mean and median with 95% CIs, spread, quantiles and a histogram of ``values``
    (NaN = missing, dropped)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {"n": 0}
    q = np.quantile(v, [0.1, 0.25, 0.5, 0.75, 0.9])
    lo, hi = (0.0, 1.0) if v.min() >= 0 and v.max() <= 1 else (float(v.min()), float(v.max()))
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi) if hi > lo else None)
    return {
        "n": len(v),
        "mean": float(v.mean()),
        "mean_ci95": list(mean_ci(v)),
        "median": float(q[2]),
        "median_ci95": list(median_ci(v)),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "p10": float(q[0]),
        "p25": float(q[1]),
        "p75": float(q[3]),
        "p90": float(q[4]),
        "hist": {"edges": edges.tolist(), "counts": counts.tolist()},
    }


# ----------------------------------------------------------------------------- summary


def summarize(table: Path, points: list[dict[str, Any]]) -> dict[str, Any]:
    """The sweep summary (JSON-able) of sweep table ``table`` whose points are ``points``
    (point columns and training figures, one dict per point id)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(table)
    names = pf.schema_arrow.names
    rows = _point_rows(table, [p["point"] for p in points])
    status = _strings(table, "status")
    out = []
    for meta in points:
        idx = rows[meta["point"]]
        st = status[idx]
        out.append(
            {
                **{k: meta.get(k) for k in ("point", "model", "architecture", "sae_id")},
                **{k: meta.get(k) for k in ("layer", "hookpoint", "explainer_model")},
                **{k: meta.get(k) for k in ("source", "source_format")},
                "dictionary": _dictionary(meta),
                "n_latents": len(idx),
                **{k: meta.get(k) for k in ("selection", "n_selected", "n_reused")},
                "n_ok": int(np.sum(st == "ok")),
                "status_counts": _counts(st),
                **{kind: {} for kind in SOURCES},
                "real_vs_control": {},
                "cost": {},
                "llm_paid": meta.get("llm_paid"),
                "firing": {},
            }
        )
    for kind in SOURCES:
        for name in _numeric(pf, f"{kind}."):
            col = _floats(table, name)
            scorer, metric = name[len(kind) + 1 :].split(".", 1)
            stat = _cost if metric in COUNTS else distribution
            for entry, meta in zip(out, points):
                entry[kind].setdefault(scorer, {})[metric] = stat(col[rows[meta["point"]]])
    _real_vs_control(table, pf, points, rows, out)
    for name in (*COSTS, *FIRING):
        if name not in names:
            continue
        col = _floats(table, name)
        for entry, meta in zip(out, points):
            vals = col[rows[meta["point"]]]
            if name in COSTS:
                entry["cost"][name] = _cost(vals)
            else:
                entry["firing"][name] = distribution(vals)
    order = sorted(range(len(out)), key=lambda i: _sort_key(out[i]))
    return {
        "n_points": len(out),
        "n_latents": int(sum(e["n_latents"] for e in out)),
        "status_counts": _counts(status),
        "intervals": (
            f"95% bootstrap (mean: BCa, median: percentile; {N_BOOT} resamples up to "
            f"{EXACT_N} values, the bootstrap's large-sample limit above)"
        ),
        "points": [out[i] for i in order],
    }


def _real_vs_control(
    table: Path, pf: Any, points: list[dict[str, Any]], rows: dict[str, np.ndarray], out: list
) -> None:
    """Paired (same latent) difference of each score metric, real minus control."""
    names = set(pf.schema_arrow.names)
    for name in _numeric(pf, "scores."):
        scorer, metric = name[len("scores.") :].split(".", 1)
        other = score_column("control", scorer, metric)
        if other not in names or metric in COUNTS:
            continue
        real, ctrl = _floats(table, name), _floats(table, other)
        for entry, meta in zip(out, points):
            r, c = real[rows[meta["point"]]], ctrl[rows[meta["point"]]]
            ok = np.isfinite(r) & np.isfinite(c)
            d = r[ok] - c[ok]
            entry["real_vs_control"].setdefault(scorer, {})[metric] = {
                "n_pairs": int(ok.sum()),
                "mean_diff": float(d.mean()) if len(d) else None,
                "mean_diff_ci95": list(mean_ci(d)) if len(d) else None,
                "frac_real_better": float(np.mean(d > 0)) if len(d) else None,
            }


def _cost(values: np.ndarray) -> dict[str, Any]:
    v = values[np.isfinite(values)]
    return {
        "total": float(v.sum()),
        "per_latent_mean": float(v.mean()) if len(v) else None,
        "per_latent_median": float(np.median(v)) if len(v) else None,
        "per_latent_p90": float(np.quantile(v, 0.9)) if len(v) else None,
    }


def _numeric(pf: Any, prefix: str) -> list[str]:
    import pyarrow as pa

    return [
        f.name
        for f in pf.schema_arrow
        if f.name.startswith(prefix)
        and f.name.count(".") >= 2
        and (pa.types.is_floating(f.type) or pa.types.is_integer(f.type))
    ]


def _floats(table: Path, name: str) -> np.ndarray:
    """One column as float64 [n_rows], nulls as NaN."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    col = pq.read_table(table, columns=[name]).column(name).cast(pa.float64())
    return col.to_numpy()


def _strings(table: Path, name: str) -> np.ndarray:
    """A string column as an object array of its values [n_rows] (None kept)."""
    import pyarrow.parquet as pq

    col = pq.read_table(table, columns=[name], read_dictionary=[name]).column(name)
    col = col.combine_chunks()
    values = np.asarray(col.dictionary.to_pylist() + [None], dtype=object)
    idx = col.indices.fill_null(len(col.dictionary)).to_numpy()
    return values[idx]


def _point_rows(table: Path, point_ids: list[str]) -> dict[str, np.ndarray]:
    points = _strings(table, "point")
    return {p: np.flatnonzero(points == p) for p in point_ids}


def _counts(items: np.ndarray) -> dict[str, int]:
    keys, counts = np.unique(items.astype(str), return_counts=True)
    return {str(k): int(c) for k, c in zip(keys, counts)}


def _sort_key(entry: dict[str, Any]) -> tuple:
    return (str(entry["architecture"]), entry["layer"] if entry["layer"] is not None else -1,
            str(entry["sae_id"]), str(entry["point"]))  # fmt: skip


# ----------------------------------------------------------------------------- markdown


def format_markdown(summary: dict[str, Any]) -> str:
    """summary.md: one section per point, headline metrics of every scorer."""
    lines = [
        "# Sweep summary",
        "",
        f"{summary['n_latents']} latents in {summary['n_points']} point(s); "
        f"status {summary['status_counts']}. Intervals: {summary['intervals']}.",
    ]
    for p in summary["points"]:
        lines += [
            "",
            f"## {p['architecture']} {p['sae_id']} @ layer {p['layer']} ({p['hookpoint']})",
            "",
        ]
        if p.get("source") not in (None, "trained"):
            lines.append(f"pretrained dictionary: {p['source']} ({p.get('source_format')})")
        lines.append(
            f"point `{p['point']}`, model {p['model']}, explainer {p['explainer_model']}: "
            f"{p['n_ok']}/{p['n_latents']} latents explained and scored, status {p['status_counts']}"
        )
        if p.get("selection"):
            lines.append(_selection_line(p))
        d = p["dictionary"]
        lines.append(
            f"dictionary: FVU {fmt(d.get('fvu'))}, L0 {fmt(d.get('l0'), 1)}, "
            f"dead {fmt(d.get('dead_pct'), 1)}%, CE-loss increase {fmt(d.get('ce_increase'))}"
            + (f" (measured on the {d['measured_on']})" if d.get("measured_on") else "")
        )
        rows = _score_rows(p)
        if rows:
            lines += [
                "",
                "| scorer | metric | n | median [95% CI] | mean [95% CI] | control mean "
                "| real - control [95% CI] | baseline mean |",
                "|---|---|---|---|---|---|---|---|",
                *rows,
            ]
        cost = p["cost"]
        if "prompt_tokens" in cost:
            lines += [
                "",
                f"LLM per latent: {fmt(cost['prompt_tokens']['per_latent_mean'], 0)} prompt tokens"
                f" ({fmt(cost.get('prompt_tokens_computed', {}).get('per_latent_mean'), 0)} computed),"
                f" {fmt(cost.get('completion_tokens', {}).get('per_latent_mean'), 0)} completion tokens,"
                f" {fmt(cost.get('wall_s', {}).get('per_latent_mean'), 2)} s"
                f" (total {fmt(cost['prompt_tokens']['total'], 0)} prompt tokens)",
            ]
        lines += cost_notes(p)
    return "\n".join(lines) + "\n"


def _score_rows(p: dict[str, Any]) -> list[str]:
    """The headline metric of every scorer, and its AUROC where it has one."""
    rows = []
    for scorer, metrics in sorted(p["scores"].items()):
        shown = dict.fromkeys(m for m in (headline(scorer, metrics), "auroc") if m in metrics)
        for metric in shown:
            s = metrics[metric]
            if not s.get("n"):
                continue
            ctrl = p["control"].get(scorer, {}).get(metric, {})
            diff = p["real_vs_control"].get(scorer, {}).get(metric, {})
            base = p["baseline"].get(scorer, {}).get(metric, {})
            rows.append(
                f"| {scorer} | {metric} | {s['n']} | {fmt(s['median'])} {fmt_ci(s['median_ci95'])} "
                f"| {fmt(s['mean'])} {fmt_ci(s['mean_ci95'])} | {fmt(ctrl.get('mean'))} "
                f"| {fmt(diff.get('mean_diff'))} {fmt_ci(diff.get('mean_diff_ci95'))} "
                f"| {fmt(base.get('mean'))} |"
            )
    return rows


def fmt(v: Any, digits: int = 3, signed: bool = False) -> str:
    """A figure of the summary: ``digits`` decimals (with its sign), 'n/a' when missing."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"


def fmt_ci(ci: Any) -> str:
    """A 95% interval as '[lo, hi]' ('' when there is none)."""
    return "" if not ci else f"[{fmt(ci[0])}, {fmt(ci[1])}]"


def _selection_line(p: dict[str, Any]) -> str:
    """Which latents the point reports (``interpret.latents``), and how many of them."""
    counts = p["status_counts"]
    rare = sum(counts.get(k, 0) for k in ("too_rare", "skipped"))
    return (
        f"selection `interpret.latents={p['selection']}`: {p.get('n_selected')} selected, "
        f"{p['n_latents']} recorded, {rare} dead or too rare (no LLM call), "
        f"{p.get('n_reused') or 0} reused from other selections"
    )
