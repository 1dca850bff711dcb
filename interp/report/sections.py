"""The sections of the sweep report and of the comparison: tables, plots and the
sentences that stand in for a missing input."""

from __future__ import annotations

import html
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from interp.report import plots
from interp.report.htmlkit import fixed, missing_note, slug, table_html
from interp.report.page import Images, Section
from interp.report.runset import ReportConfig, RunSet
from interp.report.stats import point_stats, scorer_correlations
from interp.report.sweepdata import Alignment, LatentTable, Point, read_metrics
from interp.score.registry import reference_scorer

ALIGN_HINT = "the align step of the gather job writes them under gather/align/"


GATHER_HINT = "run the gather job (python launch/sweep.py ... again; committed work is skipped)"


def sweep_sections(run: RunSet, out: Path, cfg: ReportConfig, prefix: str = "") -> list[Section]:
    """The report of one sweep; images go to ``out/img/<prefix>*.png``."""
    stats = {p.point_id: point_stats(p, run.table, cfg) for p in run.points}
    scorers = run.table.scorers("scores") if run.table is not None else []
    img = Images(out, prefix)
    sections = [("Sweep points", _points_table(run, stats, scorers))]
    rows = [{"label": p.series, "layer": p.layer, **stats[p.point_id]} for p in run.points]
    sections.append(
        (
            "Reconstruction vs sparsity",
            img.add(
                "reconstruction",
                plots.reconstruction_vs_sparsity(rows),
                "no point has training metrics (train/<id>/summary.json): the train stage writes them",
            ),
        )
    )
    sections.append(
        (
            "Dead latents",
            img.add(
                "dead",
                plots.dead_fraction(rows),
                "no trained dictionary reports dead latents (built ones such as neurons have none)",
            ),
        )
    )
    curves = {p.label: read_metrics(p) for p in run.points}
    sections.append(
        (
            "Training curves",
            img.add("train_fvu", plots.training_curves(curves, "fvu"), "no training metrics.jsonl"),
        )
    )
    sections.append(("Score distributions", _score_distributions([run], img)))
    sections.append(("Correlation between scorers", _correlations(run.table, img)))
    sections.append(("Layer-to-layer alignment", _alignment(run, img)))
    return sections  # fmt: skip


def compare_sections(runs: list[RunSet], out: Path, cfg: ReportConfig) -> list[Section]:
    img = Images(out, "compare-")
    stats = {(id(r), p.point_id): point_stats(p, r.table, cfg) for r in runs for p in r.points}
    sections = [("Points lined up by their overrides", _lineup_tables(runs, stats))]
    rows = [
        {"label": f"{r.name}: {p.series}", "layer": p.layer, **stats[(id(r), p.point_id)]}
        for r in runs for p in r.points
    ]  # fmt: skip
    sections.append(
        (
            "Reconstruction vs sparsity (all runs)",
            img.add(
                "reconstruction",
                plots.reconstruction_vs_sparsity(rows),
                "no point has training metrics",
            ),
        )
    )
    sections.append(("Score distributions (all runs)", _score_distributions(runs, img)))
    return sections  # fmt: skip


def _points_table(run: RunSet, stats: dict[str, dict[str, Any]], scorers: list[str]) -> str:
    head = ["point", "overrides", "dictionary", "hookpoint", "FVU", "L0", "dead %", "CE incr.",
            "latents", "status"] + [f"{s} median [95% CI] (control)" for s in scorers] \
        + ["prompt tok / latent", "s / latent"]  # fmt: skip
    rows = []
    for p in run.points:
        s = stats[p.point_id]
        cells = [p.point_id, " ".join(p.overrides) if p.overrides is not None else "(not a multirun)",
                 p.sae_id, p.hookpoint, fixed(s.get("fvu")), fixed(s.get("l0"), 1),
                 fixed(s.get("dead_pct"), 1), fixed(s.get("ce_increase")), fixed(s.get("n_latents"), 0),
                 ", ".join(f"{k} {v}" for k, v in (s.get("status") or {}).items())]  # fmt: skip
        cells += [_score_cell(s, scorer) for scorer in scorers]
        cells += [fixed(s.get("prompt_tokens"), 0), fixed(s.get("wall_s"), 2)]
        rows.append(cells)
    note = (
        ""
        if run.table is not None
        else missing_note(f"no latent table (gather/latents.parquet): {GATHER_HINT}")
    )
    measured = [f"{p.point_id}: {stats[p.point_id]['measured_on']}" for p in run.points
                if stats[p.point_id].get("measured_on")]  # fmt: skip
    if measured:  # pretrained dictionaries: no training figures
        note += "<p>FVU, L0 and dead % measured on the collect tokens (pretrained: no " \
            f"training evaluation) for {html.escape('; '.join(measured))}.</p>"  # fmt: skip
    return note + table_html(head, rows)


