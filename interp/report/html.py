"""The sweep report and the comparison of several multiruns: one static HTML file with
PNG images beside it (``img/``), readable offline (no script, no CDN).

``write_report(root)`` is what the gather job calls for its own sweep; it writes
``<root>/gather/report/index.html`` (+ latent dashboards under ``latents/``).
``compare(inputs, out)`` lines up the points of several sweeps or Hydra multirun folders
by their overrides (``launch/compare.py``). Sections: points table; reconstruction (FVU,
CE-loss increase) vs sparsity (L0); dead latents; training curves; score distributions
(SAE latents vs neurons vs the random-explanation control); correlations between scorers
(and each scorer against simulation, the paper's Table 1); layer-to-layer alignment.
A missing input (no gather table, a scorer not run, no alignment) turns its section into
a sentence saying what is missing and how to produce it - never an exception.

Every piece of text that comes from a run (explanations, overrides, ids) is escaped with
``html.escape``.
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.report import plots
from interp.report.dashboard import DashboardConfig, write_dashboards
from interp.report.sweepdata import (
    Alignment,
    LatentTable,
    Point,
    load_alignments,
    load_points,
    multirun_job,
    read_metrics,
    read_table,
)
from interp.runs import gather_dir, tmp_name
from interp.score.registry import reference_scorer

log = logging.getLogger(__name__)

ALIGN_HINT = "the align step of the gather job writes them under gather/align/"
GATHER_HINT = "run the gather job (python launch/sweep.py ... again; committed work is skipped)"


@dataclass(frozen=True)
class ReportConfig:
    """What the report draws and how much of it."""

    dashboards: DashboardConfig = field(default_factory=DashboardConfig)
    build_dashboards: bool = True  # latent pages need the store, the SAE and the subject model
    n_boot: int = 500  # bootstrap resamples for the confidence interval of a median
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 10:
            raise ValueError(f"n_boot={self.n_boot}: use at least 10 bootstrap resamples")


@dataclass
class RunSet:
    """The points of one sweep folder or one Hydra multirun, and what was gathered."""

    name: str
    root: Path
    points: list[Point]
    table: LatentTable | None
    alignments: list[Alignment] | None


# ----------------------------------------------------------------------------- entry points


def write_report(root: Path, out: Path | None = None, cfg: ReportConfig | None = None) -> Path:
    """The report of sweep folder ``root`` into ``out`` (default ``<root>/gather/report``);
    returns the HTML file. Replaces an earlier report atomically."""
    cfg = cfg or ReportConfig()
    root = Path(root).resolve()
    out = Path(out) if out is not None else gather_dir(root) / "report"
    run = load_runset(root, root.name)
    if not run.points:
        raise ValueError(
            f"{root} has no recorded sweep point (points/*/config.json): is it a sweep folder?"
        )

    def build(tmp: Path) -> None:
        sections = sweep_sections(run, tmp, cfg)
        if cfg.build_dashboards:
            sections.append(("Latent dashboards", _dashboards(run, tmp, cfg)))
        _write_page(tmp / "index.html", f"Sweep report: {root.name}", [str(root)], sections)

    _build_dir(out, build)
    log.info("report written to %s", out / "index.html")
    return out / "index.html"


def compare(inputs: Sequence[Path], out: Path, cfg: ReportConfig | None = None) -> Path:
    """Compare sweep folders / Hydra multirun folders ``inputs``; returns the HTML file."""
    cfg = cfg or ReportConfig()
    runs = load_inputs(inputs)

    def build(tmp: Path) -> None:
        sections = compare_sections(runs, tmp, cfg)
        for run in runs:
            for title, body in sweep_sections(run, tmp, cfg, prefix=f"{_slug(run.name)}-"):
                sections.append((f"{run.name}: {title}", body))
        _write_page(tmp / "index.html", "Comparison of multiruns",
                    [f"{r.name}: {r.root}" for r in runs], sections)  # fmt: skip

    _build_dir(Path(out), build)
    return Path(out) / "index.html"


def load_inputs(inputs: Sequence[Path]) -> list[RunSet]:
    """The run sets of sweep / multirun folders ``inputs``, each named by the overrides
    its points share that the other runs' points lack (else its folder name)."""
    runs = [r for p in inputs for r in resolve_input(Path(p))]
    if not any(r.points for r in runs):
        raise ValueError(f"no sweep points found in {[str(p) for p in inputs]}")
    _name_runs(runs)
    return runs


