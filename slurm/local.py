"""Run a plan on this machine, in dependency order: submitit's LocalExecutor, or in-process.

Each pending array task runs as its own process (as on a cluster), at most
``max_parallel`` at once; its log is streamed to this terminal. Tasks whose manifest is
committed are skipped, so rerunning the same command does no committed work again.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.plan import Plan, StageJob, Task, job_payload, job_pending
from slurm.worker import execute

log = logging.getLogger("interp.local")


LOCAL_LIMITS = {"max_parallel": 1, "timeout_min": 0}
"""The integer keys of a local/inprocess cluster profile and their lower bounds (0 = no
time limit); ``executor`` is its only other key."""


class TaskFailed(RuntimeError):
    """An array task ended with an error; the message says where its log is."""


def check_local_cluster(raw: dict[str, Any]) -> None:
    """Refuse unknown keys and non-integer limits of a local or inprocess profile."""
    executor = raw.get("executor")
    keys = ["executor", *LOCAL_LIMITS]
    unknown = sorted(set(raw) - set(keys))
    if unknown:
        raise ValueError(
            f"unknown key(s) {['cluster.' + k for k in unknown]} for cluster.executor="
            f"{executor}: its keys are {keys} (remove the others; resources "
            "and stages are SLURM profiles' keys)"
        )
    for key, low in LOCAL_LIMITS.items():
        value = raw.get(key, low)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(
                f"cluster.{key}={value!r} must be an integer >= {low}, e.g. cluster.{key}=2"
            )


def run_plan(plan: Plan, cfgs: dict[str, RunConfig], root: Path, cluster: dict[str, Any]) -> None:
    for job in plan.jobs:
        todo = job_pending(job, root, cfgs)
        if not todo:
            log.info("%s: all %d task(s) committed, nothing to do", job.key, len(job.tasks))
            continue
        log.info("%s: %d of %d task(s) to run", job.key, len(todo), len(job.tasks))
        cfg_dict = job_payload(job, cfgs)
        if cluster.get("executor") == "inprocess":
            for task in todo:
                execute(job.stage, cfg_dict, str(root), task)
        else:
            _run_submitit(job, todo, cfg_dict, root, cluster)


def _run_submitit(
    job: StageJob, todo: list[Task], cfg_dict: dict | None, root: Path, cluster: dict[str, Any]
) -> None:
    import submitit

    executor = submitit.LocalExecutor(folder=root / ".submitit" / job.key)
    timeout = cluster.get("timeout_min", 0)  # checked by check_local_cluster
    if timeout:
        executor.update_parameters(timeout_min=timeout)
    width = cluster.get("max_parallel", 1)
    for wave_start in range(0, len(todo), width):
        wave = todo[wave_start : wave_start + width]
        jobs = [executor.submit(execute, job.stage, cfg_dict, str(root), t) for t in wave]
        _stream_until_done(jobs)
        for sub, task in zip(jobs, wave):
            try:
                sub.result()
            except Exception as err:  # submitit re-raises the worker's error
                raise TaskFailed(
                    f"{job.key} task {task.index} failed: {err}\n  log: {sub.paths.stderr}\n"
                    "  rerun the same command to retry only the uncommitted tasks"
                ) from err


def _stream_until_done(jobs: list[Any]) -> None:
    """Echo the tasks' stderr/stdout to this terminal while they run."""
    offsets: dict[Path, int] = {}
    while True:
        done = all(j.done() for j in jobs)
        for j in jobs:
            for path in (j.paths.stdout, j.paths.stderr):
                offsets[path] = _echo_new(path, offsets.get(path, 0))
        if done:
            return
        time.sleep(0.5)


def _echo_new(path: Path, offset: int) -> int:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return offset
    if data:
        sys.stderr.write(data.decode(errors="replace"))
        sys.stderr.flush()
    return offset + len(data)
