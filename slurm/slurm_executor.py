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

import contextlib
import dataclasses
import importlib
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import submitit

from interp.config import RunConfig, build, load_run_config
from interp.llm.replicas import JOB_ID, scheduler
from interp.plan import Plan, StageJob, Task, job_payload, job_pending, task_committed
from interp.runs import RunPaths, atomic_write_json, cluster_config_file, is_committed, job_log_dir
from slurm.status import (
    Attempt,
    QueueEntry,
    SlurmError,
    SlurmUnavailable,
    Submission,
    attempts,
    gather_is_current,
    read_queue,
)

log = logging.getLogger("interp.slurm")

STAGES = ("serve", "train", "collect", "compact", "interpret", "gather")
CLUSTER_KEYS = (
    "executor", "max_array_size", "python", "job_prefix", "worker", "resources", "stages"
)  # fmt: skip
MANAGED_FLAGS = frozenset(
    {"array", "dependency", "output", "error", "job-name", "signal", "open-mode", "wrap"}
)
"""sbatch flags this module sets itself; an extra ``sbatch`` flag may not override them."""
OWN_KEYS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "time": "time_min",
    "mem": "mem_gb",
    "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "gpus-per-task": "gpus_per_task",
    "gres": "gres",
    "nodes": "nodes",
    "ntasks-per-node": "tasks_per_node",
}
"""sbatch flags that have their own cluster key (one way to say each thing)."""


# ------------------------------------------------------------------------------ configuration


@dataclass(frozen=True)
class StageResources:
    """What every job of one stage asks SLURM for (``None`` / 0: the site's default)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60  # wall-clock limit per array task
    mem_gb: float = 0  # memory per node
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    gpus_per_task: int = 0
    gres: str | None = None  # e.g. "gpu:a100:1" where a site wants typed gres
    nodes: int = 1  # >1 for multi-node training
    tasks_per_node: int = 1  # one process per GPU for torch.distributed
    array_parallelism: int = 64  # array tasks running at once (per array)
    signal_delay_s: int = 120  # USR2 this long before the limit: checkpoint, then requeue
    max_requeues: int = 3  # time-limit requeues before a task counts as failed
    setup: tuple[str, ...] = ()  # shell lines before the task: module load, venv activate
    sbatch: tuple[str, ...] = ()  # any other sbatch flag, e.g. "--constraint=a100"

    def __post_init__(self) -> None:
        for name in ("time_min", "cpus_per_task", "nodes", "tasks_per_node", "array_parallelism"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        for name in ("mem_gb", "gpus_per_node", "gpus_per_task", "max_requeues", "signal_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(
                f"signal_delay_s={self.signal_delay_s} must be well under time_min*60="
                f"{self.time_min * 60} s, or the stop signal arrives as the job starts: "
                "lower signal_delay_s or raise time_min"
            )
        if self.gpus_per_node and self.gpus_per_task:
            raise ValueError("set gpus_per_node or gpus_per_task, not both")
        self.extra_flags()  # validates the sbatch flags

    def extra_flags(self) -> dict[str, Any]:
        """``sbatch`` as submitit's ``additional_parameters`` ("--exclusive" -> True)."""
        flags: dict[str, Any] = {}
        for flag in self.sbatch:
            match = re.fullmatch(r"--([a-z][a-z0-9-]*)(?:=(.+))?", flag)
            if not match:
                raise ValueError(f"sbatch flag {flag!r}: write it as --name=value or --name")
            name, value = match.group(1), match.group(2)
            if name in MANAGED_FLAGS:
                raise ValueError(f"sbatch flag --{name} is set by interp itself; remove it")
            if name in OWN_KEYS:
                raise ValueError(f"sbatch flag --{name}: use the key {OWN_KEYS[name]} instead")
            flags[name] = True if value is None else value
        return flags

    def executor_params(self, job_name: str) -> dict[str, Any]:
        """Parameters of ``submitit.SlurmExecutor.update_parameters`` (SLURM's own names)."""
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": self.time_min,
            "nodes": self.nodes,
            "ntasks_per_node": self.tasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism,
        }
        optional = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "gres": self.gres,
            "mem": f"{math.ceil(self.mem_gb * 1024)}M" if self.mem_gb else None,
            "gpus_per_node": self.gpus_per_node or None,
            "gpus_per_task": self.gpus_per_task or None,
            "setup": list(self.setup) or None,
            "additional_parameters": self.extra_flags() or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return params


