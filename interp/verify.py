"""Is a sweep's committed work intact? Every store decoded, every record file against its manifest.

A committed task's outputs can still be damaged afterwards (a lost or half-copied
file, a flipped byte). The store detects it chunk by chunk (:mod:`interp.store.integrity`);
record files carry their size and sha256 in the interpret manifest (written when the
range commits), so a truncated or edited file is told from the one that was committed.
Every problem comes with the files to delete and the task to rerun.

``launch/verify.py <sweep folder>`` runs :func:`verify_sweep`; the compact and interpret
stages and gather call the pieces on their own inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.plan import StageJob, Task, plan_point
from interp.records import LatentRecord, records_bytes
from interp.runs import RunPaths, atomic_write_bytes, read_manifest, read_points

READ_BLOCK = 1 << 22


@dataclass
class SweepReport:
    """Problems (each naming a file and the fix) and notes (nothing to redo)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


# ------------------------------------------------------------------------- records


def write_records(path: Path, records: Sequence[LatentRecord]) -> dict[str, Any]:
    """Write one range's records (JSON lines) atomically; what its manifest must hold."""
    data = records_bytes(records)
    atomic_write_bytes(path, data)
    return records_digest(data, len(records))


def records_digest(data: bytes, n_records: int) -> dict[str, Any]:
    """What the interpret manifest records of its record file, to tell it unchanged."""
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "n": n_records}


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(READ_BLOCK):
            h.update(block)
    return h.hexdigest()


def check_records(paths: RunPaths, task: Task) -> str:
    """Why interpret task ``task``'s committed record file is not what was committed
    ('' if it is, or if the task is not committed)."""
    manifest_file = paths.manifest_file("interpret", task.index)
    manifest = read_manifest(manifest_file)
    if manifest is None:
        return ""
    file = paths.records_file(task.index)
    doomed = f"{file} and {manifest_file}" if file.is_file() else str(manifest_file)
    fix = f"delete {doomed}, then rerun interpret task {task.index}: {rerun_command(paths)}"
    if not file.is_file():
        return f"{file} is gone but its range is committed: {fix}"
    want = manifest.get("records")
    if want is None:  # committed before manifests held a digest: parse it instead
        return _parse_problem(file, task, fix)
    size = file.stat().st_size
    if size != want["bytes"]:
        return f"{file} has {size} bytes, {want['bytes']} when committed (truncated?): {fix}"
    if file_sha256(file) != want["sha256"]:
        return f"{file} changed since it was committed (sha256 differs): {fix}"
    return ""


def committed_records(file: Path, manifest: dict[str, Any] | None) -> list[LatentRecord]:
    """The records of a committed record file; [] when it is not the file its manifest
    committed (gone, or size/sha256 differ) or the manifest holds no digest."""
    from interp.records import read_records

    digest = (manifest or {}).get("records") or {}
    try:
        data = file.read_bytes()
    except OSError:
        return []
    if hashlib.sha256(data).hexdigest() != digest.get("sha256"):
        return []
    return list(read_records(file))


def _parse_problem(file: Path, task: Task, fix: str) -> str:
    from interp.report.table import RecordFileError, read_record_file

    try:
        read_record_file(file, task.start, task.stop)
    except RecordFileError as e:
        return f"{str(e).split('; delete')[0]}: {fix}"
    return ""


def rerun_command(paths: RunPaths) -> str:
    return (
        f"python launch/rerun.py {paths.root} (SLURM), or the same sweep command "
        "(committed tasks are skipped)"
    )


# ---------------------------------------------------------------------------- store


def repair_hint(paths: RunPaths, group: Path) -> str:
    """What to delete and rerun for a damaged store group of this point."""
    owner = paths.store_group_task(group)
    if owner is None:
        return f"delete {paths.store_dir()} and rerun collect and compact: {rerun_command(paths)}"
    stage, index = owner
    return (
        f"delete {group} and {paths.manifest_file(stage, index)}, then rerun {stage} task "
        f"{index}: {rerun_command(paths)}"
    )


def store_error(paths: RunPaths, err: Any) -> ValueError:
    """A :class:`~interp.store.StoreCorruptError` with this point's exact fix."""
    from interp.store import StoreCorruptError

    return StoreCorruptError(err.group, err.problem, fix=repair_hint(paths, err.group))


def read_checked_latents(
    paths: RunPaths, a: int, b: int, runs: Sequence[tuple[int, int]] | None = None
) -> tuple[Any, Any, Any, list[str]]:
    """Read what latents ``[a, b)`` (or the contiguous ``runs`` of a selection) need, once,
    decoded and checked: ``(reader, csr, token ids, groups read without checksums)``; raise
    naming the file and the fix on damage."""
    from interp.store import StoreCorruptError
    from interp.store.verify import read_latents

    reader, csr, token_ids, report = read_latents(paths.store_dir(), a, b, runs)
    if not report.ok:
        fixes = "; ".join(repair_hint(paths, g) for g in report.damaged)
        raise StoreCorruptError(
            report.damaged[0] if report.damaged else paths.store_dir(),
            f"latents [{a}, {b}) of {paths.store_dir()} cannot be read intact: "
            + "; ".join(report.corrupt),
            fix=fixes or None,
        )
    return reader, csr, token_ids, report.unchecked


# ---------------------------------------------------------------------------- sweep


def verify_sweep(root: Path) -> SweepReport:
    """Decode every store of every point and check every committed record file."""
    from interp.models import hookpoint_width

    cfgs = read_points(root)
    report = SweepReport()
    if not cfgs:
        report.problems.append(f"{root}: no sweep points under {root}/points: not a sweep folder")
    stores: set[Path] = set()
    for cfg in cfgs:
        paths = RunPaths(root, cfg)
        jobs = {j.stage: j for j in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint))}
        if paths.store_dir() not in stores:
            stores.add(paths.store_dir())
            _verify_store(report, paths, cfg, jobs)
        tasks = jobs["interpret"].tasks
        done = [t for t in tasks if paths.manifest_file("interpret", t.index).is_file()]
        bad = [p for t in done if (p := check_records(paths, t))]
        report.problems += bad
        report.checked.append(
            f"point {paths.ids.point}: {len(done) - len(bad)} of {len(done)} committed record "
            f"files OK ({len(tasks) - len(done)} of {len(tasks)} interpret tasks not committed)"
        )
    from interp.report.gather_state import stale_lines

    report.notes += [line.strip() for line in stale_lines(root)]  # outputs, not committed work
    return report


def _verify_store(
    report: SweepReport, paths: RunPaths, cfg: RunConfig, jobs: dict[str, StageJob]
) -> None:
    from interp.store import verify

    store = paths.store_dir()
    ranges = jobs["compact"].tasks
    result = verify(
        store,
        n_tokens=cfg.collect.num_tokens,
        n_latents=ranges[-1].stop,
        slice_tasks=jobs["collect"].tasks,
        range_tasks=ranges,
    )
    report.checked.append(f"{store}: {result.summary.splitlines()[0]}")
    if result.missing_slices or result.missing_ranges:
        report.notes.append(
            f"{store}: collect tasks {result.missing_slices} / compact tasks "
            f"{result.missing_ranges} not committed yet: {rerun_command(paths)}"
        )
    damaged = {str(g) for g in result.damaged}
    report.problems += [f"{store}: {c}" for c in result.corrupt]
    report.problems += [f"  fix: {repair_hint(paths, Path(g))}" for g in sorted(damaged)]
    if result.unchecked:
        report.notes.append(f"{store}: {result.unchecked_note}")
