"""gather: check the whole sweep is committed, then one table, a summary and exports.

Wiring: the work is :mod:`interp.gather` (completeness, the points' columns and record
files, the outputs, the commit). If any array task of any stage of any point is not
committed, it names them, says how to finish or drop them, and writes nothing.
Otherwise it writes, each file atomically and ``manifest.json`` last (a gather that fails
midway writes ``FAILED.json`` instead, see :mod:`interp.report.gather_state`)::

    gather/latents.parquet      one row per latent of every point (interp.report.table)
    gather/summary.json|.md     per point: dictionary quality, score distributions, costs
    gather/export/delphi/       explanations and scores in delphi's layout
    gather/export/neuronpedia/  Neuronpedia's explanation / score import layout

Later steps of the gather job (alignment, the HTML report) hook in through
:data:`interp.gather.outputs.AFTER_TABLE`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from interp.gather.complete import (
    IncompleteSweepError,
    check_complete,
    fingerprint,
    incomplete_message,
    incomplete_points,
    index_ranges,
    load_points,
)
from interp.gather.outputs import AFTER_TABLE, TABLE, build_table
from interp.gather.points import interpret_tasks, point_columns
from interp.gather.sweep import gather, is_current, up_to_date
from interp.plan import StageJob
from interp.report.summary import format_markdown
from interp.runs import gather_dir, gather_manifest
from interp.stages.context import StageContext
from interp.sweep_lock import hold_sweep

__all__ = [  # the gather's names, importable from here as before
    "AFTER_TABLE", "TABLE", "IncompleteSweepError", "build_table", "check_complete",
    "fingerprint", "gather", "gather_manifest", "incomplete_message", "incomplete_points",
    "index_ranges", "interpret_tasks", "is_current", "load_points", "point_columns",
    "report", "run",
]  # fmt: skip

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> None:
    """The gather job: redone whole unless its manifest matches what is committed.

    It holds the sweep folder while it reads it (waiting for another command that does;
    a sweep command that runs this task holds it for it)."""
    with hold_sweep(ctx.root, wait=True):
        _run(ctx.root)


def report(root: Path, job: StageJob, alive: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(problems, notes) for the sweep status (the registry's ``report`` hook): a failed
    or unfinished gather's stale outputs."""
    from interp.report.gather_state import stale_lines

    return stale_lines(root), []


def _run(root: Path) -> None:
    if up_to_date(root):  # record files as committed too
        log.info("gather is up to date (%s)", gather_dir(root))
        print((gather_dir(root) / "summary.md").read_text(), flush=True)
        return
    summary = gather(root)
    print(format_markdown(summary), flush=True)