@dataclass(frozen=True)
class SlurmCluster:
    """A validated ``executor: slurm`` cluster profile (``conf/cluster/*.yaml``)."""

    stages: Mapping[str, StageResources]
    max_array_size: int = 0  # 0: the site's MaxArraySize
    python: str = ""  # how nodes start python; "" = this interpreter (same venv path)
    job_prefix: str = "interp"  # job names: <prefix>-<stage>-<run id>
    worker: str = ""  # "module:function" every job runs; "" = slurm.worker.execute (tests swap it)

    def job_name(self, job: StageJob) -> str:
        return f"{self.job_prefix}-{job.key}"


def load_cluster(raw: Mapping[str, Any]) -> SlurmCluster:
    """Validate a cluster profile before anything is submitted (``ValueError`` names the fix)."""
    unknown = sorted(set(raw) - set(CLUSTER_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in cluster; valid keys: {list(CLUSTER_KEYS)}")
    if raw.get("executor") != "slurm":
        raise ValueError(f"cluster.executor={raw.get('executor')!r}: this profile needs 'slurm'")
    defaults = dict(raw.get("resources") or {})
    per_stage = dict(raw.get("stages") or {})
    bad = sorted(set(per_stage) - set(STAGES))
    if bad:
        raise ValueError(f"cluster.stages has {bad}; stages are {list(STAGES)}")
    _resources(defaults, "cluster.resources")  # so an error names the key the user wrote
    stages = {
        s: _resources(_merge(defaults, per_stage.get(s) or {}), f"cluster.stages.{s}")
        for s in STAGES
    }
    max_array = raw.get("max_array_size") or 0
    if not isinstance(max_array, int) or max_array < 0:
        raise ValueError(f"cluster.max_array_size={max_array!r} must be an integer >= 0")
    worker = str(raw.get("worker") or "")
    if worker and not re.fullmatch(r"[\w.]+:\w+", worker):
        raise ValueError(
            f"cluster.worker={worker!r}: write it as module:function, or leave it empty"
        )
    python, prefix = str(raw.get("python") or ""), str(raw.get("job_prefix") or "interp")
    return SlurmCluster(stages, max_array, python, prefix, worker)


def _merge(defaults: dict[str, Any], stage: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's keys win; ``setup`` lines and ``sbatch`` flags add to the defaults'."""
    merged = {**defaults, **stage}
    for key in ("setup", "sbatch"):
        if key in defaults and key in stage:
            merged[key] = [*(defaults[key] or []), *(stage[key] or [])]
    return merged


def _resources(raw: dict[str, Any], where: str) -> StageResources:
    try:
        return build(StageResources, raw, where)
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if where in msg else f"{where}: {msg}") from None


# ------------------------------------------------------------------------------ what SLURM allows


def site_max_array_size() -> int:
    out = _slurm(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else 1001  # SLURM's default


def max_array_size(cluster: SlurmCluster) -> int:
    """Tasks per array: the site's MaxArraySize, or less if the profile asks for less."""
    site = site_max_array_size()
    return min(site, cluster.max_array_size) if cluster.max_array_size else site


def split_tasks(tasks: Sequence[Task], max_size: int) -> list[list[Task]]:
    """Balanced chunks of at most ``max_size`` tasks (1024 -> 512 + 512, not 1001 + 23)."""
    if not tasks:
        return []
    n_chunks = math.ceil(len(tasks) / max_size)
    size, extra = divmod(len(tasks), n_chunks)
    chunks, start = [], 0
    for i in range(n_chunks):
        stop = start + size + (i < extra)
        chunks.append(list(tasks[start:stop]))
        start = stop
    return chunks


def chunk_parallelism(parallelism: int, n_chunks: int) -> int:
    """SLURM throttles each array on its own: share ``parallelism`` among the chunks."""
    return max(1, math.ceil(parallelism / n_chunks))


class ResourcesRejected(SlurmError, ValueError):
    """sbatch would refuse a stage's jobs (partition, gres, qos, time limit...)."""


def check_resources(cluster: SlurmCluster, stages: set[str]) -> None:
    """Ask sbatch (``--test-only``) whether it would take each stage's jobs; submits nothing.

    A partition, gres, qos or time limit the site rejects becomes an error before any job
    of the sweep is submitted, instead of half a DAG in the queue.
    """
    if shutil.which("sbatch") is None:
        raise SlurmUnavailable(
            "sbatch is not on PATH: a SLURM profile submits from a login node; "
            "on this machine start the test cluster with bash slurm/local_cluster/up.sh"
        )
    seen: set[StageResources] = set()
    for stage in STAGES:
        res = cluster.stages[stage]
        if stage not in stages or res in seen:
            continue
        seen.add(res)
        with tempfile.TemporaryDirectory() as tmp:
            executor = _executor(Path(tmp), res, cluster, f"{cluster.job_prefix}-check")
            script = executor._make_submission_file_text("true", "check")  # the real script
        proc = subprocess.run(
            ["sbatch", "--test-only"], input=script, capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise ResourcesRejected(
                f"SLURM rejects the {stage} jobs' resources: {proc.stderr.strip()}\n"
                f"fix cluster.stages.{stage} or cluster.resources in the cluster profile "
                "(conf/cluster/<profile>.yaml or cluster.<key>=... on the command line)"
            )


def _slurm(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmUnavailable(f"{cmd[0]} could not run ({err}): is this a SLURM host?") from err
    if proc.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


# ------------------------------------------------------------------------------ the job itself


class TaskStopped(RuntimeError):
    """A stage returned without committing its task (cancelled, preempted, or a stage bug)."""


class StageCall(submitit.helpers.Checkpointable):
    """What every SLURM job runs: the worker's ``execute``, then requeue if it was told to stop.

    The worker maps USR2 and SIGTERM to ``should_stop()``; the stage returns early,
    uncommitted. If USR2 (time limit, or a site's preemption notice) was among the signals,
    submitit's own USR2 handler is called: it pickles this call (``checkpoint``) and
    requeues the job, which resumes from what the stage committed. A stop without USR2
    (scancel) ends the task as failed, so ``afterok`` holds its dependants back.
    """

    def __init__(self, worker: str = "") -> None:
        self.worker = worker  # "module:function"; "" = slurm.worker.execute
        self.requeues = 0

    def __call__(self, stage: str, cfg_dict: dict[str, Any] | None, root: str, task: Task) -> Any:
        if stage == "serve":
            assert cfg_dict is not None
            return run_replica(cfg_dict, Path(root), task)
        requeue = signal.getsignal(signal.SIGUSR2)  # installed by submitit before this call
        watchdog = None
        check = JobsAliveCheck() if stage == "interpret" and _served(cfg_dict) else None
        if check is not None and not task_committed(stage, cfg_dict, Path(root), task):
            watchdog = attach_replicas(cfg_dict, Path(root), check)
        with signals_seen() as seen, scheduler(check):  # the stage's discovery asks squeue too
            try:
                result = load_worker(self.worker)(stage, cfg_dict, root, task)
            finally:
                if watchdog is not None:
                    watchdog.close()
        if os.environ.get("SLURM_PROCID", "0") != "0" or task_committed(
            stage, cfg_dict, Path(root), task
        ):
            return result
        if watchdog is not None and watchdog.fired:
            raise ReplicasGone(
                f"interpret task {task.index}: every replica of the served LLM is gone "
                f"({', '.join(watchdog.urls)}); the range is left uncommitted (its LLM cache "
                "keeps what finished): python launch/rerun.py <sweep dir> starts a fresh "
                "server and redoes it"
            )
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


# ------------------------------------------------------------------------------ served LLM


class ReplicasGone(RuntimeError):
    """Every replica an interpret task talked to stopped answering."""


def _served(cfg_dict: dict[str, Any] | None) -> bool:
    return bool(cfg_dict and (cfg_dict.get("serve") or {}).get("enabled"))


class JobsAliveCheck:
    """``JobsAlive`` over squeue: which of the given ids are SLURM jobs RUNNING as this
    user (``read_queue`` lists only this user's). A non-SLURM id is never alive. When
    squeue cannot answer, only ids it last saw running count: a known replica survives a
    slurmctld hiccup, a file naming a job never seen running does not."""

    def __init__(self, read: Callable[[], Mapping[str, QueueEntry]] = read_queue) -> None:
        self.read = read
        self.seen: set[str] = set()

    def __call__(self, job_ids: Iterable[str]) -> set[str]:
        ids = {j for j in job_ids if isinstance(j, str) and JOB_ID.fullmatch(j)}
        try:
            queue = self.read()
        except SlurmError as err:
            log.warning("squeue did not answer (%s): trusting only replicas seen running", err)
            return ids & self.seen
        alive = {j for j in ids if j in queue and queue[j].state == "RUNNING"}
        self.seen = (self.seen - ids) | alive
        return alive


class Watchdog:
    """Polls the replicas an interpret task uses; when none answers twice in a row, it
    SIGTERMs its own process, which the worker turns into ``should_stop()``: the stage
    returns uncommitted instead of recording every remaining latent as an error."""

    def __init__(self, urls: list[str], poll_s: float) -> None:
        self.urls, self.poll_s, self.fired = urls, poll_s, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from urllib.parse import urlsplit

        from interp.llm.replicas import healthy

        misses = 0
        while not self._stop.wait(self.poll_s):
            parts = [urlsplit(u) for u in self.urls]
            up = any(healthy(p.hostname or "", p.port or 80, 3.0) for p in parts)
            misses = 0 if up else misses + 1
            if misses >= 2:
                log.error("no replica of the served LLM answers (%s): stopping", self.urls)
                self.fired = True
                os.kill(os.getpid(), signal.SIGTERM)
                return

    def close(self) -> None:
        self._stop.set()


def attach_replicas(cfg_dict: dict[str, Any], root: Path, jobs_alive: JobsAliveCheck) -> Watchdog:
    """Wait for a live replica, then start the task's watchdog over the live ones. The
    stage finds them itself (same check, see :func:`interp.llm.replicas.scheduler`);
    they never become ``llm.base_urls``, the only URLs the API key is sent to."""
    from interp.llm.replicas import serve_id, wait_for_replicas
    from slurm.worker import setup_logging

    setup_logging()  # the worker sets it up again later; this wait is logged too
    cfg = load_run_config(cfg_dict)
    log.info("waiting for a live replica of %s", cfg.llm.served_model)
    live = wait_for_replicas(
        root, serve_id(cfg), cfg.serve.startup_timeout_s, min(cfg.serve.poll_s, 2.0), jobs_alive
    )
    urls = [r.base_url for r in live]
    log.info("served LLM %s: %d live replica(s): %s", cfg.llm.served_model, len(urls), urls)
    return Watchdog(urls, cfg.serve.poll_s)


def run_replica(payload: dict[str, Any], root: Path, task: Task) -> dict[str, Any]:
    """A serve job: one replica until the interpret work it serves is over (or the time
    limit / a cancellation stops it). Never requeued: rerun starts a fresh one if needed."""
    from interp.llm.replicas import this_job
    from interp.stages.serve import serve
    from slurm.worker import setup_logging

    setup_logging()
    stop = threading.Event()

    def _flag(signum: int, _frame: Any) -> None:
        log.warning("signal %d received: stopping the replica", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(sig, _flag)
    cfg = load_run_config(payload["config"])
    job = this_job()
    watch = payload.get("interpret", {})
    finished = partial_finished(root, watch.get("keys", []), watch.get("manifests", []), job)
    log.info("serve replica %d (job %s) of %s", task.index, job, cfg.llm.served_model)
    return serve(cfg, root, stop.is_set, finished, job=job)


def partial_finished(
    root: Path, keys: Sequence[str], manifests: Sequence[str], job: str
) -> Callable[[], bool]:
    """``finished()`` of a replica: every interpret manifest it serves is committed, or
    every interpret task that waits on this serve job has left the queue."""
    own = job.split("_")[0]

    def finished() -> bool:
        if manifests and all(is_committed(Path(m)) for m in manifests):
            return True
        subs = [s for k in keys for s in Submission.load_all(root, k) if own in _waits_on(s)]
        if not subs:
            return False  # not submitted yet (the serve job is submitted first)
        try:
            queue = read_queue()
        except SlurmError:
            return False
        return not any(i in queue for s in subs for i in s.slurm_ids())

    return finished


def serve_payload(
    job: StageJob, plan: Plan, cfgs: Mapping[str, RunConfig], root: Path
) -> dict[str, Any]:
    """What a serve job gets: its point's config and the interpret work it watches."""
    users = [j for j in plan.jobs if job.key in j.starts_after]
    manifests = [
        str(RunPaths(root, cfgs[j.point]).manifest_file("interpret", t.index))
        for j in users
        for t in j.tasks
    ]
    cfg_dict = job_payload(job, cfgs)
    return {
        "config": cfg_dict,
        "interpret": {"keys": [j.key for j in users], "manifests": manifests},
    }


def serve_needed(job: StageJob, plan: Plan, root: Path, cfgs: Mapping[str, RunConfig]) -> bool:
    """A server is needed while an interpret job it serves has uncommitted tasks."""
    return any(job_pending(j, root, cfgs) for j in plan.jobs if job.key in j.starts_after)


def serve_resources(res: StageResources, cfg: RunConfig, n_replicas: int) -> StageResources:
    """The profile's serve resources with the ServeConfig's time and GPUs; all replicas
    run at once and none is requeued."""
    s = cfg.serve
    return dataclasses.replace(
        res,
        time_min=s.time_min or res.time_min,
        gpus_per_node=s.gpus_per_replica or res.gpus_per_node,
        gpus_per_task=0 if s.gpus_per_replica else res.gpus_per_task,
        array_parallelism=max(1, n_replicas),
        max_requeues=0,
    )


def decide_serve(job: StageJob, needed: bool, tries: dict[int, Attempt]) -> Decision:
    """Keep replicas that are queued or running; start the missing ones while needed; a
    replica waiting on a failed upstream job never starts: cancel it."""
    keep, stale, todo = [], [], []
    for task in job.tasks:
        attempt = tries.get(task.index)
        live = attempt.live if attempt else None
        if attempt is not None and live is not None and not live.stuck:
            keep.append(attempt)
            continue
        if attempt is not None and live is not None:
            stale.append(attempt.slurm_id)
        if needed:
            todo.append(task)
    return Decision(keep, stale, todo)


# ------------------------------------------------------------------------------ submission


@dataclass(frozen=True)
class Decision:
    """What to do with the uncommitted tasks of one stage job."""

    keep: list[Attempt]  # queued or running: leave them, dependants wait on them
    cancel: list[str]  # slurm ids that can never usefully run (their dependency failed)
    todo: list[Task]  # submit now


def decide(
    job: StageJob, uncommitted: list[Task], tries: dict[int, Attempt], upstream: Sequence[str]
) -> Decision:
    """Keep what is queued, resubmit what failed or was never submitted.

    ``upstream`` are the ids this job must wait for now. A pending task recorded with a
    dependency that misses one of them (the upstream was resubmitted, or a multirun added
    points) waits on the wrong jobs: it is cancelled and resubmitted. Gather is cheap, so
    it is replaced even while it runs.
    """
    needed = {i.split("_")[0] for i in upstream}
    keep, cancel, todo = [], [], []
    for task in uncommitted:
        attempt = tries.get(task.index)
        live = attempt.live if attempt else None
        if attempt is None or live is None:
            todo.append(task)
        elif live.stuck or (
            not needed <= _waits_on(attempt.submission)
            and (not live.running or job.stage == "gather")
        ):
            cancel.append(attempt.slurm_id)
            todo.append(task)
        else:
            keep.append(attempt)
    return Decision(keep, cancel, todo)


def _waits_on(sub: Submission) -> set[str]:
    """Job ids (array ids for array tasks) in a submission's dependency (every clause:
    ``afterok:1:2,after:3`` -> {1, 2, 3})."""
    ids = [i for clause in sub.dependency.split(",") for i in clause.split(":")[1:]]
    return {i.split("_")[0] for i in ids if i}


def dependency_ids(keep: list[Attempt], new: list[Submission]) -> list[str]:
    """SLURM ids a dependant must wait for: whole arrays where every index is kept."""
    ids = [s.job_id for s in new]
    by_job: dict[str, list[Attempt]] = {}
    for attempt in keep:
        by_job.setdefault(attempt.submission.job_id, []).append(attempt)
    for job_id, group in by_job.items():
        whole = len(group) == len(group[0].submission.tasks)
        ids += [job_id] if whole else [a.slurm_id for a in group]
    return ids


def dependency(ids: Sequence[str], started: Sequence[str] = ()) -> str | None:
    """``afterok`` on ``ids`` and ``after`` (has started) on ``started``, both required."""
    clauses = [f"{kind}:" + ":".join(x) for kind, x in (("afterok", ids), ("after", started)) if x]
    return ",".join(clauses) or None


def cancel(ids: Sequence[str]) -> None:
    if ids:
        _slurm(["scancel", *ids])
        log.info("cancelled %d stale task(s): %s", len(ids), _abbrev(ids))


def _executor(
    folder: Path, res: StageResources, cluster: SlurmCluster, name: str
) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(
        folder=folder, max_num_timeout=res.max_requeues, python=cluster.python or None
    )
    executor.update_parameters(**res.executor_params(name))
    return executor


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
    executor = _executor(job_log_dir(root, job.key), res, cluster, cluster.job_name(job))
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
        res = None
        if job.stage == "serve":
            needed = serve_needed(job, plan, root, cfgs)
            decision = decide_serve(job, needed, tries)
            cfg_dict: Any = serve_payload(job, plan, cfgs, root)
            res = serve_resources(cluster.stages["serve"], cfgs[job.point], len(job.tasks))
        else:
            decision = decide(job, uncommitted, tries, [*upstream, *started])
            cfg_dict = job_payload(job, cfgs)
        todo = decision.todo
        if job.stage == "gather" and todo and not upstream and gather_is_current(root):
            todo = []  # every point is committed and already gathered
        cancel(decision.cancel)
        subs = submit_tasks(root, job, todo, cfg_dict, cluster, upstream, max_array, started, res)
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
    if job.stage == "serve":
        return dependency_ids([a for a in tries.values() if a.live and not a.live.stuck], [])
    keep = [tries[t.index] for t in uncommitted if t.index in tries and tries[t.index].live]
    lost = [t.index for t in uncommitted if t.index not in tries or not tries[t.index].live]
    if lost:
        log.warning(
            "%s: task(s) %s are neither committed nor queued, so the jobs after it will fail: "
            "python launch/rerun.py <sweep dir> resubmits them",
            job.key,
            _abbrev([str(i) for i in lost]),
        )
    return dependency_ids([a for a in keep if not (a.live and a.live.stuck)], [])


def _report(job: StageJob, uncommitted: list[Task], keep: list[Attempt], subs: list) -> None:
    if subs:
        return
    if job.stage == "serve":
        state = f"{len(keep)} replica(s) queued or running" if keep else "no server needed"
        log.info("%s: %s", job.key, state)
        return
    committed = len(job.tasks) - len(uncommitted)
    if keep:
        ids = sorted({a.submission.job_id for a in keep})
        log.info("%s: %d task(s) already queued or running (job %s)", job.key, len(keep), ids)
    elif job.stage == "gather":
        log.info("gather: up to date with every committed point, nothing to submit")
    else:
        log.info("%s: all %d task(s) committed, nothing to submit", job.key, committed)


def _abbrev(items: Sequence[str], n: int = 8) -> str:
    shown = ",".join(items[:n])
    return shown + (f",... ({len(items)} in all)" if len(items) > n else "")
