"""What runs inside every SLURM job: the worker, the signals it saw, requeue on USR2, and
what the job knows at run time (which jobs are alive, whether a service's users are done).
Knows no stage by name: the registry says which stages commit and which are services.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import submitit

from interp.plan import Task, task_committed
from slurm.status import QueueEntry, SlurmError, read_queue

log = logging.getLogger("interp.slurm")

JOB_ID = re.compile(r"\d{1,20}(_\d{1,10})?")
"""A SLURM job or array task id, as squeue lists it."""


def _is_job_id(value: str) -> bool:
    return bool(JOB_ID.fullmatch(value))


class TaskStopped(RuntimeError):
    """A stage returned without committing its task (cancelled, preempted, or a stage bug)."""


class StageCall(submitit.helpers.Checkpointable):
    """What every SLURM job runs: the worker's ``execute``, then requeue if it was told to stop.

    The worker maps USR2 and SIGTERM to ``should_stop()``; the stage returns early,
    uncommitted. If USR2 (time limit, or a site's preemption notice) was among the signals,
    submitit's own USR2 handler is called: it pickles this call (``checkpoint``) and
    requeues the job, which resumes from what the stage committed. A stop without USR2
    (scancel) ends the task as failed, so ``afterok`` holds its dependants back. A task
    that commits nothing by design (a service, a stage redone whole) ends with its stage.
    """

    def __init__(self, worker: str = "") -> None:
        self.worker = worker  # "module:function"; "" = slurm.worker.execute
        self.requeues = 0

    def __call__(self, stage: str, cfg_dict: dict[str, Any] | None, root: str, task: Task) -> Any:
        requeue = signal.getsignal(signal.SIGUSR2)  # installed by submitit before this call
        with signals_seen() as seen:
            result = load_worker(self.worker)(stage, cfg_dict, root, task)
        if os.environ.get("SLURM_PROCID", "0") != "0" or task_committed(
            stage, cfg_dict, Path(root), task
        ):
            return result
        if signal.SIGUSR2 in seen and callable(requeue):
            self.requeues += 1
            requeue(signal.SIGUSR2, None)  # checkpoints self; exits unless out of requeues
        names = sorted(signal.Signals(s).name for s in seen) or ["none"]
        raise TaskStopped(
            f"{stage} task {task.index} returned without committing (signals: {names}): "
            "cancelled or preempted if a signal came, else a stage bug; "
            "python launch/rerun.py <sweep dir> resubmits it"
        )


def load_worker(spec: str) -> Callable[[str, Any, str, Task], Any]:
    """The function a job runs, imported on the node (never pickled by value)."""
    if not spec:
        from slurm.worker import execute

        return execute
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


@contextlib.contextmanager
def signals_seen() -> Iterator[set[int]]:
    """Numbers of the signals that reach a Python handler while the block runs.

    The worker's handlers only set a stop flag; Python also writes each caught signal's
    number to the wakeup fd, which tells *which* signal it was without replacing them.
    """
    seen: set[int] = set()
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        yield seen
    finally:
        signal.set_wakeup_fd(previous)
        with contextlib.suppress(BlockingIOError):
            seen.update(os.read(read_fd, 4096))
        os.close(read_fd)
        os.close(write_fd)


class JobsAliveCheck:
    """``JobsAlive`` over squeue: which of the given ids are SLURM jobs RUNNING as this
    user (``read_queue`` lists only this user's). A non-SLURM id is never alive. When
    squeue cannot answer, only ids it last saw running count: a known job survives a
    slurmctld hiccup, a file naming a job never seen running does not."""

    def __init__(self, read: Callable[[], Mapping[str, QueueEntry]] = read_queue) -> None:
        self.read = read
        self.seen: set[str] = set()

    def __call__(self, job_ids: Iterable[str]) -> set[str]:
        ids = {j for j in job_ids if isinstance(j, str) and _is_job_id(j)}
        try:
            queue = self.read()
        except SlurmError as err:
            log.warning("squeue did not answer (%s): trusting only jobs seen running", err)
            return ids & self.seen
        alive = {j for j in ids if j in queue and queue[j].state == "RUNNING"}
        self.seen = (self.seen - ids) | alive
        return alive


def this_job() -> str | None:
    """The SLURM id of the running job (``123_4`` for an array task); None outside SLURM."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or None


def job_runtime(payload: Any, root: Path) -> tuple[Any, dict[str, Any]]:
    """(the stage's payload, its runtime keywords) for a task of this job: under SLURM,
    ``jobs_alive`` (squeue); for a service, ``users_finished`` (see
    :func:`slurm.services.users_finished`)."""
    from slurm.services import split_service_payload, users_finished

    payload, users = split_service_payload(payload)
    job = this_job()
    runtime: dict[str, Any] = {}
    if job is not None:
        runtime["jobs_alive"] = JobsAliveCheck()
        if users is not None:
            runtime["users_finished"] = users_finished(root, users, job)
    return payload, runtime
