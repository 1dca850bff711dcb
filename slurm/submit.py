"""From resolved configs to running (or submitted) jobs: plan, record, execute."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from interp.config import RunConfig, to_dict
from interp.models import hidden_size
from interp.plan import Plan, plan_sweep
from interp.runs import RunIds, RunPaths, atomic_write_json, points_dir

log = logging.getLogger("interp.submit")

EXECUTORS = ("local", "inprocess")


def check_cluster(cluster: dict[str, Any]) -> None:
    executor = cluster.get("executor")
    if executor not in EXECUTORS:
        raise ValueError(
            f"cluster.executor={executor!r} is not one of {list(EXECUTORS)} "
            "(SLURM submission arrives with the cluster issue)"
        )


def record_point(cfg: RunConfig) -> Path:
    """Save the resolved config in the sweep folder; gather finds points here."""
    root = RunPaths.sweep_root(cfg)
    paths = RunPaths(root, cfg)
    atomic_write_json(paths.point_config(), to_dict(cfg))
    return root


def plan_points(cfgs: list[RunConfig], *, gather: bool) -> Plan:
    plan = plan_sweep([(cfg, hidden_size(cfg.model.name)) for cfg in cfgs])
    if not gather:
        plan = Plan(tuple(j for j in plan.jobs if j.stage != "gather"))
    return plan


def run_points(cfgs: list[RunConfig], cluster: dict[str, Any], *, gather: bool) -> Path:
    """Plan and execute the points' DAGs (and the gather job) on this machine."""
    from slurm.local import run_plan

    check_cluster(cluster)
    roots = {record_point(cfg) for cfg in cfgs}
    assert len(roots) == 1, f"points of one sweep must share out_dir/name, got {roots}"
    root = roots.pop()
    plan = plan_points(cfgs, gather=gather)
    log.info("sweep %s: %d job(s), %d task(s)", root, len(plan.jobs), plan.num_tasks)
    run_plan(plan, {RunIds.of(c).point: c for c in cfgs}, root, cluster)
    return root


def run_gather(root: Path, cluster: dict[str, Any]) -> None:
    from slurm.local import run_plan

    plan = Plan(tuple(j for j in plan_sweep([]).jobs if j.stage == "gather"))
    run_plan(plan, {}, root, cluster)


def point_count(root: Path) -> int:
    return len(list(points_dir(root).glob("*/config.json")))
