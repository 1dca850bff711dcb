"""Train stage: one task trains one point's SAE, or a group of points' SAEs from one LM
forward (:func:`run_group`); wiring only (see :mod:`interp.train`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from interp.config import RunConfig
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed
from interp.stages.context import StageContext

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> None:
    """Train, save and evaluate the SAE of the point (every member's, for a group job),
    then commit task ``ctx.task.index``'s manifest of each."""
    run_group(ctx.pairs(), ctx.task, ctx.should_stop)


def run_group(
    members: Sequence[tuple[RunConfig, RunPaths]], task: Task, should_stop: Callable[[], bool]
) -> None:
    """Train every member from one LM forward; commit each member's train manifest.

    Members already committed are still trained with the group when others are not
    (their result is the same; the group's state holds them all) but not re-committed.
    """
    pending = [m for m in members if not is_committed(m[1].manifest_file("train", task.index))]
    if not pending:
        log.info("train group task %d: every member already committed", task.index)
        return
    from interp.train import train_group  # torch-heavy; imported when the stage runs
    from interp.train.distributed import init_distributed

    cfgs = [c for c, _ in members]
    # ranks from torchrun / srun variables; a single process gets the no-op Dist
    dist = init_distributed(
        cfgs[0].train.dist,
        member_costs=[_cost(c) for c in cfgs],
        device=cfgs[0].model.device,
    )
    try:
        summaries = train_group(members, should_stop, dist=dist)
    finally:
        dist.close()
    if summaries is None:
        return  # stopped early: checkpointed, resumed by the requeued task
    for (cfg, paths), summary in zip(members, summaries):
        if summary is not None and not is_committed(paths.manifest_file("train", task.index)):
            _commit(cfg, paths, task.index, summary)


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
