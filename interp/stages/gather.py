"""gather: check the whole sweep is committed, then one table and a summary.

Reads only the run folder: every point's resolved config (``points/*/config.json``),
the stage manifests, the interpret records and the training summaries. If anything is
missing it names the stage and array indices and writes nothing final.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.models import hookpoint_width
from interp.plan import Task, pending, plan_point
from interp.report.table import flatten_record, format_summary, read_records, summarize
from interp.runs import (
    RunPaths,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    gather_dir,
    points_dir,
    read_manifest,
    read_points,
    short_hash,
)

log = logging.getLogger(__name__)


class IncompleteSweepError(RuntimeError):
    """Some array tasks of the sweep are not committed."""


def load_points(root: Path) -> list[RunConfig]:
    cfgs = read_points(root)
    if not cfgs:
        raise IncompleteSweepError(f"no sweep points under {points_dir(root)}")
    return cfgs


def check_complete(root: Path, cfgs: list[RunConfig]) -> list[str]:
    problems = []
    for cfg in cfgs:
        paths = RunPaths(root, cfg)
        for job in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)):
            todo = pending(job, paths)
            if todo:
                idx = ",".join(str(t.index) for t in todo)
                problems.append(
                    f"point {paths.ids.point} ({cfg.sae.sae_id}, layer {cfg.layer}): "
                    f"{job.stage} tasks {idx} of {len(job.tasks)} not committed"
                )
    return problems


def fingerprint(root: Path, cfgs: list[RunConfig]) -> str:
    """Changes whenever a point or an interpret commit changes."""
    parts = []
    for cfg in cfgs:
        paths = RunPaths(root, cfg)
        manifests = sorted(paths.manifest_dir("interpret").glob("*.json"))
        parts.append([paths.ids.point, [read_manifest(m) for m in manifests]])
    return short_hash(parts, 16)


def point_columns(root: Path, cfg: RunConfig) -> dict[str, Any]:
    paths = RunPaths(root, cfg)
    train = json.loads(paths.train_summary().read_text()) if paths.train_summary().exists() else {}
    return {
        "point": paths.ids.point,
        "model": cfg.model.name,
        "layer": cfg.layer,
        "hookpoint": cfg.hookpoint,
        "sae_id": cfg.sae.sae_id,
        "architecture": cfg.sae.architecture,
        "explainer_model": cfg.llm.model,
        "fvu": train.get("fvu"),
        "l0": train.get("l0"),
        "dead_pct": train.get("dead_pct"),
        "ce_increase": train.get("ce_increase"),
    }


def build_rows(root: Path, cfgs: list[RunConfig]) -> list[dict[str, Any]]:
    rows = []
    scorers = sorted({s for c in cfgs for s in c.scorer.names})
    for cfg in cfgs:
        paths = RunPaths(root, cfg)
        point = point_columns(root, cfg)
        for job in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)):
            if job.stage != "interpret":
                continue
            for task in job.tasks:
                records = list(read_records(paths.records_file(task.index)))
                expected = set(range(task.start, task.stop))
                got = {r["latent"] for r in records}
                assert got == expected, f"records of range {task.index} miss {expected - got}"
                rows.extend(flatten_record(r, point, scorers) for r in records)
    return rows


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buf)
    atomic_write_bytes(out, buf.getvalue())


def run(root: Path, task: Task, should_stop: Callable[[], bool]) -> None:
    cfgs = load_points(root)
    problems = check_complete(root, cfgs)
    if problems:
        raise IncompleteSweepError(
            "the sweep is not complete, nothing was gathered:\n  "
            + "\n  ".join(problems)
            + "\nrerun the sweep command: committed tasks are skipped, only these run"
        )
    out = gather_dir(root)
    stamp = fingerprint(root, cfgs)
    done = read_manifest(out / "manifest.json")
    scorers = sorted({s for c in cfgs for s in c.scorer.names})
    if done and done.get("fingerprint") == stamp:
        log.info("gather is up to date (%s)", out)
        print((out / "summary.txt").read_text(), flush=True)
        return
    rows = build_rows(root, cfgs)
    write_table(rows, out / "latents.parquet")
    groups = summarize(rows, scorers)
    atomic_write_json(out / "summary.json", groups)
    text = format_summary(groups, scorers)
    atomic_write_text(out / "summary.txt", text + "\n")
    atomic_write_json(out / "manifest.json", {"fingerprint": stamp, "n_rows": len(rows)})
    print(text, flush=True)
    log.info("gathered %d latent records from %d point(s) into %s", len(rows), len(cfgs), out)
