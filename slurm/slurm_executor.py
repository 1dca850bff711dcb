"""Submit a plan to SLURM through submitit: one job array per stage job, ``afterok`` between.

:func:`submit_plan` returns as soon as sbatch has accepted everything; it never waits on a
job. It is also how a sweep resumes: a committed task is skipped, a task still queued or
running under a job id recorded in the run folder is left alone (its dependants wait on
it), and only the rest is submitted. Submitting the same sweep twice submits nothing the
second time, and ``launch/rerun.py`` is the same call on the points recorded in the folder.

Array index ``i`` of a submission runs the ``i``-th task handed to it (recorded in a
:class:`slurm.status.Submission`), so indices stay below ``MaxArraySize`` and a stage with
more tasks than that becomes several arrays.

Preemption and time limits: SLURM sends USR2 ``signal_delay_s`` before the limit. The
worker turns it into ``should_stop()``, the stage returns uncommitted at a safe point, and
:class:`StageCall` hands over to submitit, which pickles the call and requeues the job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.plan import Plan, StageJob, Task, job_payload, job_pending
from interp.runs import atomic_write_json, cluster_config_file, job_log_dir
from interp.stages.registry import call
from slurm.decide import Decision, decide, decide_service, dependency, dependency_ids
from slurm.job import JobsAliveCheck, StageCall, TaskStopped, load_worker, signals_seen
from slurm.resources import SlurmCluster, StageResources, load_cluster
from slurm.sbatch import (
    ResourcesRejected,
    abbrev,
    build_executor,
    cancel,
    check_resources,
    chunk_parallelism,
    max_array_size,
    split_tasks,
)
from slurm.services import service_needed, service_payload, service_resources
from slurm.status import Attempt, Submission, attempts, read_queue

__all__ = [
    "Decision", "JobsAliveCheck", "ResourcesRejected", "SlurmCluster", "StageCall",
    "StageResources", "TaskStopped", "chunk_parallelism", "decide", "decide_service",
    "dependency", "dependency_ids", "load_cluster", "load_worker", "signals_seen",
    "split_tasks", "submit_plan", "submit_tasks",
]  # fmt: skip

log = logging.getLogger("interp.slurm")


def submit_tasks(
    root: Path,
    job: StageJob,
    todo: list[Task],
    cfg_dict: dict[str, Any] | None,
    cluster: SlurmCluster,
    after: list[str],
    max_array: int,
    started: Sequence[str] = (),
    res: StageResources | None = None,
) -> list[Submission]:
    """sbatch ``todo`` as one array (several if over ``max_array``), each after ``after``
    succeeded and ``started`` started."""
    res = res or cluster.stages[job.stage]
    executor = build_executor(job_log_dir(root, job.key), res, cluster, cluster.job_name(job))
    chunks = split_tasks(todo, max_array)
    dep = dependency(after, started)
    subs = []
    for chunk in chunks:
        n = len(chunk)
        executor.update_parameters(
            dependency=dep, array_parallelism=chunk_parallelism(res.array_parallelism, len(chunks))
        )
        jobs = executor.map_array(
            StageCall(cluster.worker), [job.stage] * n, [cfg_dict] * n, [str(root)] * n, chunk
        )
        job_id = jobs[0].job_id.split("_")[0]
        tasks = tuple(t.index for t in chunk)
        sub = Submission(job.key, job.stage, job_id, tasks, n > 1, dep or "", time.time())
        sub.save(root)
        subs.append(sub)
        log.info("%s: job %s, %d task(s)%s", job.key, job_id, n, f", {dep}" if dep else "")
    return subs


def submit_plan(
    plan: Plan,
    cfgs: Mapping[str, RunConfig],
    root: Path,
    cluster_raw: Mapping[str, Any],
    *,
    stages: set[str] | None = None,
) -> list[Submission]:
    """Submit every task of ``plan`` not committed and not already queued; return at once.

    ``cfgs`` maps point ids to their configs. Only jobs of ``stages`` (default: all) are
    submitted; the others are looked at, so their queued tasks become dependencies.
    """
    t0 = time.perf_counter()
    cluster = load_cluster(cluster_raw)
    submitting = [j for j in plan.jobs if stages is None or j.stage in stages]
    check_resources(cluster, {j.stage for j in submitting})
    max_array = max_array_size(cluster)
    queue = read_queue()
    atomic_write_json(cluster_config_file(root), dict(cluster_raw))
    after: dict[str, list[str]] = {}  # job key -> ids its dependants wait for
    submitted: list[Submission] = []
    for job in plan.jobs:
        uncommitted = job_pending(job, root, cfgs)
        tries = attempts(root, job.key, queue)
        upstream = [i for key in job.depends_on for i in after.get(key, [])]
        started = [i for key in job.starts_after for i in after.get(key, [])]
        if job not in submitting:
            after[job.key] = _observe(job, uncommitted, tries)
            continue
        res = cluster.stages[job.stage]
        if job.spec.service:
            needed = service_needed(job, plan, root, cfgs)
            decision = decide_service(job, needed, tries)
            payload: Any = service_payload(job, plan, cfgs, root)
            res = service_resources(res, job, cfgs)
        else:
            decision = decide(job, uncommitted, tries, [*upstream, *started])
            payload = job_payload(job, cfgs)
        todo = decision.todo
        if job.spec.current and todo and not upstream and call(job.spec.current)(root):
            todo = []  # every point is committed and its output is already up to date
        cancel(decision.cancel)
        subs = submit_tasks(root, job, todo, payload, cluster, upstream, max_array, started, res)
        after[job.key] = dependency_ids(decision.keep, subs)
        submitted += subs
        _report(job, uncommitted, decision.keep, subs)
    n_tasks = sum(len(s.tasks) for s in submitted)
    log.info(
        "submitted %d job(s), %d task(s) in %.1f s",
        len(submitted),
        n_tasks,
        time.perf_counter() - t0,
    )
    return submitted


def _observe(job: StageJob, uncommitted: list[Task], tries: dict[int, Attempt]) -> list[str]:
    """Ids of a job we do not submit; warn when some of its tasks will never commit."""
    if job.spec.service:
        return dependency_ids([a for a in tries.values() if a.live and not a.live.stuck], [])
    keep = [tries[t.index] for t in uncommitted if t.index in tries and tries[t.index].live]
    lost = [t.index for t in uncommitted if t.index not in tries or not tries[t.index].live]
    if lost:
        log.warning(
            "%s: task(s) %s are neither committed nor queued, so the jobs after it will fail: "
            "python launch/rerun.py <sweep dir> resubmits them",
            job.key,
            abbrev([str(i) for i in lost]),
        )
    return dependency_ids([a for a in keep if not (a.live and a.live.stuck)], [])


def _report(job: StageJob, uncommitted: list[Task], keep: list[Attempt], subs: list) -> None:
    if subs:
        return
    if job.spec.service:
        noun = job.spec.task_name
        state = f"{len(keep)} {noun}(s) queued or running" if keep else f"no {noun} needed"
        log.info("%s: %s", job.key, state)
        return
    committed = len(job.tasks) - len(uncommitted)
    if keep:
        ids = sorted({a.submission.job_id for a in keep})
        log.info("%s: %d task(s) already queued or running (job %s)", job.key, len(keep), ids)
    elif job.spec.current:
        log.info("%s: up to date with every committed point, nothing to submit", job.key)
    else:
        log.info("%s: all %d task(s) committed, nothing to submit", job.key, committed)
