"""Hydra callback: a multirun's points are planned and run (or submitted) as one sweep.

Each Hydra job of the multirun only validates its point and returns its resolved config;
:class:`RunSweep` collects them and, once every job has returned, checks every point
(nothing is recorded unless all pass: slurm.submit.run_points), records and plans all
points together - so points that can share an LM forward train in one job, shared
stages run once - then runs the DAG here or submits it to SLURM, gather included.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

log = logging.getLogger("interp.sweep")


class RunSweep(Callback):
    def __init__(self) -> None:
        self.points: list[dict[str, Any]] = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if job_return.status == JobStatus.COMPLETED and job_return.return_value:
            self.points.append(job_return.return_value)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from interp.config import load_run_config
        from slurm.submit import run_and_report

        if not self.points:
            sys.exit("no sweep point was recorded: nothing to run")
        config = config.copy()
        with open_dict(config):
            del config["hydra"]  # holds per-job interpolations (hydra.job.num) unset here
        cluster = OmegaConf.to_container(config, resolve=True)["cluster"]
        try:
            run_and_report(
                [load_run_config(p["config"]) for p in self.points],
                cluster,
                [p["overrides"] for p in self.points],
            )
        except Exception as err:  # Hydra only warns about a callback's exception: exit 1
            log.exception("the sweep failed")
            sys.exit(f"sweep failed: {err}")