def load_runset(root: Path, name: str, only: set[str] | None = None) -> RunSet:
    points = [p for p in load_points(root) if only is None or p.point_id in only]
    return RunSet(name, root, points, read_table(root), load_alignments(root))


def resolve_input(path: Path) -> list[RunSet]:
    """A sweep folder (has ``points/``) or a Hydra multirun folder (job folders with
    ``.hydra/overrides.yaml``): the run sets it names."""
    path = path.resolve()
    if (path / "points").is_dir():
        return [load_runset(path, path.name)]
    jobs = [j for j in sorted(path.iterdir()) if (j / ".hydra" / "overrides.yaml").is_file()] \
        if path.is_dir() else []  # fmt: skip
    found = [f for j in jobs if (f := multirun_job(j)) is not None]
    if not found:
        raise ValueError(
            f"{path} is neither a sweep folder (no points/) nor a Hydra multirun folder "
            "(no <n>/.hydra/overrides.yaml): pass runs/<name> or runs/<name>/.hydra/multirun-*"
        )
    by_root: dict[Path, set[str]] = {}
    for pid, _, cfg in found:
        root = _sweep_root_of(cfg, path)
        by_root.setdefault(root, set()).add(pid)
    return [load_runset(root, path.name, ids) for root, ids in sorted(by_root.items())]


def _sweep_root_of(cfg: Any, multirun: Path) -> Path:
    from interp.runs import RunPaths

    candidates = [RunPaths.sweep_root(cfg), multirun.parent.parent]
    for root in candidates:
        if (root / "points").is_dir():
            return root.resolve()
    raise ValueError(
        f"the sweep folder of multirun {multirun} is not at {candidates[0]} nor at "
        f"{candidates[1]}: run compare.py from the directory the sweep was launched in"
    )


def _name_runs(runs: list[RunSet]) -> None:
    """Name each run by its overrides common to all its points that other runs lack."""
    common = [_common_overrides(r.points) for r in runs]
    shared = set.intersection(*common) if common else set()
    for run, mine in zip(runs, common):
        own = sorted(mine - shared)
        if own and len(runs) > 1:
            run.name = " ".join(own)
    names = [r.name for r in runs]
    for i, run in enumerate(runs):
        if names.count(run.name) > 1:
            run.name = f"{run.name} #{i + 1}"


def _common_overrides(points: list[Point]) -> set[str]:
    sets = [{f"{k}={v}" for k, v in p.override_dict().items()} for p in points]
    return set.intersection(*sets) if sets else set()


# ----------------------------------------------------------------------------- statistics


def point_stats(point: Point, table: LatentTable | None, cfg: ReportConfig) -> dict[str, Any]:
    """Per-point figures: training summary, latent counts by status, per-scorer medians
    with bootstrap 95% CIs (real and control explanations), LLM cost per latent."""
    t = point.train
    stats: dict[str, Any] = {k: t.get(k) for k in ("fvu", "l0", "dead_pct", "ce_increase")}
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


# ----------------------------------------------------------------------------- sections

Section = tuple[str, str]


