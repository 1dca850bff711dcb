"""Is the sweep committed? One line per point and stage with uncommitted array tasks,
what to do about them, and the fingerprint that says a gather is current.

Reads only the run folder: every point's resolved config (``points/*/config.json``), the
stage manifests and, with ``records``, the interpret record files against their manifests.
"""

from __future__ import annotations

import json
from pathlib import Path

from interp.config import RunConfig
from interp.models import hookpoint_width
from interp.plan import pending, plan_point
from interp.runs import (
    RunPaths,
    cluster_config_file,
    points_dir,
    read_manifest,
    read_points,
    short_hash,
)
from interp.verify import check_records


class IncompleteSweepError(RuntimeError):
    """Some array tasks of the sweep are not committed."""


def load_points(root: Path) -> list[RunConfig]:
    """Every point recorded in sweep folder ``root`` (raises when there is none)."""
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
