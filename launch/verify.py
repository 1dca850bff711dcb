"""Check that a sweep's committed work is intact: every point's latent store decoded chunk
by chunk (checksums, missing shards, impossible values) and every committed interpret
record file against its manifest (size and sha256, or parsed for older manifests); a
note when the gather's outputs are stale (its last run failed or did not finish).

python launch/verify.py runs/tiny

Exits 1 if anything is damaged, naming each file, what to delete and which task to rerun.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="the sweep folder: <out_dir>/<name>")
    args = parser.parse_args()

    from interp.verify import verify_sweep

    root = args.sweep_dir.expanduser().resolve()
    try:
        report = verify_sweep(root)
    except ValueError as err:
        sys.exit(f"verify: {err}")
    for line in report.checked:
        print(line)
    for line in report.notes:
        print(f"note: {line}")
    for line in report.problems:
        print(f"DAMAGED: {line}" if not line.startswith("  ") else line)
    n = sum(not line.startswith("  ") for line in report.problems)
    verdict = "intact" if report.ok else f"{n} problem(s): delete what each names, rerun its task"
    print(f"\n{root}: {verdict}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
