"""Hydra callback: after a multirun has run (or submitted) every point, gather the sweep."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf


class GatherAfterMultirun(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from interp.config import load_run_config
        from interp.runs import RunPaths
        from slurm.submit import run_gather

        raw = OmegaConf.to_container(config, resolve=True)
        raw.pop("hydra", None)
        cluster = raw.pop("cluster")
        root = RunPaths.sweep_root(load_run_config(raw))
        run_gather(root, cluster)
