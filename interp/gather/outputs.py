"""The gather's outputs, from plain values: the table, the summary, the exports and the
``AFTER_TABLE`` hooks, each noted in a :class:`GatherProgress` as it finishes::

    gather/latents.parquet      one row per latent of every point (interp.report.table)
    gather/summary.json|.md     per point: dictionary quality, score distributions, costs
    gather/export/delphi/       explanations and scores in delphi's layout
    gather/export/neuronpedia/  Neuronpedia's explanation / score import layout

Everything streams: record files are read one at a time into columnar batches, the
summary reads one column at a time, the exports read the table one row group at a time.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from interp.gather.points import PointSource
from interp.report.export import write_exports
from interp.report.gather_state import GatherProgress
from interp.report.summary import format_markdown, summarize
from interp.report.table import TableWriter, read_record_file, with_point_columns
from interp.runs import atomic_write_json, atomic_write_text, gather_dir, tmp_name

AFTER_TABLE: tuple[str, ...] = (
    "interp.stages.align:align_sweep",  # first: the report draws its heatmaps
    "interp.report.html:write_report",
)
"""``"module:function"`` names, each called as ``function(root: Path)`` with the sweep
folder once the table, summary and exports are committed and before the gather
manifest is written (so a failure there leaves the gather not current, to be redone).
Alignment and the HTML report register here."""

TABLE = "latents.parquet"


def build_table(sources: list[PointSource], out: Path) -> list[dict[str, Any]]:
    """Stream every point's record files into ``out`` (Parquet); returns the points'
    columns, in table order."""
    writer = TableWriter(tmp_name(out.with_suffix(".parts")))
    total = sum(len(s.records) for s in sources)
    with tqdm(total=total, desc="gather records", unit="range") as bar:
        for source in sources:
            for rec in source.records:
                table = read_record_file(rec.path, rec.start, rec.stop, rec.latents)
                writer.add(with_point_columns(table, source.columns))
                bar.update()
    writer.commit(out)
    return [s.columns for s in sources]


def write_outputs(
    root: Path, sources: list[PointSource], exports: tuple[str, ...], progress: GatherProgress
) -> tuple[dict[str, Any], dict[str, float]]:
    """Table, summary, exports, then the AFTER_TABLE hooks; each step noted in
    ``progress`` as it finishes. Returns the summary and the steps' seconds."""
    out = gather_dir(root)
    t0 = time.perf_counter()
    progress.start("table")
    points = build_table(sources, out / TABLE)
    progress.done(TABLE)
    t1 = time.perf_counter()
    progress.start("summary")
    summary = summarize(out / TABLE, points)
    atomic_write_json(out / "summary.json", summary)
    atomic_write_text(out / "summary.md", format_markdown(summary))
    progress.done("summary.json", "summary.md")
    t2 = time.perf_counter()
    if exports:
        progress.start("exports")
        write_exports(out / TABLE, out / "export", points, formats=exports)
        progress.done("export")
    t3 = time.perf_counter()
    for name in AFTER_TABLE:
        progress.start(name)
        module, func = name.split(":")
        getattr(importlib.import_module(module), func)(root)
        progress.done()
    return summary, {"table_s": t1 - t0, "summary_s": t2 - t1, "export_s": t3 - t2}