def sweep_sections(run: RunSet, out: Path, cfg: ReportConfig, prefix: str = "") -> list[Section]:
    """The report of one sweep; images go to ``out/img/<prefix>*.png``."""
    stats = {p.point_id: point_stats(p, run.table, cfg) for p in run.points}
    scorers = run.table.scorers("scores") if run.table is not None else []
    img = _Images(out, prefix)
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
    img = _Images(out, "compare-")
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
                 p.cfg.sae.sae_id, p.cfg.hookpoint, _f(s.get("fvu")), _f(s.get("l0"), 1),
                 _f(s.get("dead_pct"), 1), _f(s.get("ce_increase")), _f(s.get("n_latents"), 0),
                 ", ".join(f"{k} {v}" for k, v in (s.get("status") or {}).items())]  # fmt: skip
        cells += [_score_cell(s, scorer) for scorer in scorers]
        cells += [_f(s.get("prompt_tokens"), 0), _f(s.get("wall_s"), 2)]
        rows.append(cells)
    note = (
        ""
        if run.table is not None
        else _missing(f"no latent table (gather/latents.parquet): {GATHER_HINT}")
    )
    return note + table_html(head, rows)


def _score_cell(s: dict[str, Any], scorer: str) -> str:
    real, ctrl = s.get(f"scores.{scorer}"), s.get(f"control.{scorer}")
    if real is None:
        return "n/a"
    text = f"{real[0]:.3f} [{real[1]:.3f}, {real[2]:.3f}] n={real[3]}"
    return text + (f" ({ctrl[0]:.3f})" if ctrl is not None else "")


def _score_distributions(runs: list[RunSet], img: _Images) -> str:
    tables = [(r, r.table) for r in runs if r.table is not None]
    if not tables:
        return _missing(f"no latent table (gather/latents.parquet): {GATHER_HINT}")
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
        else _missing(
            "no random-explanation control scores in the table (interpret records' control field)"
        )
    )
    return missing + img.add("scores", plots.score_distributions(groups, metric_of),
                             "no scorer produced a score (no latent has status ok)")  # fmt: skip


def _correlations(table: LatentTable | None, img: _Images) -> str:
    if table is None:
        return _missing(f"no latent table: {GATHER_HINT}")
    names, corr, count = scorer_correlations(table)
    if len(names) < 2:
        return _missing(f"fewer than two scorers have scores ({', '.join(names) or 'none'}): "
                        "run more scorers (scorer.names) to correlate them")  # fmt: skip
    body = img.add(
        "scorer_corr",
        plots.correlation_heatmap(
            names, corr, "Spearman correlation between scorers (latents with status ok)"
        ),
        "",
    )
    head = ["scorer", "metric"] + names
    rows = [[a, table.metric_of(a) or ""] + [f"{_f(corr[i, j])} (n={count[i, j]})"
            for j in range(len(names))] for i, a in enumerate(names)]  # fmt: skip
    body += table_html(head, rows)
    ref = reference_scorer()  # simulation: the paper's Table 1 correlates against it
    if ref in names:
        k = names.index(ref)
        rows = [[a, _f(corr[i, k]), str(count[i, k])] for i, a in enumerate(names) if i != k]
        body += f"<h3>Against {ref} (as in the paper's Table 1)</h3>"
        body += table_html(["scorer", f"Spearman vs {ref}", "latents"], rows)
    elif ref is not None:
        body += _missing(f"{ref} was not run: the table against {ref} (the paper's "
                         f"Table 1) needs scorer.names to include {ref}")  # fmt: skip
    return body


