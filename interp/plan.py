"""Pure planning: resolved configs -> the graph of stage jobs and their array tasks.

No side effects and no I/O: the same configs always give the same plan. The local
executor and the SLURM executor run exactly this graph; which tasks are already
committed is the executor's question (:func:`pending`), not the plan's.

Array tasks are half-open intervals: token slices ``[start, stop)`` for collect,
latent ranges ``[start, stop)`` for compact and interpret.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from interp.config import RunConfig
from interp.runs import RunIds, RunPaths, is_committed

Stage = Literal["train", "collect", "compact", "interpret", "gather"]


@dataclass(frozen=True)
class Task:
    """One array task: index within its job, and the interval it owns."""

    index: int
    start: int
    stop: int


@dataclass(frozen=True)
class StageJob:
    """One stage of one sweep point (or the sweep's gather), with its array tasks."""

    key: str  # unique within a plan, e.g. "collect-3f9a2c1b7e"
    stage: Stage
    run_id: str
    tasks: tuple[Task, ...]
    depends_on: tuple[str, ...]  # keys of jobs that must all succeed first
    point: str  # point id whose config drives it ("" for gather)


@dataclass(frozen=True)
class Plan:
    """Jobs in a topological order (every dependency comes before its dependents)."""

    jobs: tuple[StageJob, ...]

    def job(self, key: str) -> StageJob:
        for j in self.jobs:
            if j.key == key:
                return j
        raise KeyError(key)

    @property
    def num_tasks(self) -> int:
        return sum(len(j.tasks) for j in self.jobs)


def num_latents(cfg: RunConfig, d_in: int) -> int:
    return cfg.sae.num_latents or d_in * cfg.sae.expansion_factor


def intervals(total: int, size: int) -> tuple[Task, ...]:
    """Tile ``[0, total)`` with consecutive intervals of ``size`` (the last may be short)."""
    return tuple(
        Task(i, start, min(start + size, total)) for i, start in enumerate(range(0, total, size))
    )


def plan_point(cfg: RunConfig, d_in: int) -> list[StageJob]:
    """train -> collect (token slices) -> compact (latent ranges) -> interpret (ranges)."""
    ids = RunIds.of(cfg)
    width = num_latents(cfg, d_in)
    n_interp = min(cfg.interpret.num_latents or width, width)
    train = StageJob(f"train-{ids.train}", "train", ids.train, (Task(0, 0, 1),), (), ids.point)
    collect = StageJob(
        f"collect-{ids.collect}",
        "collect",
        ids.collect,
        intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens),
        (train.key,),
        ids.point,
    )
    compact = StageJob(
        f"compact-{ids.collect}",
        "compact",
        ids.collect,
        intervals(width, cfg.collect.range_latents),
        (collect.key,),
        ids.point,
    )
    interpret = StageJob(
        f"interpret-{ids.interpret}",
        "interpret",
        ids.interpret,
        intervals(n_interp, cfg.interpret.range_latents),
        (compact.key,),
        ids.point,
    )
    return [train, collect, compact, interpret]


def plan_sweep(points: list[tuple[RunConfig, int]]) -> Plan:
    """Plan every point (deduplicating shared stages), then one gather over all points."""
    jobs: dict[str, StageJob] = {}
    for cfg, d_in in points:
        for job in plan_point(cfg, d_in):
            jobs.setdefault(job.key, job)
    finals = tuple(k for k, j in jobs.items() if j.stage == "interpret")
    point_ids = sorted({j.point for j in jobs.values()})
    gather_id = "-".join(point_ids)[:64]
    gather = StageJob("gather", "gather", gather_id, (Task(0, 0, 1),), finals, "")
    return Plan(tuple(jobs.values()) + (gather,))


def pending(job: StageJob, paths: RunPaths | None) -> list[Task]:
    """Tasks of ``job`` not yet committed (the gather job is always redone)."""
    if job.stage == "gather":
        return list(job.tasks)
    assert paths is not None
    return [t for t in job.tasks if not is_committed(paths.manifest_file(job.stage, t.index))]
