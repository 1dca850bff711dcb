"""From resolved configs to running (or submitted) jobs: plan, record, execute."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from interp.config import RunConfig, to_dict
from interp.models import hookpoint_width
from interp.plan import Plan, plan_sweep
from interp.runs import (
    RunIds,
    RunPaths,
    atomic_write_json,
    cluster_config_file,
    points_dir,
    read_manifest,
    read_points,
    reopen_task,
)
from interp.stages.registry import stages

log = logging.getLogger("interp.submit")

EXECUTORS = ("local", "inprocess", "slurm")


def check_cluster(cluster: dict[str, Any]) -> None:
    """Refuse a bad cluster profile before anything runs or is submitted."""
    executor = cluster.get("executor")
    if executor not in EXECUTORS:
        raise ValueError(
            f"cluster.executor={executor!r} is not one of {list(EXECUTORS)}: "
            "pick a profile of conf/cluster/ with cluster=<name>"
        )
    if executor == "slurm":
        from slurm.slurm_executor import load_cluster

        load_cluster(cluster)
    else:
        from slurm.local import check_local_cluster

        check_local_cluster(cluster)


def check_serving(cfgs: list[RunConfig], cluster: dict[str, Any]) -> None:
    """Refuse a stage that cannot run under this executor (a served LLM's replicas are
    SLURM jobs) before anything runs; the stage's spec says why."""
    executor = str(cluster.get("executor"))
    for cfg in cfgs:
        for spec in stages():
            why = spec.refuse_executor(cfg, executor) if spec.refuse_executor else None
            if why:
                raise ValueError(why)


def task_gpus(cluster: dict[str, Any]) -> int | None:
    """GPUs a task that loads the subject model sees: this machine's under the local
    executors, the fewest the profile gives those stages under SLURM (None when a gres
    says it in a form not read here)."""
    if cluster.get("executor") != "slurm":
        import torch

        return torch.cuda.device_count()
    from slurm.resources import stage_gpus
    from slurm.slurm_executor import load_cluster

    profile = load_cluster(cluster).stages
    counts = [stage_gpus(profile[s.name]) for s in stages() if s.loads_subject]
    return None if None in counts else min(c for c in counts if c is not None)


def record_point(cfg: RunConfig, overrides: dict[str, Any] | None = None) -> Path:
    """Save the resolved config in the sweep folder (gather finds points here) and, for
    a multirun point, the Hydra overrides that made it (compare lines points up by them)."""
    root = RunPaths.sweep_root(cfg)
    paths = RunPaths(root, cfg)
    atomic_write_json(paths.point_config(), to_dict(cfg))
    if overrides is not None:
        atomic_write_json(paths.point_overrides(), overrides)
    return root


class PointCollisionError(ValueError):
    """Two points of one sweep would write the same run folders."""


def check_collisions(cfgs: list[RunConfig], labels: list[str] | None = None) -> None:
    """Refuse a sweep two of whose points share a run id, before anything is recorded.

    Equal ids with different configs mean the points differ only in fields that do not
    enter the run id (``id=False``: kernels, cache, logging...), so they would overwrite
    each other's results; equal configs mean a value is listed twice.
    """
    labels = labels or [f"point {i}" for i in range(len(cfgs))]
    seen: dict[str, int] = {}
    problems = []
    for i, cfg in enumerate(cfgs):
        pid = RunIds.of(cfg).point
        if pid not in seen:
            seen[pid] = i
            continue
        j = seen[pid]
        diff = _differing_fields(to_dict(cfgs[j]), to_dict(cfg))
        if diff:
            problems.append(
                f"{labels[j]} and {labels[i]} resolve to the same run id {pid}: they differ only "
                f"in {', '.join(diff)}, which do not change what is computed (not part of the "
                "run id). Sweep over one value of those, or use a separate name=... per value"
            )
        else:
            problems.append(
                f"{labels[j]} and {labels[i]} are the same point (run id {pid}): "
                "remove the repeated value from the sweep"
            )
    if problems:
        raise PointCollisionError("sweep points collide:\n  " + "\n  ".join(problems))


