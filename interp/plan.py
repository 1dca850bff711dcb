"""Pure planning: resolved configs -> the graph of stage jobs and their array tasks.

No side effects and no I/O: the same configs always give the same plan. The local
executor and the SLURM executor run exactly this graph; which tasks are already
committed is the executor's question (:func:`pending`), not the plan's.

Array tasks are half-open intervals: token slices ``[start, stop)`` for collect,
latent ranges ``[start, stop)`` for compact and interpret; replica ``i`` is ``[i, i+1)``
for serve (``serve.enabled``: LLM server jobs the interpret array talks to; the interpret
job waits for them to *start*, ``starts_after``, not to succeed).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.config import RunConfig, load_run_config, to_dict
from interp.groups import collect_group_key
from interp.runs import RunIds, RunPaths, is_committed, short_hash
from interp.stages.registry import StageSpec, Task, intervals, num_latents, stages
from interp.stages.registry import stage as spec_of

__all__ = [
    "Plan", "Stage", "StageJob", "Task", "collect_group_key", "intervals",
    "job_payload", "job_pending", "num_latents", "pending", "plan_point", "plan_sweep",
    "task_committed",
]  # fmt: skip

Stage = str
"""A stage name: one of :func:`interp.stages.registry.stages`."""


@dataclass(frozen=True)
class StageJob:
    """One stage of one sweep point (or a sweep-level stage), with its array tasks."""

    key: str  # unique within a plan, e.g. "collect-3f9a2c1b7e"
    stage: Stage
    run_id: str
    tasks: tuple[Task, ...]
    depends_on: tuple[str, ...]  # keys of jobs that must all succeed first
    point: str  # point id whose config drives it ("" for gather; the first member of a group)
    members: tuple[str, ...] = ()
    """Point ids served by one LM forward (a train or collect group job); () otherwise."""
    starts_after: tuple[str, ...] = ()
    """Keys of jobs that must have started (SLURM ``after:``): the services it uses."""

    @property
    def spec(self) -> StageSpec:
        return spec_of(self.stage)


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


def plan_point(cfg: RunConfig, d_in: int) -> list[StageJob]:
    """One job per enabled point-level stage, in registry order: train -> collect (token
    slices) -> compact (latent ranges) -> [serve replicas] -> interpret (ranges)."""
    ids = RunIds.of(cfg)
    keys: dict[str, str] = {}  # stage name -> its job's key
    jobs = []
    for spec in stages():
        if spec.sweep or not spec.enabled(cfg):
            continue
        run_id = spec.service_id(cfg) if spec.service_id else ids.get(spec.run_id)
        key = f"{spec.name}-{run_id}"
        deps = tuple(keys[a] for a in spec.after if a in keys)
        starts = tuple(keys[u] for u in spec.uses if u in keys)
        tasks = spec.split(cfg, d_in)
        jobs.append(StageJob(key, spec.name, run_id, tasks, deps, ids.point, starts_after=starts))
        keys[spec.name] = key
    return jobs


def plan_sweep(points: list[tuple[RunConfig, int]], *, group: bool = True) -> Plan:
    """Plan every point (deduplicating shared stages), then the sweep-level stages (one
    gather over all points).

    With ``group``, the train jobs of points that share a ``train_group_key`` (and
    differ in what they train) become one train-group job - one task, one LM forward
    feeding every member's dictionary - and likewise their collect jobs (one forward per
    token slice encodes every member's dictionary). Downstream jobs wait on the group.
    """
    jobs: dict[str, StageJob] = {}
    for cfg, d_in in points:
        for job in plan_point(cfg, d_in):
            jobs.setdefault(job.key, job)
    if group:
        cfgs = {RunIds.of(cfg).point: cfg for cfg, _ in points}
        for spec in stages():
            if spec.group_key is not None:
                jobs = _group_jobs(jobs, cfgs, spec.name, spec.group_key)
    point_ids = sorted({j.point for j in jobs.values()})
    sweep_jobs = []
    for spec in (s for s in stages() if s.sweep):
        finals = tuple(k for k, j in jobs.items() if j.stage in spec.after)
        run_id = "-".join(point_ids)[:64]
        tasks = spec.split(points[0][0], 0) if points else (Task(0, 0, 1),)
        sweep_jobs.append(StageJob(spec.name, spec.name, run_id, tasks, finals, ""))
    return Plan(tuple(jobs.values()) + tuple(sweep_jobs))


def _group_jobs(
    jobs: dict[str, StageJob],
    cfgs: Mapping[str, RunConfig],
    stage: str,
    key_of: Callable[[RunConfig], str],
) -> dict[str, StageJob]:
    """Merge ``stage``'s jobs by their points' ``key_of``; redirect dependants to the group.

    A group job has the members' tasks (identical intervals), waits on everything any
    member waited on, and task i is done when every member committed task i.
    """
    groups: dict[str, list[StageJob]] = {}
    for job in jobs.values():
        if job.stage == stage:
            groups.setdefault(key_of(cfgs[job.point]), []).append(job)
    renamed: dict[str, str] = {}
    merged: dict[str, StageJob] = {}
    for gkey, members in groups.items():
        if len(members) < 2:
            continue
        members.sort(key=lambda j: j.run_id)
        gid = short_hash({"key": gkey, "members": [j.run_id for j in members]})
        key = f"{stage}-group-{gid}"
        deps = tuple(dict.fromkeys(d for j in members for d in j.depends_on))
        points = tuple(j.point for j in members)
        merged[key] = StageJob(
            key, members[0].stage, gid, members[0].tasks, deps, points[0], points
        )
        renamed.update({j.key: key for j in members})
    if not merged:
        return jobs
    out: dict[str, StageJob] = {}
    for key, job in jobs.items():
        if key in renamed:
            out.setdefault(renamed[key], merged[renamed[key]])
            continue
        deps = tuple(dict.fromkeys(renamed.get(d, d) for d in job.depends_on))
        out[key] = job if deps == job.depends_on else _with_deps(job, deps)
    return _topological(out)


def _topological(jobs: dict[str, StageJob]) -> dict[str, StageJob]:
    """Reorder so every job follows its dependencies, otherwise keeping the given order."""
    done: dict[str, StageJob] = {}

    def visit(key: str) -> None:
        if key not in done:
            for dep in (*jobs[key].depends_on, *jobs[key].starts_after):
                visit(dep)
            done[key] = jobs[key]

    for key in jobs:
        visit(key)
    return done


def _with_deps(job: StageJob, deps: tuple[str, ...]) -> StageJob:
    return StageJob(
        job.key, job.stage, job.run_id, job.tasks, deps, job.point, job.members, job.starts_after
    )


def pending(
    job: StageJob, paths: RunPaths | None, members: list[RunPaths] | None = None
) -> list[Task]:
    """Tasks of ``job`` not yet committed (a ``redo`` stage such as gather is always
    redone; a service commits nothing: whether it is needed is the executor's call).

    A group's task is pending while any member has not committed it; ``members`` are
    the members' paths (see :func:`job_pending`).
    """
    if job.spec.redo:
        return list(job.tasks)
    if job.spec.service:
        return []
    if job.members:
        assert members is not None, f"{job.key} is a group: pass its members' paths"
        return [
            t
            for t in job.tasks
            if not all(is_committed(m.manifest_file(job.stage, t.index)) for m in members)
        ]
    assert paths is not None
    return [t for t in job.tasks if not is_committed(paths.manifest_file(job.stage, t.index))]


def job_pending(job: StageJob, root: Path, cfgs: Mapping[str, RunConfig]) -> list[Task]:
    """:func:`pending` for a job of a sweep whose point configs are ``cfgs``."""
    cfg = cfgs.get(job.point)
    members = [RunPaths(root, cfgs[p]) for p in job.members]
    return pending(job, RunPaths(root, cfg) if cfg else None, members)


def job_payload(job: StageJob, cfgs: Mapping[str, RunConfig]) -> dict[str, Any] | None:
    """What the worker gets for ``job``: the point's config as a plain dict, the
    members' configs (``{"members": [...]}``) for a group, ``None`` for a sweep-level job."""
    if job.members:
        return {"members": [to_dict(cfgs[p]) for p in job.members]}
    cfg = cfgs.get(job.point)
    return to_dict(cfg) if cfg else None


def task_committed(stage: str, payload: dict[str, Any] | None, root: Path, task: Task) -> bool:
    """Whether the task a worker got (:func:`job_payload`) has committed its work.

    A ``redo`` stage (gather) or a service commits no manifest, so it counts as committed.
    """
    spec = spec_of(stage)
    if spec.redo or spec.service:
        return True
    assert payload is not None
    if "members" in payload:
        cfgs = [load_run_config(d) for d in payload["members"]]
        return all(is_committed(RunPaths(root, c).manifest_file(stage, task.index)) for c in cfgs)
    return is_committed(RunPaths(root, load_run_config(payload)).manifest_file(stage, task.index))
