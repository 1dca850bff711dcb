"""Plan and run (or submit) the pipeline for one config or a Hydra multirun.

python launch/sweep.py                       # the embedded default, on this machine
python launch/sweep.py experiment=tiny       # small and fast
python launch/sweep.py -m layer=9,15         # a sweep: every point planned together, then gather
python launch/sweep.py -m layer=3,6 cluster=local_slurm   # submit to SLURM and return
python launch/sweep.py --help-fields         # every config key, documented

In a multirun each Hydra job only validates its point; the callback
``slurm.callbacks.RunSweep`` then checks every point (interp.preflight), records them and
plans them as one DAG (points that can share an LM forward train together) and runs or
submits it.
"""

from __future__ import annotations

import sys
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(composed: DictConfig) -> dict[str, Any] | None:
    from interp.config import to_dict
    from slurm.schema import resolve
    from slurm.submit import check_cluster, check_serving, run_and_report
    from slurm.worker import setup_logging

    setup_logging()
    try:
        cfg, cluster = resolve(composed)
        check_cluster(cluster)
        check_serving([cfg], cluster)
    except ValueError as err:
        sys.exit(f"config error: {err}")
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        # planned, checked for collisions, recorded and run with the other points by the
        # callback (slurm.callbacks.RunSweep)
        overrides = {
            "overrides": list(hydra_cfg.overrides.task),
            "multirun_dir": str(hydra_cfg.sweep.dir),
            "job_num": hydra_cfg.job.num,
        }
        return {"config": to_dict(cfg), "overrides": overrides}
    run_and_report([cfg], cluster)
    return None


if __name__ == "__main__":
    if "--help-fields" in sys.argv:
        from interp.config import RunConfig, describe

        print("\n".join(describe(RunConfig)))
        sys.exit(0)
    from slurm.schema import pasted_key_error, register_schema

    if error := pasted_key_error(sys.argv[1:]):
        sys.exit(error)
    register_schema()  # every documented key, so conf/config.yaml's defaults can list it
    main()