def _score_cell(s: dict[str, Any], scorer: str) -> str:
    real, ctrl = s.get(f"scores.{scorer}"), s.get(f"control.{scorer}")
    if real is None:
        return "n/a"
    text = f"{real[0]:.3f} [{real[1]:.3f}, {real[2]:.3f}] n={real[3]}"
    return text + (f" ({ctrl[0]:.3f})" if ctrl is not None else "")


def _score_distributions(runs: list[RunSet], img: Images) -> str:
    tables = [(r, r.table) for r in runs if r.table is not None]
    if not tables:
        return missing_note(f"no latent table (gather/latents.parquet): {GATHER_HINT}")
    groups: dict[str, dict[str, list[float]]] = {}
    metric_of: dict[str, str] = {}
    for run, table in tables:
        ok = table.text("status") == "ok"
        tag = f"{run.name}: " if len(runs) > 1 else ""
        for scorer in table.scorers("scores"):
            metric_of[scorer] = table.metric_of(scorer) or "score"
            by = groups.setdefault(scorer, {})
            for p in run.points:
                mask = ok & table.point_mask(p)
                by.setdefault(tag + p.kind, []).extend(table.score(scorer)[mask].tolist())
            for source, name in (("control", "random-explanation control"),
                                 ("baseline", "single-token baseline")):  # fmt: skip
                vals = table.score(scorer, source, metric_of[scorer])[ok]
                if np.isfinite(vals).any():
                    by.setdefault(tag + name, []).extend(vals.tolist())
    missing = (
        ""
        if any("control" in g for by in groups.values() for g in by)
        else missing_note(
            "no random-explanation control scores in the table (interpret records' control field)"
        )
    )
    return missing + img.add("scores", plots.score_distributions(groups, metric_of),
                             "no scorer produced a score (no latent has status ok)")  # fmt: skip


def _correlations(table: LatentTable | None, img: Images) -> str:
    if table is None:
        return missing_note(f"no latent table: {GATHER_HINT}")
    names, corr, count = scorer_correlations(table)
    if len(names) < 2:
        return missing_note(f"fewer than two scorers have scores ({', '.join(names) or 'none'}): "
                        "run more scorers (scorer.names) to correlate them")  # fmt: skip
    body = img.add(
        "scorer_corr",
        plots.correlation_heatmap(
            names, corr, "Spearman correlation between scorers (latents with status ok)"
        ),
        "",
    )
    head = ["scorer", "metric"] + names
    rows = [[a, table.metric_of(a) or ""] + [f"{fixed(corr[i, j])} (n={count[i, j]})"
            for j in range(len(names))] for i, a in enumerate(names)]  # fmt: skip
    body += table_html(head, rows)
    ref = reference_scorer()  # simulation: the paper's Table 1 correlates against it
    if ref in names:
        k = names.index(ref)
        rows = [[a, fixed(corr[i, k]), str(count[i, k])] for i, a in enumerate(names) if i != k]
        body += f"<h3>Against {ref} (as in the paper's Table 1)</h3>"
        body += table_html(["scorer", f"Spearman vs {ref}", "latents"], rows)
    elif ref is not None:
        body += missing_note(f"{ref} was not run: the table against {ref} (the paper's "
                         f"Table 1) needs scorer.names to include {ref}")  # fmt: skip
    return body


