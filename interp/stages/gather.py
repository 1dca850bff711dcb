"""gather: check the whole sweep is committed, then one table, a summary and exports.

Reads only the run folder: every point's resolved config (``points/*/config.json``),
the stage manifests, the interpret records and the training summaries. If any array task
of any stage of any point is not committed, it names them (stage, point, indices), says
how to finish them (``launch/rerun.py`` for a SLURM sweep, the recorded ``sweep.py``
command on this machine) or drop them (their ``points/<id>`` folder), and writes nothing.
Otherwise it writes, each file atomically and ``manifest.json`` last (the commit: its
fingerprint tells ``status`` the gather is current; a gather that fails midway writes
``FAILED.json`` instead, saying its outputs are stale, see
:mod:`interp.report.gather_state`)::

    gather/latents.parquet      one row per latent of every point (interp.report.table)
    gather/summary.json|.md     per point: dictionary quality, score distributions, costs
    gather/export/delphi/       explanations and scores in delphi's layout
    gather/export/neuronpedia/  Neuronpedia's explanation / score import layout

Everything streams: record files are read one at a time into columnar batches, the
summary reads one column at a time, the exports read the table one row group at a time.
Later steps of the gather job (alignment, the HTML report) hook in through
:data:`AFTER_TABLE`: functions of the sweep folder called once the table is committed.
"""

from __future__ import annotations

import importlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from interp.config import RunConfig
from interp.llm.ledger import read_ledger
from interp.models import hookpoint_width
from interp.plan import StageJob, Task, pending, plan_point
from interp.report.export import write_exports
from interp.report.gather_state import GatherProgress, clear_failure, record_failure
from interp.report.summary import format_markdown, summarize
from interp.report.table import TableWriter, read_record_file, with_point_columns
from interp.runs import (
    RunPaths,
    atomic_write_json,
    atomic_write_text,
    cluster_config_file,
    gather_dir,
    gather_manifest,
    points_dir,
    read_manifest,
    read_points,
    remove_stale_tmp,
    short_hash,
    tmp_name,
)
from interp.stages.context import StageContext
from interp.sweep_lock import hold_sweep
from interp.verify import check_records

log = logging.getLogger(__name__)

AFTER_TABLE: tuple[str, ...] = (
    "interp.stages.align:align_sweep",  # first: the report draws its heatmaps
    "interp.report.html:write_report",
)
"""``"module:function"`` names, each called as ``function(root: Path)`` with the sweep
folder once the table, summary and exports are committed and before the gather
manifest is written (so a failure there leaves the gather not current, to be redone).
Alignment and the HTML report register here."""

TABLE = "latents.parquet"


class IncompleteSweepError(RuntimeError):
    """Some array tasks of the sweep are not committed."""


def load_points(root: Path) -> list[RunConfig]:
    cfgs = read_points(root)
    if not cfgs:
        raise IncompleteSweepError(f"no sweep points under {points_dir(root)}")
    return cfgs


def check_complete(root: Path, cfgs: list[RunConfig], *, records: bool = False) -> list[str]:
    """One line per (point, stage) with uncommitted array tasks (empty: complete).

    With ``records``, each committed interpret task's record file is checked against
    its manifest (present; same size and sha256 as committed, or for older manifests,
    parses with one record per latent): a lost, truncated or edited file is named with
    the files to delete and the task to rerun (rerun deletes nothing, so say so).
    """
    incomplete = incomplete_points(root, cfgs, records=records)
    return [line for lines in incomplete.values() for line in lines]


def incomplete_points(
    root: Path, cfgs: list[RunConfig], *, records: bool = False
) -> dict[str, list[str]]:
    """Point id -> one line per stage of that point with uncommitted array tasks; only
    incomplete points are keys (see :func:`check_complete`)."""
    out: dict[str, list[str]] = {}
    for cfg in cfgs:
        paths = RunPaths(root, cfg)
        where = f"point {paths.ids.point} ({cfg.sae.sae_id}, layer {cfg.layer})"
        problems = []
        for job in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)):
            todo = pending(job, paths)
            if todo:
                idx = index_ranges(sorted(t.index for t in todo))
                problems.append(
                    f"{where}: {job.stage} tasks {idx} of {len(job.tasks)} not committed"
                )
            if records and job.stage == "interpret":
                bad = (check_records(paths, t) for t in job.tasks if t not in todo)
                problems += [f"{where}: {p}" for p in bad if p]
        if problems:
            out[paths.ids.point] = problems
    return out


