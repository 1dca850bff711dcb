"""One module per stage, each exposing ``run(ctx: StageContext)``; the stages themselves
are declared in :mod:`interp.stages.registry`.

Stages are wiring only: they read what earlier stages committed through
:class:`interp.runs.RunPaths`, call the library, and commit their outputs atomically.
``ctx.should_stop()`` turns true when the cluster wants the task to stop (preemption, time
limit): a stage checks it at safe points and returns early, uncommitted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.llm.replicas import JobsAlive
    from interp.stages.registry import Task


def never_stop() -> bool:
    return False


def run_task(
    stage: str,
    cfg_dict: dict[str, Any] | None,
    root: str | Path,
    task: Task,
    should_stop: Callable[[], bool] = never_stop,
    *,
    jobs_alive: JobsAlive | None = None,
    users_finished: Callable[[], bool] | None = None,
) -> Any:
    """Entry point for every executor (in-process, submitit local, SLURM).

    ``cfg_dict`` is the job's payload (:func:`interp.plan.job_payload`): the point's
    resolved config as a plain dict (picklable, and the same dict that is saved in the run
    folder); ``None`` for a sweep-level stage; ``{"members": [config, ...]}`` for a group
    job (several points' dictionaries served by one LM forward). ``jobs_alive`` and
    ``users_finished`` are what the executor knows at run time (see
    :class:`interp.stages.context.StageContext`); they never enter the config.
    """
    from interp.stages.context import StageContext
    from interp.stages.registry import stage as spec_of

    spec = spec_of(stage)
    ctx = StageContext.from_payload(
        cfg_dict,
        Path(root),
        task,
        should_stop,
        jobs_alive=jobs_alive,
        users_finished=users_finished,
    )
    if spec.sweep:
        assert not ctx.members, f"stage {stage} runs over the sweep, not a point"
    else:
        assert ctx.members, f"stage {stage} needs its point's config"
    return spec.load()(ctx)
