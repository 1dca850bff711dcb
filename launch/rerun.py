"""Resubmit only what a sweep is missing: failed, cancelled or never-submitted array tasks
(token slices, latent ranges), with afterok on whatever is still queued, and a new gather.
Committed tasks are never redone; queued or running ones are left alone.

python launch/rerun.py runs/tiny
python launch/rerun.py runs/tiny stages.interpret.time_min=240   # with cluster changes
python launch/rerun.py runs/tiny --retry-errors  # also redo ranges with `error` latents
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder: <out_dir>/<name>")
    parser.add_argument(
        "overrides", nargs="*", help="changes to the recorded cluster profile, key=value"
    )
    parser.add_argument(
        "--retry-errors",
        action="store_true",
        help="first un-commit every interpret range with a latent whose status is `error` "
        "(its response cache keeps what succeeded); on a sweep that ran locally, then run "
        "the sweep command again",
    )
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from interp.runs import cluster_config_file
    from interp.sweep_lock import SweepBusyError
    from slurm.status import SlurmUnavailable
    from slurm.submit import reopen_errors, resubmit
    from slurm.worker import setup_logging

    setup_logging()
    root = args.sweep_dir.expanduser().resolve()
    recorded = cluster_config_file(root)
    if args.retry_errors:
        try:
            reopened = reopen_errors(root)
        except ValueError as err:
            sys.exit(f"rerun: {err}")
        print(f"reopened {len(reopened)} interpret range(s) with error records")
        if not recorded.exists():
            print(f"{root} ran locally: run its sweep command again to redo them")
            return
    if not recorded.exists():
        sys.exit(f"rerun: {root} was never submitted to SLURM (no {recorded})")
    cluster = OmegaConf.merge(
        json.loads(recorded.read_text()), OmegaConf.from_dotlist(args.overrides)
    )
    try:
        subs = resubmit(root, OmegaConf.to_container(cluster, resolve=True))
    except (ValueError, SlurmUnavailable, SweepBusyError) as err:
        sys.exit(f"rerun: {err}")
    print(f"\n{len(subs)} job(s) submitted for {root}")
    print(f"  progress: python launch/status.py {root}")


if __name__ == "__main__":
    main()
