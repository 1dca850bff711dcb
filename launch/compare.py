"""Compare sweeps: tables and plots of several multiruns, points lined up by their overrides.

python launch/compare.py runs/demo                          # one sweep folder's report
python launch/compare.py runs/a runs/b --out compare/ab     # two sweeps side by side
python launch/compare.py runs/demo/.hydra/multirun-*        # each multirun of one sweep
python launch/compare.py runs/demo --no-dashboards          # skip latent pages (no model load)

Writes <out>/index.html with its images beside it (img/); open it in a browser.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "inputs", nargs="+", type=Path, help="sweep folders or Hydra multirun folders"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("compare"), help="report folder (replaced)"
    )
    parser.add_argument("--no-dashboards", action="store_true", help="one input: skip latent pages")
    parser.add_argument(
        "--top", type=int, default=20, help="best-scored latents with a page, per point"
    )
    parser.add_argument("--bottom", type=int, default=20, help="worst-scored latents with a page")
    parser.add_argument("--sample", type=int, default=20, help="random other latents with a page")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    from interp.report.dashboard import DashboardConfig
    from interp.report.html import ReportConfig, compare, write_report

    try:
        dash = DashboardConfig(top_n=args.top, bottom_n=args.bottom, sample_n=args.sample)
        cfg = ReportConfig(dashboards=dash, build_dashboards=not args.no_dashboards)
        if len(args.inputs) == 1 and (args.inputs[0] / "points").is_dir():
            page = write_report(args.inputs[0], args.out, cfg)
        else:
            page = compare(args.inputs, args.out, cfg)
    except ValueError as err:
        sys.exit(f"compare: {err}")
    print(f"report: {page.resolve()}")


if __name__ == "__main__":
    main()
