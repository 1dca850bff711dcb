"""Hydra callback: after a multirun has run (or submitted) every point, gather the sweep.

On SLURM the points' DAGs are only submitted by then; the gather is submitted as one job
that waits (afterok) on every point's interpret jobs, found in the run folder.
"""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict


class GatherAfterMultirun(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from interp.config import load_run_config
        from interp.runs import RunPaths
        from slurm.submit import run_gather

        config = config.copy()
        with open_dict(config):
            del config["hydra"]  # holds per-job interpolations (hydra.job.num) unset here
        raw = OmegaConf.to_container(config, resolve=True)
        cluster = raw.pop("cluster")
        root = RunPaths.sweep_root(load_run_config(raw))
        run_gather(root, cluster)
