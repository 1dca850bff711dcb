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
from collections.abc import Sequence
from pathlib import Path

from interp.report.dashboard import write_dashboards
from interp.report.htmlkit import missing_note, slug, table_html
from interp.report.page import build_dir, write_page
from interp.report.runset import ReportConfig, RunSet, load_inputs, load_runset, resolve_input
from interp.report.sections import (
    GATHER_HINT,
    compare_sections,
    line_up,
    sweep_sections,
)
from interp.report.stats import median_ci, point_stats, scorer_correlations
from interp.runs import gather_dir

__all__ = [
    "ReportConfig",
    "RunSet",
    "compare",
    "line_up",
    "load_inputs",
    "load_runset",
    "median_ci",
    "point_stats",
    "resolve_input",
    "scorer_correlations",
    "table_html",
    "write_report",
]

log = logging.getLogger(__name__)


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
        write_page(tmp / "index.html", f"Sweep report: {root.name}", [str(root)], sections)

    build_dir(out, build)
    log.info("report written to %s", out / "index.html")
    return out / "index.html"


def compare(inputs: Sequence[Path], out: Path, cfg: ReportConfig | None = None) -> Path:
    """Compare sweep folders / Hydra multirun folders ``inputs``; returns the HTML file."""
    cfg = cfg or ReportConfig()
    runs = load_inputs(inputs)

    def build(tmp: Path) -> None:
        sections = compare_sections(runs, tmp, cfg)
        for run in runs:
            for title, body in sweep_sections(run, tmp, cfg, prefix=f"{slug(run.name)}-"):
                sections.append((f"{run.name}: {title}", body))
        write_page(tmp / "index.html", "Comparison of multiruns",
                    [f"{r.name}: {r.root}" for r in runs], sections)  # fmt: skip

    build_dir(Path(out), build)
    return Path(out) / "index.html"


def _dashboards(run: RunSet, out: Path, cfg: ReportConfig) -> str:
    if run.table is None:
        return missing_note(f"no latent table: {GATHER_HINT}")
    try:
        index = write_dashboards(
            run.points, run.table, run.alignments, out / "latents", cfg.dashboards
        )
    except Exception as err:  # a report without dashboards is still a report
        log.exception("latent dashboards failed")
        return missing_note(f"latent dashboards could not be built: {type(err).__name__}: {err}")
    rel = index.relative_to(out).as_posix()
    return f'<p><a href="{html.escape(rel)}">Index of latent dashboards</a> (search and sort by score).</p>'
