"""Train stage: one task trains the point's SAE; wiring only (see :mod:`interp.train`)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from interp.config import RunConfig
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed

log = logging.getLogger(__name__)


def run(cfg: RunConfig, paths: RunPaths, task: Task, should_stop: Callable[[], bool]) -> None:
    """Train, save and evaluate the SAE, then commit task ``task.index``'s manifest."""
    manifest = paths.manifest_file("train", task.index)
    if is_committed(manifest):
        log.info("train task %d already committed: nothing to do", task.index)
        return
    from interp.train import train_sae  # torch-heavy; imported when the stage runs

    summary = train_sae(cfg, paths, should_stop, checkpoint_every=cfg.train.checkpoint_every)
    if summary is None:
        return  # stopped early: checkpointed, resumed by the requeued task
    commit_task(
        manifest,
        {
            "stage": "train",
            "task": task.index,
            "hookpoint": cfg.hookpoint,
            "sae_id": cfg.sae.sae_id,
            "sae_dir": str(paths.sae_dir().relative_to(paths.root)),
            "summary": summary,
        },
    )
