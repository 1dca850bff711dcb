"""What to do with each stage job's uncommitted tasks, given what SLURM says about them:
keep what is queued, cancel what can never run, submit the rest; and the dependency
clauses dependants wait on. Pure: reads no queue and submits nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from interp.plan import StageJob, Task
from slurm.status import Attempt, Submission, waits_on


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
    points) waits on the wrong jobs: it is cancelled and resubmitted. A stage redone whole
    (``redo``: gather) is cheap, so it is replaced even while it runs.
    """
    needed = {i.split("_")[0] for i in upstream}
    keep, cancel, todo = [], [], []
    for task in uncommitted:
        attempt = tries.get(task.index)
        live = attempt.live if attempt else None
        if attempt is None or live is None:
            todo.append(task)
        elif live.stuck or (
            not needed <= waits_on(attempt.submission) and (not live.running or job.spec.redo)
        ):
            cancel.append(attempt.slurm_id)
            todo.append(task)
        else:
            keep.append(attempt)
    return Decision(keep, cancel, todo)


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


def decide_service(job: StageJob, needed: bool, tries: dict[int, Attempt]) -> Decision:
    """A service's tasks: keep those queued or running; start the missing ones while
    ``needed``; one waiting on a failed upstream job never starts: cancel it."""
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