def _differing_fields(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _differing_fields(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(f"{prefix}{key} ({va!r} vs {vb!r})")
    return out


def plan_points(cfgs: list[RunConfig], *, gather: bool) -> Plan:
    plan = plan_sweep([(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)) for cfg in cfgs])
    if not gather:
        plan = Plan(tuple(j for j in plan.jobs if not j.spec.sweep))
    return plan


def run_points(
    cfgs: list[RunConfig],
    cluster: dict[str, Any],
    *,
    gather: bool,
    overrides: list[dict[str, Any]] | None = None,
) -> Path:
    """Check, then plan and execute the points' DAGs (and the gather job) on this machine,
    or submit them. ``overrides[i]`` (multiruns) is recorded beside point i's config.

    Pretrained points are resolved first (:func:`interp.pretrained_point.resolve_points`:
    their run ids come from the checkpoint's content). Nothing is recorded before every
    check passed (the cluster profile, serving, colliding points,
    :func:`interp.preflight.preflight`), and all of it happens while this process
    holds the sweep folder (:func:`interp.sweep_lock.hold_sweep`): a second command on the
    same folder is refused."""
    from interp.preflight import PreflightError, preflight
    from interp.pretrained_point import drop_repeats, resolve_points
    from interp.sweep_lock import hold_sweep

    check_cluster(cluster)
    check_serving(cfgs, cluster)
    cfgs, overrides = drop_repeats(cfgs, overrides)  # trained points ignore sae.path
    cfgs, unreadable = resolve_points(cfgs)  # pretrained sources: content hash, width
    if unreadable:
        raise PreflightError(
            f"{len(unreadable)} problem(s) found before anything was recorded or submitted:\n  "
            + "\n  ".join(unreadable)
        )
    labels = None
    if overrides is not None:
        labels = [" ".join(o.get("overrides", [])) or f"point {i}" for i, o in enumerate(overrides)]
    check_collisions(cfgs, labels)
    roots = {RunPaths.sweep_root(cfg) for cfg in cfgs}
    assert len(roots) == 1, f"points of one sweep must share out_dir/name, got {roots}"
    root = roots.pop()
    gpus = task_gpus(cluster) if any(c.model.max_memory for c in cfgs) else None
    preflight(cfgs, task_gpus=gpus)
    with hold_sweep(root):
        for cfg, over in zip(cfgs, overrides or [None] * len(cfgs)):
            record_point(cfg, over)
        plan = plan_points(cfgs, gather=gather)
        log.info("sweep %s: %d job(s), %d task(s)", root, len(plan.jobs), plan.num_tasks)
        by_point = {RunIds.of(c).point: c for c in cfgs}
        if cluster["executor"] == "slurm":
            from slurm.slurm_executor import submit_plan

            submit_plan(plan, by_point, root, cluster)
        else:
            from slurm.local import run_plan

            run_plan(plan, by_point, root, cluster)
    return root


def run_and_report(
    cfgs: list[RunConfig],
    cluster: dict[str, Any],
    overrides: list[dict[str, Any]] | None = None,
) -> Path:
    """The sweep command's body: run or submit every point and the gather, then say where
    the results are; a refusal by SLURM, colliding points, a failed preflight or a busy
    sweep folder exit with the message (nothing recorded or half-submitted)."""
    from interp.preflight import PreflightError
    from interp.sweep_lock import SweepBusyError
    from slurm.status import SlurmError

    try:
        root = run_points(cfgs, cluster, gather=True, overrides=overrides)
    except SlurmError as err:
        sys.exit(f"not submitted: {err}")
    except (PointCollisionError, PreflightError, SweepBusyError) as err:
        sys.exit(f"nothing run or submitted: {err}")
    if cluster["executor"] == "slurm":
        print(f"\nsweep folder: {root}\n  submitted; progress: python launch/status.py {root}")
    else:
        from interp.report.brief import brief_from_folder

        print(f"\nsweep folder: {root}\n" + "\n".join(brief_from_folder(root)), flush=True)
    return root


def load_sweep(root: Path) -> tuple[Plan, dict[str, RunConfig]]:
    """The plan of every point recorded in sweep folder ``root`` (with gather)."""
    cfgs = read_points(root)
    if not cfgs:
        raise ValueError(f"no sweep points under {points_dir(root)}: is {root} a sweep folder?")
    return plan_points(cfgs, gather=True), {RunIds.of(c).point: c for c in cfgs}


def reopen_errors(root: Path) -> list[tuple[str, int]]:
    """Un-commit every committed interpret range of sweep ``root`` whose records include a
    latent with status ``error`` (a scorer or explainer crash, a latent over
    ``interpret.latent_timeout_s``, or an LLM outage that older versions recorded), so the
    next run or rerun redoes it; its response cache makes the redo pay only for what
    failed. ``explain_failed`` latents are not reopened: greedy replies come back from the
    cache unchanged. Returns (point, range index) of each reopened range."""
    plan, cfgs = load_sweep(root)
    reopened = []
    for job in plan.jobs:
        if not job.spec.retry_errors or job.point not in cfgs:
            continue
        paths = RunPaths(root, cfgs[job.point])
        for task in job.tasks:
            manifest = paths.manifest_file(job.stage, task.index)
            counts = (read_manifest(manifest) or {}).get("status_counts") or {}
            if counts.get("error"):
                reopen_task(manifest)
                reopened.append((job.point, task.index))
    what = ", ".join(f"{s.name} {s.task_name}(s)" for s in stages() if s.retry_errors)
    log.info("reopened %d %s with error records: %s", len(reopened), what, reopened)
    return reopened


def resubmit(
    root: Path, cluster: dict[str, Any] | None = None, *, stages: set[str] | None = None
) -> list[Any]:
    """Submit to SLURM what is neither committed nor queued for every point of ``root``.

    The cluster profile defaults to the one the sweep was last submitted with. Every
    recorded point is preflighted again (its model, data, API key must still be there);
    a failing one is named with how to drop it. Holds the sweep folder while submitting.
    """
    from interp.sweep_lock import hold_sweep
    from slurm.slurm_executor import submit_plan

    if cluster is None:
        cluster = json.loads(cluster_config_file(root).read_text())
    check_cluster(cluster)
    with hold_sweep(root):
        plan, cfgs = load_sweep(root)
        check_recorded_points(root, list(cfgs.values()))
        return submit_plan(plan, cfgs, root, cluster, stages=stages)


def check_recorded_points(root: Path, cfgs: list[RunConfig]) -> None:
    """Preflight the points recorded in ``root``; a failing one is named with its folder."""
    from interp.preflight import Models, PreflightError, point_problems

    models, lines = Models(), []
    for cfg in cfgs:
        problems = point_problems(cfg, os.environ, models)
        if problems:
            folder = RunPaths(root, cfg).point_dir()
            lines += [f"point {folder.name}: {p}" for p in problems]
            lines.append(f"  to drop point {folder.name} from the sweep instead: rm -r {folder}")
    if lines:
        raise PreflightError("recorded points fail their checks:\n  " + "\n  ".join(lines))