def index_ranges(indices: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2,5,7-8' (array-index syntax, as sbatch --array takes)."""
    parts: list[str] = []
    for i in indices:
        if parts and i == int(parts[-1].rsplit("-", 1)[-1]) + 1:
            parts[-1] = f"{parts[-1].split('-')[0]}-{i}"
        else:
            parts.append(str(i))
    return ",".join(parts)


def fingerprint(root: Path, cfgs: list[RunConfig]) -> str:
    """Changes whenever a point or an interpret commit changes."""
    parts = []
    for cfg in cfgs:
        paths = RunPaths(root, cfg)
        manifests = sorted(paths.manifest_dir("interpret").glob("*.json"))
        parts.append([paths.ids.point, [read_manifest(m) for m in manifests]])
    return short_hash(parts, 16)


def point_columns(root: Path, cfg: RunConfig) -> dict[str, Any]:
    """The point's identity (table columns), its dictionary's training figures and
    the LLM tokens every interpret attempt paid (the ledgers)."""
    paths = RunPaths(root, cfg)
    train = json.loads(paths.train_summary().read_text()) if paths.train_summary().exists() else {}
    return {
        "point": paths.ids.point,
        "model": cfg.model.name,
        "layer": cfg.layer,
        "hookpoint": cfg.hookpoint,
        "sae_id": cfg.sae.sae_id,
        "architecture": cfg.sae.architecture,
        "explainer_model": cfg.llm.model,
        "fvu": train.get("fvu"),
        "l0": train.get("l0"),
        "dead_pct": train.get("dead_pct"),
        "ce_increase": train.get("ce_increase"),
        "llm_paid": read_ledger(paths.llm_ledger_dir()),  # every attempt, killed ones too
    }


def interpret_tasks(cfg: RunConfig) -> tuple[Task, ...]:
    (job,) = [
        j
        for j in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint))
        if j.stage == "interpret"
    ]
    return job.tasks


def build_table(root: Path, cfgs: list[RunConfig], out: Path) -> list[dict[str, Any]]:
    """Stream every point's record files into ``out`` (Parquet); returns the points'
    columns, in table order."""
    points = [point_columns(root, cfg) for cfg in cfgs]
    writer = TableWriter(tmp_name(out.with_suffix(".parts")))
    total = sum(len(interpret_tasks(cfg)) for cfg in cfgs)
    with tqdm(total=total, desc="gather records", unit="range") as bar:
        for cfg, point in zip(cfgs, points):
            paths = RunPaths(root, cfg)
            for task in interpret_tasks(cfg):
                table = read_record_file(paths.records_file(task.index), task.start, task.stop)
                writer.add(with_point_columns(table, point))
                bar.update()
    writer.commit(out)
    return points


def incomplete_message(root: Path, cfgs: list[RunConfig], incomplete: dict[str, list[str]]) -> str:
    """What is missing, how to finish it (SLURM or this machine) and how to drop a point
    nobody will finish: gather reads every point ever recorded in the folder."""
    stale = [p for c in cfgs if (p := RunPaths(root, c)).ids.point in incomplete]
    lines = [line for paths in stale for line in incomplete[paths.ids.point]]
    if cluster_config_file(root).exists():
        finish = f"resubmit only these tasks: python launch/rerun.py {root}"
    else:
        commands = dict.fromkeys(_sweep_command(paths) for paths in stale)
        finish = (
            "finish them on this machine: run the sweep.py command that recorded each point "
            "again (committed tasks are skipped)" + "".join(f"\n  {c}" for c in commands if c)
        )
    return (
        "the sweep is not complete, nothing was gathered:\n  "
        + "\n  ".join(lines)
        + f"\n{finish}\nor drop the points nobody will finish (a typo, an abandoned run), "
        + "since every gather of this folder reads every point recorded in it:\n  rm -r "
        + " ".join(str(paths.point_dir()) for paths in stale)
    )


