"""Service jobs (a stage whose spec says ``service``: it serves other jobs while it runs and
commits nothing), seen from the cluster: what one gets, whether it is needed, its
resources, and when the work it serves is over. Knows no stage by name: a service's users
are the jobs that start after it (``starts_after``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.plan import Plan, StageJob, job_payload, job_pending
from interp.runs import RunPaths, is_committed
from slurm.resources import StageResources, with_hint
from slurm.status import SlurmError, Submission, read_queue, waits_on

SERVICE_KEYS = frozenset({"config", "users"})
"""The keys of a service job's payload: its stage's payload, and the work it watches."""


def users_of(job: StageJob, plan: Plan) -> list[StageJob]:
    """The jobs that use service ``job`` (they wait for it to start)."""
    return [j for j in plan.jobs if job.key in j.starts_after]


def service_payload(
    job: StageJob, plan: Plan, cfgs: Mapping[str, RunConfig], root: Path
) -> dict[str, Any]:
    """What a service job gets: its stage's payload and the manifests and job keys of the
    work it serves (:func:`users_finished` reads them on the node)."""
    users = users_of(job, plan)
    manifests = [
        str(RunPaths(root, cfgs[j.point]).manifest_file(j.stage, t.index))
        for j in users
        for t in j.tasks
    ]
    users_info = {"keys": [j.key for j in users], "manifests": manifests}
    return {"config": job_payload(job, cfgs), "users": users_info}


def split_service_payload(payload: Any) -> tuple[Any, dict[str, Any] | None]:
    """(the stage's payload, the users a service watches, or None for any other job)."""
    if isinstance(payload, dict) and set(payload) == SERVICE_KEYS:
        return payload["config"], payload["users"]
    return payload, None


def service_needed(job: StageJob, plan: Plan, root: Path, cfgs: Mapping[str, RunConfig]) -> bool:
    """A service is needed while a job it serves has uncommitted tasks."""
    return any(job_pending(j, root, cfgs) for j in users_of(job, plan))


def service_resources(
    res: StageResources, job: StageJob, cfgs: Mapping[str, RunConfig]
) -> StageResources:
    """The profile's resources for ``job`` with its stage's hint (a service's own time,
    GPUs, all tasks at once, no requeue) applied."""
    hint = job.spec.resources
    if hint is None or job.point not in cfgs:
        return res
    return with_hint(res, hint(cfgs[job.point], len(job.tasks)))


def users_finished(root: Path, users: Mapping[str, Any], job: str) -> Callable[[], bool]:
    """``finished()`` of a service task: every manifest it serves is committed, or every
    task that waits on this service job has left the queue."""
    keys, manifests = users.get("keys", []), users.get("manifests", [])
    own = job.split("_")[0]

    def finished() -> bool:
        if manifests and all(is_committed(Path(m)) for m in manifests):
            return True
        subs = [s for k in keys for s in Submission.load_all(root, k) if own in waits_on(s)]
        if not subs:
            return False  # not submitted yet (the service is submitted first)
        try:
            queue = read_queue()
        except SlurmError:
            return False
        return not any(i in queue for s in subs for i in s.slurm_ids())

    return finished