def _alignment(run: RunSet, img: _Images) -> str:
    if not run.alignments:
        return _missing(f"no alignment results: {ALIGN_HINT}")
    by_id = {p.point_id: p for p in run.points}
    body = ""
    for series in sorted({p.series for p in run.points}):
        pts = sorted((p for p in run.points if p.series == series), key=lambda p: p.layer)
        matrix = _alignment_matrix(pts, run.alignments)
        if matrix is not None:
            labels = [f"layer {p.layer}" for p in pts]
            title = f"{series}: mean matched similarity, adjacent layers"
            body += img.add(f"align-{_slug(series)}",
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
        fr = ", ".join(f">={k}: {_f(v, 2)} ({_f(base.get(k), 2)})" for k, v in sorted(frac.items()))
        rows.append([
            pa.label if pa else a.a, pb.label if pb else a.b, a.kind, a.get("similarity") or "",
            f"{_f(a.get('median'))} ({_f(a.get('baseline_median'))})", _f(a.get("mean")), fr,
            f"{_f(a.get('explanation_similarity_mean'))} "
            f"({_f(a.get('explanation_similarity_shuffled'))})",
            _f(a.get("num_pairs"), 0),
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
        ("FVU", lambda s: _f(s.get("fvu"))), ("L0", lambda s: _f(s.get("l0"), 1)),
        ("dead %", lambda s: _f(s.get("dead_pct"), 1)),
        ("CE-loss increase", lambda s: _f(s.get("ce_increase"))),
    ] + [(f"{sc} median (control)", lambda s, sc=sc: _score_cell(s, sc)) for sc in scorers]  # fmt: skip
    out = ""
    for title, fmt in metrics:
        rows = [[*coord, *(fmt(by[ri]) if ri in by else "missing" for ri in range(len(runs)))]
                for coord, by in sorted(cells.items())]  # fmt: skip
        out += f"<h3>{html.escape(title)}</h3>" + table_html([*keys, *(r.name for r in runs)], rows)
    return out


def _dashboards(run: RunSet, out: Path, cfg: ReportConfig) -> str:
    if run.table is None:
        return _missing(f"no latent table: {GATHER_HINT}")
    try:
        index = write_dashboards(
            run.points, run.table, run.alignments, out / "latents", cfg.dashboards
        )
    except Exception as err:  # a report without dashboards is still a report
        log.exception("latent dashboards failed")
        return _missing(f"latent dashboards could not be built: {type(err).__name__}: {err}")
    rel = index.relative_to(out).as_posix()
    return f'<p><a href="{html.escape(rel)}">Index of latent dashboards</a> (search and sort by score).</p>'


# ----------------------------------------------------------------------------- html


class _Images:
    """PNG files beside the page: ``add`` writes one and returns its <img>, or the note."""

    def __init__(self, out: Path, prefix: str) -> None:
        self.dir, self.prefix = out / "img", prefix

    def add(self, name: str, png: bytes | None, missing: str) -> str:
        if png is None:
            return _missing(missing) if missing else ""
        self.dir.mkdir(parents=True, exist_ok=True)
        file = f"{self.prefix}{name}.png"
        (self.dir / file).write_bytes(png)
        return f'<img src="img/{html.escape(file)}" alt="{html.escape(name)}">'


def table_html(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _missing(text: str) -> str:
    return f'<p class="missing">{html.escape(text)}</p>'


def _f(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{v:.{digits}f}" if digits else f"{int(round(v))}"


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:80]


PAGE_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}.missing{color:#a40;font-style:italic}img{max-width:100%}
nav a{margin-right:1em}.meta{color:#666;font-size:.85em}
"""


def _write_page(path: Path, title: str, sources: list[str], sections: list[Section]) -> None:
    nav = "".join(f'<a href="#s{i}">{html.escape(t)}</a>' for i, (t, _) in enumerate(sections))
    body = "".join(
        f'<h2 id="s{i}">{html.escape(t)}</h2>\n{b}\n' for i, (t, b) in enumerate(sections)
    )
    meta = "<br>".join(html.escape(s) for s in sources)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    page = (
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}"
        f"</title><style>{PAGE_CSS}</style></head><body><h1>{html.escape(title)}</h1>"
        f'<p class="meta">{meta}<br>written {stamp}</p><nav>{nav}</nav>{body}</body></html>'
    )
    path.write_text(page, encoding="utf-8")


def _build_dir(final: Path, build: Callable[[Path], None]) -> None:
    """Build a directory under a temporary name, then swap it in for ``final``: readers
    see the old report or the new one, never half of one."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = tmp_name(final)
    tmp.mkdir()
    try:
        build(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = tmp_name(final) if final.exists() else None
    if old is not None:
        os.rename(final, old)
    os.rename(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
