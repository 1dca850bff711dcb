"""What the run folder and SLURM say about every array task of a sweep.

A task is *done* when its manifest is committed: that is the only truth about outputs. For
the rest, the job ids recorded at submission (see :func:`interp.runs.submissions_dir`) and
``squeue`` tell whether it is *running* or *queued*; a task that left the queue without
committing *failed*, and ``sacct`` says how (FAILED, CANCELLED, TIMEOUT, OUT_OF_MEMORY...).
A task that was never submitted is *missing*. ``squeue`` is the live truth; ``sacct`` lags it
by a few seconds and is only asked about tasks that already left the queue.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.plan import Plan, StageJob, job_pending
from interp.runs import (
    RunIds,
    atomic_write_json,
    job_log_file,
    submission_file,
    submissions_dir,
)
from interp.stages.registry import call

RUNNING = frozenset({"RUNNING", "CONFIGURING", "COMPLETING", "SIGNALING", "STAGE_OUT"})
"""squeue states of a task that is executing (or just ending)."""
NEVER_SATISFIED = "DependencyNeverSatisfied"
"""squeue reason of a pending job whose afterok dependency failed: it will never start."""
COUNTS = ("done", "running", "queued", "failed", "missing")


class SlurmError(RuntimeError):
    """Submitting to SLURM failed for a reason the user can fix; the message says how."""


class SlurmUnavailable(SlurmError):
    """squeue/sbatch could not be run or answered with an error."""


@dataclass(frozen=True)
class Submission:
    """One sbatch of one stage job: its SLURM job id and the plan tasks its indices run.

    Array index ``i`` of job ``job_id`` runs plan task ``tasks[i]`` (a rerun of tasks
    3, 17, 42 is array ``0-2``), so a status can map any SLURM id back to its token slice or
    latent range.
    """

    key: str
    stage: str
    job_id: str
    tasks: tuple[int, ...]
    array: bool  # submitit submits a single task as a plain job, not an array
    dependency: str
    submitted_at: float

    def slurm_ids(self) -> list[str]:
        if not self.array:
            return [self.job_id]
        return [f"{self.job_id}_{i}" for i in range(len(self.tasks))]

    def save(self, root: Path) -> None:
        atomic_write_json(submission_file(root, self.key, self.job_id), dataclasses.asdict(self))

    @classmethod
    def load_all(cls, root: Path, key: str) -> list[Submission]:
        """Every recorded submission of ``key``, oldest first."""
        subs = []
        for f in submissions_dir(root, key).glob("*.json"):
            raw = json.loads(f.read_text())
            subs.append(cls(**{**raw, "tasks": tuple(raw["tasks"])}))
        return sorted(subs, key=lambda s: (s.submitted_at, s.job_id))


def waits_on(sub: Submission) -> set[str]:
    """Job ids (array ids for array tasks) in a submission's dependency (every clause:
    ``afterok:1:2,after:3`` -> {1, 2, 3})."""
    ids = [i for clause in sub.dependency.split(",") for i in clause.split(":")[1:]]
    return {i.split("_")[0] for i in ids if i}


@dataclass(frozen=True)
class QueueEntry:
    """A job (or array task) that squeue still lists."""

    state: str
    reason: str

    @property
    def running(self) -> bool:
        return self.state in RUNNING

    @property
    def stuck(self) -> bool:
        return self.reason == NEVER_SATISFIED


@dataclass(frozen=True)
class Attempt:
    """The latest submission of one plan task, and what squeue says about it."""

    slurm_id: str
    submission: Submission
    live: QueueEntry | None


def _run(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmUnavailable(f"{cmd[0]} could not run: {err}") from err
    if proc.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(cmd[:2])}... failed: {proc.stderr.strip()}")
    return proc.stdout


def read_queue() -> dict[str, QueueEntry]:
    """This user's jobs in the queue, one entry per array task (``123_4``) or job (``123``)."""
    try:
        out = _run(["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T|%r"])
    except SlurmUnavailable as err:
        raise SlurmUnavailable(
            f"{err}\nis slurmctld up? For the local test cluster: bash slurm/local_cluster/up.sh"
        ) from err
    queue = {}
    for line in out.splitlines():
        slurm_id, state, reason = line.split("|", 2)
        queue[slurm_id] = QueueEntry(state, reason)
    return queue


def read_accounting(slurm_ids: Iterable[str]) -> dict[str, str]:
    """Final states from sacct (``{}`` when accounting is off: the tasks still count failed)."""
    jobs = sorted({s.split("_")[0] for s in slurm_ids})
    if not jobs:
        return {}
    cmd = ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-S", "2000-01-01", "-j", ",".join(jobs)]
    try:
        out = _run(cmd)
    except SlurmUnavailable:
        return {}
    states = {}
    for line in out.splitlines():
        slurm_id, state = line.split("|", 1)
        if "[" not in slurm_id:  # "123_[4-9]" is a still-pending remainder
            states[slurm_id] = state
    return states


def attempts(root: Path, key: str, queue: dict[str, QueueEntry]) -> dict[int, Attempt]:
    """The latest attempt of each task of ``key`` that was ever submitted.

    A task still in the queue under an older submission keeps that one: it is the attempt
    that will decide whether the task commits.
    """
    latest: dict[int, Attempt] = {}
    for sub in Submission.load_all(root, key):
        for task, slurm_id in zip(sub.tasks, sub.slurm_ids()):
            previous = latest.get(task)
            live = queue.get(slurm_id)
            if previous is None or previous.live is None or live is not None:
                latest[task] = Attempt(slurm_id, sub, live)
    return latest