def _sweep_command(paths: RunPaths) -> str:
    """``python launch/sweep.py <overrides>`` of a point a multirun recorded ('' else)."""
    try:
        overrides = json.loads(paths.point_overrides().read_text())["overrides"]
    except (OSError, ValueError, KeyError):
        return ""
    return "python launch/sweep.py " + " ".join(overrides)


def gather(root: Path, *, exports: tuple[str, ...] = ("delphi", "neuronpedia")) -> dict[str, Any]:
    """Check, then write the table, summary and exports of sweep folder ``root``.

    Returns the summary. Raises :class:`IncompleteSweepError` (nothing written) when
    any task is missing. A step that raises leaves ``gather/FAILED.json`` (what failed,
    which outputs are from which gather) and no manifest; a later gather that succeeds
    removes it (:mod:`interp.report.gather_state`).
    """
    cfgs = load_points(root)
    incomplete = incomplete_points(root, cfgs, records=True)
    if incomplete:
        raise IncompleteSweepError(incomplete_message(root, cfgs, incomplete))
    out = gather_dir(root)
    stamp = fingerprint(root, cfgs)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out)
    gather_manifest(root).unlink(missing_ok=True)  # not current while it is rewritten
    progress = GatherProgress(root)
    try:
        summary, timing = _write_outputs(root, cfgs, exports, progress)
    except BaseException as err:  # a signal's exception too: the outputs are stale
        _mark_failed(progress, err)
        raise
    clear_failure(root)  # before the manifest: a kill in between reads "not finished"
    atomic_write_json(
        gather_manifest(root),
        {"fingerprint": stamp, "n_rows": summary["n_latents"], "timing": timing},
    )
    log.info(
        "gathered %d latent records of %d point(s) into %s (table %.1f s, summary %.1f s, "
        "exports %.1f s)",
        summary["n_latents"], len(cfgs), out, *timing.values(),
    )  # fmt: skip
    return summary


def _mark_failed(progress: GatherProgress, err: BaseException) -> None:
    """FAILED.json, never hiding ``err`` (a failure to write it is only logged)."""
    try:
        path = record_failure(progress, err)
    except Exception as e:  # e.g. the disk that failed the gather
        log.error("gather failed in %s; could not write its failure file: %s", progress.current, e)
        return
    log.error("gather failed in %s: the outputs beside %s are stale", progress.current, path)


def _write_outputs(
    root: Path, cfgs: list[RunConfig], exports: tuple[str, ...], progress: GatherProgress
) -> tuple[dict[str, Any], dict[str, float]]:
    """Table, summary, exports, then the AFTER_TABLE hooks; each step noted in
    ``progress`` as it finishes. Returns the summary and the steps' seconds."""
    out = gather_dir(root)
    t0 = time.perf_counter()
    progress.start("table")
    points = build_table(root, cfgs, out / TABLE)
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


def run(ctx: StageContext) -> None:
    """The gather job: redone whole unless its manifest matches what is committed.

    It holds the sweep folder while it reads it (waiting for another command that does;
    a sweep command that runs this task holds it for it)."""
    with hold_sweep(ctx.root, wait=True):
        _run(ctx.root)


def is_current(root: Path) -> bool:
    """True when gather's table was built from exactly what is committed now (the
    registry's ``current`` hook: the cluster edge submits no gather then)."""
    done = read_manifest(gather_manifest(root))
    return bool(done) and done.get("fingerprint") == fingerprint(root, load_points(root))


def report(root: Path, job: StageJob, alive: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(problems, notes) for the sweep status (the registry's ``report`` hook): a failed
    or unfinished gather's stale outputs."""
    from interp.report.gather_state import stale_lines

    return stale_lines(root), []


def _run(root: Path) -> None:
    cfgs = load_points(root)
    done = read_manifest(gather_manifest(root))
    if (
        done
        and done.get("fingerprint") == fingerprint(root, cfgs)
        and not check_complete(root, cfgs, records=True)  # record files as committed
    ):
        log.info("gather is up to date (%s)", gather_dir(root))
        print((gather_dir(root) / "summary.md").read_text(), flush=True)
        return
    summary = gather(root)
    print(format_markdown(summary), flush=True)
