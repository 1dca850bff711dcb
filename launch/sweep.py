"""Plan and run (or submit) the pipeline for one config or a Hydra multirun.

python launch/sweep.py                       # the embedded default, on this machine
python launch/sweep.py experiment=tiny       # small and fast
python launch/sweep.py -m layer=9,15         # a sweep: one DAG per point, then gather
python launch/sweep.py -m layer=3,6 cluster=local_slurm   # submit to SLURM and return
python launch/sweep.py --help-fields         # every config key, documented
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(composed: DictConfig) -> None:
    from interp.config import load_run_config
    from slurm.status import SlurmError
    from slurm.submit import check_cluster, run_points
    from slurm.worker import setup_logging

    setup_logging()
    raw = OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
    cluster = raw.pop("cluster")
    try:
        cfg = load_run_config(raw)
        check_cluster(cluster)
    except ValueError as err:
        sys.exit(f"config error: {err}")
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        root = run_points([cfg], cluster, gather=not multirun)
    except SlurmError as err:
        sys.exit(f"not submitted: {err}")
    if cluster["executor"] == "slurm":
        print(f"\nsweep folder: {root}\n  submitted; progress: python launch/status.py {root}")
    else:
        print(f"\nsweep folder: {root}\n  table: {root / 'gather' / 'latents.parquet'}")


if __name__ == "__main__":
    if "--help-fields" in sys.argv:
        from interp.config import RunConfig, describe

        print("\n".join(describe(RunConfig)))
        sys.exit(0)
    main()
