"""Train stage: one task trains one point's SAE, or a group of points' SAEs from one LM
forward (:func:`run_group`); wiring only. The run config and folder stop here: the
library (:mod:`interp.train`) gets a ``TrainJob`` per point and the group's
``GroupInputs`` (:func:`job_of`, :func:`inputs_of`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from interp.config import RunConfig, to_dict
from interp.plan import Task
from interp.runs import RunIds, RunPaths, commit_task, is_committed
from interp.stages.context import StageContext
from interp.train.job import GroupInputs, TrainJob

if TYPE_CHECKING:
    from interp.train.distributed import Dist

Members = Sequence[tuple[RunConfig, RunPaths]]

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> None:
    """Train, save and evaluate the SAE of the point (every member's, for a group job),
    then commit task ``ctx.task.index``'s manifest of each."""
    run_group(ctx.pairs(), ctx.task, ctx.should_stop)


def run_group(members: Members, task: Task, should_stop: Callable[[], bool]) -> None:
    """Train every member from one LM forward; commit each member's train manifest.

    Members already committed are still trained with the group when others are not
    (their result is the same; the group's state holds them all) but not re-committed.
    """
    pending = [m for m in members if not is_committed(m[1].manifest_file("train", task.index))]
    if not pending:
        log.info("train group task %d: every member already committed", task.index)
        return
    from interp.train.distributed import init_distributed  # torch: when the stage runs

    cfg0 = members[0][0]  # ranks from torchrun / srun variables; one process: a no-op Dist
    costs = [_cost(c) for c, _ in members]
    dist = init_distributed(cfg0.train.dist, member_costs=costs, device=cfg0.model.device)
    try:
        summaries = train_group(members, should_stop, dist=dist)
    finally:
        dist.close()
    if summaries is None:
        return  # stopped early: checkpointed, resumed by the requeued task
    for (cfg, paths), summary in zip(members, summaries):
        if summary is not None and not is_committed(paths.manifest_file("train", task.index)):
            _commit(cfg, paths, task.index, summary)


def job_of(cfg: RunConfig, paths: RunPaths) -> TrainJob:
    """What the library trains for one point: its sub-configs and its output paths."""
    return TrainJob(
        sae=cfg.sae,
        train=cfg.train,
        hookpoint=cfg.hookpoint,
        target=cfg.target,
        train_id=RunIds.of(cfg).train,
        sae_dir=paths.sae_dir(),
        metrics_file=paths.train_metrics(),
        summary_file=paths.train_summary(),
        label=cfg.name,
        wandb_config=to_dict(cfg),
    )


def inputs_of(members: Members) -> GroupInputs:
    """What the group's points share (the first point's model, data and run folder)."""
    from interp.groups import train_group_id

    cfg, paths = members[0]
    return GroupInputs(
        model=cfg.model,
        ctx_len=cfg.data.ctx_len,
        exclude_first=cfg.data.exclude_first,
        windows=partial(_load_windows, paths),
        checkpoint_dir=paths.train_group_checkpoint_dir(train_group_id([c for c, _ in members])),
    )


def _load_windows(paths: RunPaths, split: Any) -> Any:
    from interp.data import load_windows
    from interp.stages.inputs import token_source

    return load_windows(token_source(paths), split)


def train_group(
    members: Members,
    should_stop: Callable[[], bool] | None = None,
    *,
    checkpoint_every: int | None = None,
    dist: Dist | None = None,
) -> list[dict[str, Any] | None] | None:
    """:func:`interp.train.run.train_group` on these points (refused unless they can
    share one LM forward: :func:`interp.groups.check_group`)."""
    from interp.groups import check_group
    from interp.train import run

    check_group([c for c, _ in members])
    jobs = [job_of(c, p) for c, p in members]
    stop = should_stop or (lambda: False)
    return run.train_group(
        jobs, inputs_of(members), stop, checkpoint_every=checkpoint_every, dist=dist
    )


def train_sae(
    cfg: RunConfig,
    paths: RunPaths,
    should_stop: Callable[[], bool] | None = None,
    *,
    checkpoint_every: int | None = None,
    dist: Dist | None = None,
) -> dict[str, Any] | None:
    """One point's SAE: a group of one (:func:`train_group`)."""
    out = train_group([(cfg, paths)], should_stop, checkpoint_every=checkpoint_every, dist=dist)
    return None if out is None else out[0]


def _cost(cfg: RunConfig) -> float:
    """A member's share of the work for shard_hookpoints: its dictionary width."""
    from interp.models import hookpoint_width
    from interp.plan import num_latents

    return float(num_latents(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)))


def _commit(cfg: RunConfig, paths: RunPaths, index: int, summary: dict[str, Any]) -> None:
    info = {
        "stage": "train",
        "task": index,
        "hookpoint": cfg.hookpoint,
        "sae_id": cfg.sae.sae_id,
        "sae_dir": str(paths.sae_dir().relative_to(paths.root)),
        "summary": summary,
    }
    if cfg.target_hookpoint:
        info["target_hookpoint"] = cfg.target_hookpoint
    commit_task(paths.manifest_file("train", index), info)
