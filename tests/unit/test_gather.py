from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from interp.config import load_run_config, to_dict
from interp.plan import Task, plan_point
from interp.report.table import flatten_record, summarize
from interp.runs import RunPaths, atomic_write_json, commit_task
from interp.stages import gather

POINT = {"sae_id": "topk-x8-k32", "layer": 6}


def record(latent: int, status: str = "ok", acc: float = 0.75) -> dict:
    scores = (
        {"detection": {"balanced_accuracy": acc, "auroc": acc, "n": 16}} if status == "ok" else {}
    )
    return {"latent": latent, "status": status, "scores": scores, "tokens": {"prompt": 100}}


def test_rows_have_every_scorer_column_whatever_comes_first() -> None:
    failed = flatten_record(record(0, "explain_failed"), POINT, ["detection", "fuzzing"])
    ok = flatten_record(record(1), POINT, ["detection", "fuzzing"])
    assert failed.keys() == ok.keys()
    assert failed["detection_balanced_accuracy"] is None and ok["detection_auroc"] == 0.75
    assert ok["fuzzing_n"] is None


def test_summary_counts_failures_and_takes_medians() -> None:
    rows = [
        flatten_record(record(i, acc=a), POINT, ["detection"])
        for i, a in enumerate([0.5, 0.7, 0.9])
    ]
    rows.append(flatten_record(record(3, "too_rare"), POINT, ["detection"]))
    (group,) = summarize(rows, ["detection"])
    assert group["n_latents"] == 4 and group["n_ok"] == 3
    assert group["status_counts"] == {"ok": 3, "too_rare": 1}
    assert group["detection_balanced_accuracy_median"] == pytest.approx(0.7)
    lo, hi = group["detection_balanced_accuracy_ci95"]
    assert 0.5 <= lo <= 0.7 <= hi <= 0.9


def fake_point(tmp_path: Path, *, commit_all: bool) -> Path:
    cfg = load_run_config(
        {"out_dir": str(tmp_path), "name": "g", "interpret": {"num_latents": 4, "range_latents": 2}}
    )
    root = RunPaths.sweep_root(cfg)
    paths = RunPaths(root, cfg)
    atomic_write_json(paths.point_config(), to_dict(cfg))
    for job in plan_point(cfg, 576):
        for task in job.tasks:
            if job.stage == "interpret":
                if not commit_all and task.index == 1:
                    continue
                lines = [json.dumps(record(i)) for i in range(task.start, task.stop)]
                paths.records_file(task.index).parent.mkdir(parents=True, exist_ok=True)
                paths.records_file(task.index).write_text("\n".join(lines) + "\n")
            commit_task(paths.manifest_file(job.stage, task.index), {})
    return root


def test_gather_refuses_an_incomplete_sweep_and_names_the_tasks(tmp_path: Path) -> None:
    root = fake_point(tmp_path, commit_all=False)
    with pytest.raises(gather.IncompleteSweepError, match=r"interpret tasks 1 of 2 not committed"):
        gather.run(root, Task(0, 0, 1), lambda: False)
    assert not (root / "gather" / "latents.parquet").exists()


def test_gather_writes_one_row_per_latent_then_is_up_to_date(tmp_path: Path, capsys) -> None:
    root = fake_point(tmp_path, commit_all=True)
    gather.run(root, Task(0, 0, 1), lambda: False)
    table = pq.read_table(root / "gather" / "latents.parquet").to_pylist()
    assert [r["latent"] for r in table] == [0, 1, 2, 3]
    stamp = (root / "gather" / "latents.parquet").stat().st_mtime_ns
    gather.run(root, Task(0, 0, 1), lambda: False)
    assert (root / "gather" / "latents.parquet").stat().st_mtime_ns == stamp