# ------------------------------------------------------------------------------- sweep status


@dataclass
class StageStatus:
    """Counts for one stage job of one sweep point, and a line per task needing attention."""

    point: str
    stage: str
    key: str
    total: int
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. a service's live endpoints
    notes_title: str = ""


def is_current(root: Path, job: StageJob) -> bool:
    """True when ``job``'s stage says its output reflects what is committed now (its
    ``current`` hook: gather's table was built from exactly the committed work)."""
    return bool(job.spec.current) and bool(call(job.spec.current)(root))


def job_status(
    root: Path,
    job: StageJob,
    cfgs: Mapping[str, RunConfig],
    queue: dict[str, QueueEntry],
    accounting: dict[str, str],
    current: bool,
) -> StageStatus:
    """Classify every task of ``job`` (``current``: its output is up to date, see
    :func:`is_current`)."""
    if job.spec.service:
        return service_status(root, job, queue, accounting)
    row = StageStatus(job.point, job.stage, job.key, len(job.tasks))
    todo = {t.index: t for t in job_pending(job, root, cfgs)}
    if current:
        todo = {}
    elif job.spec.report:
        problems, notes = call(job.spec.report)(root, job, queue.__contains__)
        row.problems += problems
        row.notes += notes
        row.notes_title = job.spec.notes_title
    tries = attempts(root, job.key, queue)
    where = f"{job.point or 'sweep'} {job.stage}"
    stuck: list[str] = []
    for task in job.tasks:
        attempt = tries.get(task.index)
        state = _classify(task.index in todo, attempt)
        row.counts[state] += 1
        if state == "failed":
            assert attempt is not None
            how = accounting.get(attempt.slurm_id, "left the queue uncommitted")
            log = job_log_file(root, job.key, attempt.slurm_id)
            row.problems.append(
                f"{where} task {task.index} [{task.start}, {task.stop}): "
                f"job {attempt.slurm_id} {how}; log {log}"
            )
        elif state == "queued" and attempt and attempt.live and attempt.live.stuck:
            stuck.append(attempt.slurm_id)
    if stuck:
        row.problems.append(
            f"{where}: {len(stuck)} task(s) wait on a failed dependency and will never start "
            f"({', '.join(sorted({s.split('_')[0] for s in stuck}))})"
        )
    return row


def service_status(
    root: Path, job: StageJob, queue: dict[str, QueueEntry], accounting: dict[str, str]
) -> StageStatus:
    """A service's tasks: running / queued from squeue, ended (done) or failed from sacct,
    and the lines its stage reports (e.g. a note per live replica)."""
    row = StageStatus(job.point, job.stage, job.key, len(job.tasks))
    tries = attempts(root, job.key, queue)
    for task in job.tasks:
        attempt = tries.get(task.index)
        if attempt is None or attempt.live is not None:
            state = _classify(True, attempt)
        else:
            how = accounting.get(attempt.slurm_id, "")
            state = "done" if how in ("COMPLETED", "") else "failed"
            if state == "failed":
                log = job_log_file(root, job.key, attempt.slurm_id)
                row.problems.append(
                    f"{job.stage} {job.spec.task_name} {task.index}: job {attempt.slurm_id} "
                    f"{how}; log {log}"
                )
        row.counts[state] += 1
    if job.spec.report:
        problems, notes = call(job.spec.report)(root, job, queue.__contains__)
        row.problems += problems
        row.notes += notes
        row.notes_title = job.spec.notes_title
    return row


def _classify(uncommitted: bool, attempt: Attempt | None) -> str:
    if not uncommitted:
        return "done"
    if attempt is None:
        return "missing"
    if attempt.live is None:
        return "failed"
    return "running" if attempt.live.running else "queued"


def sweep_status(root: Path, plan: Plan, cfgs: list[RunConfig]) -> list[StageStatus]:
    """One row per stage job of ``plan``, in plan order."""
    by_point = {RunIds.of(c).point: c for c in cfgs}
    queue = read_queue()
    gone = []
    for job in plan.jobs:
        gone += [a.slurm_id for a in attempts(root, job.key, queue).values() if a.live is None]
    accounting = read_accounting(gone)
    return [
        job_status(root, job, by_point, queue, accounting, is_current(root, job))
        for job in plan.jobs
    ]


def format_status(root: Path, rows: list[StageStatus]) -> str:
    """A table a person reads at a glance, then the tasks that need attention."""
    head = f"{'point':<12}{'stage':<11}{'tasks':>7}" + "".join(f"{c:>9}" for c in COUNTS)
    lines = [f"sweep {root}  ({time.strftime('%H:%M:%S')})", head]
    last_point = None
    for row in rows:
        point = (row.point or "(sweep)") if row.point != last_point else ""
        last_point = row.point
        cells = "".join(f"{row.counts[c]:>9}" for c in COUNTS)
        lines.append(f"{point or '':<12}{row.stage:<11}{row.total:>7}{cells}")
    titles = dict.fromkeys(row.notes_title for row in rows if row.notes)
    for title in titles:
        notes = [n for row in rows if row.notes_title == title for n in row.notes]
        lines += ["", f"{title or 'notes'}:"] + [f"  {n}" for n in notes]
    problems = [p for row in rows for p in row.problems]
    if problems:
        lines += ["", "needs attention (python launch/rerun.py <sweep dir> resubmits these):"]
        lines += [f"  {p}" for p in problems]
    return "\n".join(lines)


def summary(rows: list[StageStatus]) -> dict[str, Any]:
    """Totals over the sweep (for scripts and tests)."""
    return {c: sum(r.counts[c] for r in rows) for c in COUNTS}
