"""One module per stage, each exposing ``run(cfg, paths, task, should_stop)``.

Stages are wiring only: they read what earlier stages committed through
:class:`interp.runs.RunPaths`, call the library, and commit their outputs atomically.
``should_stop()`` turns true when the cluster wants the task to stop (preemption, time
limit): a stage checks it at safe points and returns early, uncommitted.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.config import load_run_config
from interp.plan import Task
from interp.runs import RunPaths


def never_stop() -> bool:
    return False


def run_task(
    stage: str,
    cfg_dict: dict[str, Any] | None,
    root: str | Path,
    task: Task,
    should_stop: Callable[[], bool] = never_stop,
) -> None:
    """Entry point for every executor (in-process, submitit local, SLURM).

    ``cfg_dict`` is the point's resolved config as a plain dict (picklable, and the
    same dict that is saved in the run folder); ``None`` for the sweep-level gather;
    ``{"members": [config, ...]}`` for a train or collect group (several points'
    dictionaries served by one LM forward, see :data:`interp.plan.GROUP_KEYS`).
    """
    module = importlib.import_module(f"interp.stages.{stage}")
    root = Path(root)
    if stage == "gather":
        module.run(root, task, should_stop)
        return
    assert cfg_dict is not None, f"stage {stage} needs its point's config"
    if "members" in cfg_dict:
        assert stage in ("train", "collect"), f"{stage} tasks have no group form"
        members = [load_run_config(d) for d in cfg_dict["members"]]
        module.run_group([(c, RunPaths(root, c)) for c in members], task, should_stop)
        return
    cfg = load_run_config(cfg_dict)
    module.run(cfg, RunPaths(root, cfg), task, should_stop)
