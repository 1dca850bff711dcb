"""Progress of a sweep: per point and stage, how many array tasks are done, running, queued,
failed or missing (from the committed manifests, squeue and sacct), then what needs a rerun.

python launch/status.py runs/tiny            # one look
python launch/status.py runs/tiny --watch 10 # refresh every 10 s until nothing is in flight
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder: <out_dir>/<name>")
    parser.add_argument("--watch", type=float, default=0, help="refresh every N seconds")
    args = parser.parse_args()

    from slurm.status import SlurmUnavailable, format_status, summary, sweep_status
    from slurm.submit import load_sweep

    root = args.sweep_dir.expanduser().resolve()
    try:
        plan, cfgs = load_sweep(root)
        while True:
            rows = sweep_status(root, plan, list(cfgs.values()))
            print(format_status(root, rows), flush=True)
            totals = summary(rows)
            if not args.watch or totals["running"] + totals["queued"] == 0:
                break
            time.sleep(args.watch)
            print()
    except (ValueError, SlurmUnavailable) as err:
        sys.exit(f"status: {err}")
    sys.exit(1 if totals["failed"] else 0)


if __name__ == "__main__":
    main()