def _alignment(run: RunSet, img: Images) -> str:
    if not run.alignments:
        return missing_note(f"no alignment results: {ALIGN_HINT}")
    by_id = {p.point_id: p for p in run.points}
    body = ""
    for series in sorted({p.series for p in run.points}):
        pts = sorted((p for p in run.points if p.series == series), key=lambda p: p.layer)
        matrix = _alignment_matrix(pts, run.alignments)
        if matrix is not None:
            labels = [f"layer {p.layer}" for p in pts]
            title = f"{series}: mean matched similarity, adjacent layers"
            body += img.add(f"align-{slug(series)}",
                            plots.alignment_heatmap(labels, labels, matrix, title), "")  # fmt: skip
    across = [a for a in run.alignments if a.kind != "layers"]
    if across:
        pts = sorted({p for a in across for p in (a.a, a.b) if p in by_id},
                     key=lambda pid: (by_id[pid].layer, by_id[pid].series))  # fmt: skip
        labels = [by_id[pid].label for pid in pts]
        matrix = _alignment_matrix([by_id[pid] for pid in pts], across)
        if matrix is not None:
            body += img.add("align-dictionaries", plots.alignment_heatmap(
                labels, labels, matrix, "mean matched similarity between dictionaries"), "")  # fmt: skip
    head = ["dictionary A", "dictionary B", "kind", "similarity", "median matched (random)",
            "mean", "fraction above (random)", "explanation similarity (shuffled)", "pairs",
            "status"]  # fmt: skip
    rows = []
    for a in run.alignments:
        pa, pb = by_id.get(a.a), by_id.get(a.b)
        frac, base = a.get("frac_above") or {}, a.get("baseline_frac_above") or {}
        fr = ", ".join(
            f">={k}: {fixed(v, 2)} ({fixed(base.get(k), 2)})" for k, v in sorted(frac.items())
        )
        rows.append([
            pa.label if pa else a.a, pb.label if pb else a.b, a.kind, a.get("similarity") or "",
            f"{fixed(a.get('median'))} ({fixed(a.get('baseline_median'))})", fixed(a.get("mean")), fr,
            f"{fixed(a.get('explanation_similarity_mean'))} "
            f"({fixed(a.get('explanation_similarity_shuffled'))})",
            fixed(a.get("num_pairs"), 0),
            a.status if a.status == "ok" else f"{a.status}: {a.get('reason')}",
        ])  # fmt: skip
    return body + table_html(head, rows)


def _alignment_matrix(pts: list[Point], aligns: list[Alignment]) -> np.ndarray | None:
    """[P, P] mean matched similarity of the aligned pairs among ``pts`` (NaN elsewhere,
    1 on the diagonal); None if no pair among them was aligned."""
    idx = {p.point_id: i for i, p in enumerate(pts)}
    m = np.full((len(pts), len(pts)), np.nan)
    for a in aligns:
        mean = a.get("mean")
        if a.a in idx and a.b in idx and a.status == "ok" and isinstance(mean, (int, float)):
            m[idx[a.a], idx[a.b]] = m[idx[a.b], idx[a.a]] = float(mean)
    if len(pts) < 2 or not np.isfinite(m).any():
        return None
    np.fill_diagonal(m, 1.0)
    return m


def line_up(runs: list[RunSet]) -> tuple[list[str], dict[tuple[str, ...], dict[int, Point]]]:
    """Line up the points of ``runs`` by their overrides.

    The coordinates are the override keys that vary inside some run (what a multirun
    sweeps over); a point lacking a key stands at "(default)". Returns the keys and
    coordinate -> {run index: point}.
    """
    keys: set[str] = set()
    for r in runs:
        dicts = [p.override_dict() for p in r.points]
        for k in {k for d in dicts for k in d}:
            if len({d.get(k) for d in dicts}) > 1:
                keys.add(k)
    ordered = sorted(keys) or ["sae", "layer"]
    cells: dict[tuple[str, ...], dict[int, Point]] = {}
    for ri, r in enumerate(runs):
        for p in r.points:
            d = p.override_dict()
            cells.setdefault(tuple(d.get(k, "(default)") for k in ordered), {})[ri] = p
    return ordered, cells


def _lineup_tables(runs: list[RunSet], stats: dict) -> str:
    keys, points = line_up(runs)
    cells = {
        coord: {ri: stats[(id(runs[ri]), p.point_id)] for ri, p in by.items()}
        for coord, by in points.items()
    }
    scorers = sorted({s for r in runs if r.table is not None for s in r.table.scorers("scores")})
    metrics: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("FVU", lambda s: fixed(s.get("fvu"))), ("L0", lambda s: fixed(s.get("l0"), 1)),
        ("dead %", lambda s: fixed(s.get("dead_pct"), 1)),
        ("CE-loss increase", lambda s: fixed(s.get("ce_increase"))),
    ] + [(f"{sc} median (control)", lambda s, sc=sc: _score_cell(s, sc)) for sc in scorers]  # fmt: skip
    out = ""
    for title, fmt in metrics:
        rows = [[*coord, *(fmt(by[ri]) if ri in by else "missing" for ri in range(len(runs)))]
                for coord, by in sorted(cells.items())]  # fmt: skip
        out += f"<h3>{html.escape(title)}</h3>" + table_html([*keys, *(r.name for r in runs)], rows)
    return out
