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
from typing import Any, Literal

from interp.config import RunConfig, id_dict, load_run_config, to_dict
from interp.runs import RunIds, RunPaths, is_committed, short_hash
from interp.train.group import train_group_key

Stage = Literal["serve", "train", "collect", "compact", "interpret", "gather"]


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
    point: str  # point id whose config drives it ("" for gather; the first member of a group)
    members: tuple[str, ...] = ()
    """Point ids served by one LM forward (a train or collect group job); () otherwise."""
    starts_after: tuple[str, ...] = ()
    """Keys of jobs that must have started (SLURM ``after:``): the LLM servers."""


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
    serve = serve_job(cfg, compact.key)
    interpret = StageJob(
        f"interpret-{ids.interpret}",
        "interpret",
        ids.interpret,
        intervals(n_interp, cfg.interpret.range_latents),
        (compact.key,),
        ids.point,
        starts_after=(serve.key,) if serve else (),
    )
    return [j for j in (train, collect, compact, serve, interpret) if j is not None]


def serve_job(cfg: RunConfig, after: str) -> StageJob | None:
    """The LLM server replicas of a point (``serve.enabled``), shared by every point that
    talks to the same served model (same :func:`interp.llm.replicas.serve_id`). They start
    once ``after`` (the point's compact job) succeeded, so no GPU idles during training."""
    if not cfg.serve.enabled:
        return None
    if cfg.llm.backend != "http":
        raise ValueError(
            f"serve.enabled=true needs llm.backend=http (got {cfg.llm.backend!r}): the "
            "interpret tasks talk to the served replicas over HTTP; set llm=http or "
            "llm=llama_server, or serve=in_task for an in-task LLM"
        )
    from interp.llm.replicas import serve_id

    sid = serve_id(cfg)
    tasks = intervals(cfg.serve.replicas, 1)
    return StageJob(f"serve-{sid}", "serve", sid, tasks, (after,), RunIds.of(cfg).point)


def collect_group_key(cfg: RunConfig) -> str:
    """Points with equal keys can collect from one LM forward per slice: the same model,
    data and token slices; their dictionaries (and hookpoints) may differ."""
    c = cfg.collect
    slices = {"num_tokens": c.num_tokens, "slice_tokens": c.slice_tokens, "lm": c.lm_batch_size}
    return short_hash({"data": RunIds.of(cfg).data, "model": id_dict(cfg.model), "slices": slices})


GROUP_KEYS: dict[str, Callable[[RunConfig], str]] = {
    "train": train_group_key,
    "collect": collect_group_key,
}
"""Stages whose jobs merge across points that can share an LM forward."""


def plan_sweep(points: list[tuple[RunConfig, int]], *, group: bool = True) -> Plan:
    """Plan every point (deduplicating shared stages), then one gather over all points.

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
        for stage in GROUP_KEYS:
            jobs = _group_jobs(jobs, cfgs, stage)
    finals = tuple(k for k, j in jobs.items() if j.stage == "interpret")
    point_ids = sorted({j.point for j in jobs.values()})
    gather_id = "-".join(point_ids)[:64]
    gather = StageJob("gather", "gather", gather_id, (Task(0, 0, 1),), finals, "")
    return Plan(tuple(jobs.values()) + (gather,))


def _group_jobs(
    jobs: dict[str, StageJob], cfgs: Mapping[str, RunConfig], stage: str
) -> dict[str, StageJob]:
    """Merge ``stage``'s jobs by :data:`GROUP_KEYS`; redirect dependants to the group.

    A group job has the members' tasks (identical intervals), waits on everything any
    member waited on, and task i is done when every member committed task i.
    """
    groups: dict[str, list[StageJob]] = {}
    for job in jobs.values():
        if job.stage == stage:
            groups.setdefault(GROUP_KEYS[stage](cfgs[job.point]), []).append(job)
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
    """Tasks of ``job`` not yet committed (the gather job is always redone; a serve job
    commits nothing: whether a server is needed is the executor's call).

    A group's task is pending while any member has not committed it; ``members`` are
    the members' paths (see :func:`job_pending`).
    """
    if job.stage == "gather":
        return list(job.tasks)
    if job.stage == "serve":
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
    members' configs (``{"members": [...]}``) for a group, ``None`` for gather."""
    if job.members:
        return {"members": [to_dict(cfgs[p]) for p in job.members]}
    cfg = cfgs.get(job.point)
    return to_dict(cfg) if cfg else None


def task_committed(stage: str, payload: dict[str, Any] | None, root: Path, task: Task) -> bool:
    """Whether the task a worker got (:func:`job_payload`) has committed its work.

    The gather commits no manifest (it is redone whole), so it counts as committed.
    """
    if stage in ("gather", "serve"):
        return True
    assert payload is not None
    if "members" in payload:
        cfgs = [load_run_config(d) for d in payload["members"]]
        return all(is_committed(RunPaths(root, c).manifest_file(stage, task.index)) for c in cfgs)
    return is_committed(RunPaths(root, load_run_config(payload)).manifest_file(stage, task.index))
