from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from interp.config import load_run_config, to_dict
from interp.gather import outputs
from interp.plan import Task, plan_point
from interp.report import summary as summ
from interp.report.export import write_exports
from interp.report.table import TableWriter, read_record_file, with_point_columns
from interp.runs import (
    RunPaths,
    atomic_write_bytes,
    atomic_write_json,
    cluster_config_file,
    commit_task,
    gather_manifest,
)
from interp.stages import gather
from interp.stages.context import StageContext
from interp.verify import records_digest
from slurm.status import job_status
from slurm.submit import load_sweep


def metrics(acc: float, n: int = 4) -> dict:
    return {
        "balanced_accuracy": acc,
        "auroc": acc,
        "n": n,
        "per_quantile": [
            {"quantile": 0, "n": n // 2, "accuracy": acc},
            {"quantile": -1, "n": n // 2, "accuracy": acc},
        ],
    }


def write_records(path: Path, records: list[dict]) -> dict:
    """Hand-written record shapes as JSON lines (older files and partial records too: the
    table reader must take every shape), with the digest the interpret manifest holds."""
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    atomic_write_bytes(path, data)
    return records_digest(data, len(records))


def record(latent: int, status: str = "ok", acc: float = 0.75, **extra) -> dict:
    ok = status == "ok"
    return {
        "latent": latent,
        "status": status,
        "explanation": f"latent {latent} explained" if ok else None,
        "scores": {"detection": metrics(acc)} if ok else {},
        "tokens": {"prompt": 100, "completion": 10, "prompt_computed": 50},
        "wall_s": 1.5,
        "error": None if ok or status == "too_rare" else "boom",
        **extra,
    }


# ----------------------------------------------------------------------------- table


def test_record_files_with_different_columns_merge_into_one_schema(tmp_path: Path) -> None:
    """A later range adds a scorer, a control and a new field; an earlier one has only
    failures with no error text. Every row gets every column, missing ones null."""
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(a, [record(0, "too_rare", control=None), record(1, "too_rare", control=None)])
    control = {"explanation": "other", "source_latent": 0, "scores": {"detection": metrics(0.5)}}
    write_records(
        b,
        [
            record(2, control=control, retries=1),
            record(3, acc=1, scores={"detection": metrics(1), "fuzzing": {"auroc": 0.6}}),
        ],
    )
    writer = TableWriter(tmp_path / "parts", rows_per_group=2)
    for path, (start, stop) in ((a, (0, 2)), (b, (2, 4))):
        table = read_record_file(path, start, stop)
        writer.add(with_point_columns(table, {"point": "p", "layer": 6, "sae_id": "topk"}))
    writer.commit(tmp_path / "t.parquet")
    assert not (tmp_path / "parts").exists()
    pf = pq.ParquetFile(tmp_path / "t.parquet")
    assert pf.metadata.num_row_groups == 2
    rows = pf.read().to_pylist()
    assert [r["latent"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["scores.detection.balanced_accuracy"] is None
    assert rows[2]["control.detection.balanced_accuracy"] == 0.5
    assert rows[2]["control.explanation"] == "other" and rows[3]["control.explanation"] is None
    assert rows[3]["scores.fuzzing.auroc"] == 0.6 and rows[2]["scores.fuzzing.auroc"] is None
    assert rows[3]["scores.detection.balanced_accuracy"] == 1.0  # int widened to float
    assert rows[2]["retries"] == 1 and rows[0]["retries"] is None
    assert rows[1]["layer"] == 6 and rows[1]["prompt_tokens"] == 100
    assert rows[2]["scores.detection.per_quantile"][0] == {"quantile": 0, "n": 2, "accuracy": 0.75}
    assert pf.schema_arrow.names[:3] == ["point", "model", "layer"]
    assert "control" not in pf.schema_arrow.names  # null in file a, an object in file b


def test_a_record_file_missing_a_latent_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    write_records(path, [record(0), record(2)])
    with pytest.raises(
        ValueError, match=r"r.jsonl: 2 records for latent range \[0, 3\) \(missing 1"
    ):
        read_record_file(path, 0, 3)
    path.write_text('{"latent": 0, "status": "ok"}\n{"latent": 1, "sta')
    with pytest.raises(ValueError, match="cannot be read as JSON lines"):
        read_record_file(path, 0, 2)


# ----------------------------------------------------------------------------- intervals


def test_index_ranges_compress_like_sbatch_arrays() -> None:
    assert gather.index_ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    assert gather.index_ranges([3]) == "3"


def test_large_sample_intervals_match_scipy_bootstrap() -> None:
    """Above EXACT_N the intervals come from the bootstrap's limit; at a size where scipy
    is still affordable both must agree to within the resampling noise."""
    from scipy.stats import bootstrap

    rng = np.random.default_rng(0)
    v = np.round(rng.beta(6, 2, size=4001), 2)  # discrete, like balanced accuracies
    lo, hi = summ.median_ci(v)
    ref = bootstrap((v,), np.median, n_resamples=2000, method="percentile", random_state=1)
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.011)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.011)
    assert lo <= np.median(v) <= hi
    lo, hi = summ.mean_ci(v)
    ref = bootstrap((v,), np.mean, n_resamples=2000, method="percentile", random_state=1)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.1 * width)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.1 * width)


def test_distribution_drops_missing_values() -> None:
    d = summ.distribution(np.array([0.5, np.nan, 0.7, 0.9]))
    assert d["n"] == 3 and d["median"] == pytest.approx(0.7)
    lo, hi = d["median_ci95"]
    assert 0.5 <= lo <= 0.7 <= hi <= 0.9
    assert sum(d["hist"]["counts"]) == 3 and d["hist"]["edges"][0] == 0.0
    assert summ.distribution(np.array([np.nan])) == {"n": 0}


def _brief_of(tmp_path: Path, real: list[float], control: list[float]) -> list[str]:
    from interp.report.brief import format_brief

    records = [
        record(i, acc=r, control={"explanation": "x", "scores": {"detection": metrics(c)}})
        for i, (r, c) in enumerate(zip(real, control))
    ] + [record(len(real), "too_rare")]
    write_records(tmp_path / "r.jsonl", records)
    writer = TableWriter(tmp_path / "parts")
    point = {"point": "p", "layer": 6, "sae_id": "topk", "architecture": "topk"}
    table = read_record_file(tmp_path / "r.jsonl", 0, len(records))
    writer.add(with_point_columns(table, point))
    writer.commit(tmp_path / "t.parquet")
    meta = {**point, "hookpoint": "layers.6", "fvu": 0.25, "l0": 16.0}
    return format_brief(summ.summarize(tmp_path / "t.parquet", [meta]))


def test_the_brief_says_what_was_found_and_whether_it_is_noise(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    real = list(0.8 + 0.05 * rng.standard_normal(20))
    lines = _brief_of(tmp_path / "a", real, list(0.5 + 0.05 * rng.standard_normal(20)))
    assert lines[0] == (
        "topk topk @ layers.6: 20/21 latents explained and scored (not: 1 too_rare); "
        "FVU 0.250, L0 16.0"
    )
    (det,) = [line for line in lines if "detection balanced_accuracy" in line]
    assert f"median {np.median(real):.3f}" in det and det.endswith("(interval above 0)")
    same = list(0.6 + 0.05 * rng.standard_normal(20))
    lines = _brief_of(tmp_path / "b", same, [v + 0.01 * (-1) ** i for i, v in enumerate(same)])
    (det,) = [line for line in lines if "detection balanced_accuracy" in line]
    assert det.endswith("(within noise)")


# ----------------------------------------------------------------------------- the stage


def fake_point(tmp_path: Path, *, commit_all: bool, layer: int = 15, digest: bool = True) -> Path:
    """A point with every task committed (but interpret task 1 unless ``commit_all``);
    ``digest=False`` commits interpret manifests as before they held the records' digest."""
    cfg = load_run_config(
        {
            "out_dir": str(tmp_path),
            "name": "g",
            "layer": layer,
            "interpret": {"num_latents": 4, "range_latents": 2},
        }
    )
    root = RunPaths.sweep_root(cfg)
    paths = RunPaths(root, cfg)
    atomic_write_json(paths.point_config(), to_dict(cfg))
    atomic_write_json(paths.train_summary(), {"fvu": 0.2, "l0": 32.0, "dead_pct": 1.5})
    for job in plan_point(cfg, 576):
        for task in job.tasks:
            info = {}
            if job.stage == "interpret":
                if not commit_all and task.index == 1:
                    continue
                accs = [0.5, 0.7, 0.9, 1.0]
                recs = [
                    record(i, acc=accs[i], control={"scores": {"detection": metrics(0.5)}})
                    if i != 3 or layer != 15
                    else record(i, "explain_failed")
                    for i in range(task.start, task.stop)
                ]
                info = write_records(paths.records_file(task.index), recs)
            records = {"records": info} if info and digest else {}
            commit_task(paths.manifest_file(job.stage, task.index), records)
    return root


def test_gather_refuses_an_incomplete_sweep_and_names_the_tasks(tmp_path: Path) -> None:
    root = fake_point(tmp_path, commit_all=False)
    (cfg,) = gather.load_points(root)
    paths = RunPaths(root, cfg)
    atomic_write_json(paths.point_overrides(), {"overrides": ["experiment=tiny", "layer=15"]})
    with pytest.raises(gather.IncompleteSweepError) as err:
        gather.run(StageContext(root, Task(0, 0, 1)))
    msg = str(err.value)
    assert "layer 15): interpret tasks 1 of 2 not committed" in msg
    # run on this machine: the command that recorded the point, never SLURM's rerun.py
    assert "launch/rerun.py" not in msg
    assert "\n  python launch/sweep.py experiment=tiny layer=15\n" in msg
    assert msg.endswith(f"rm -r {paths.point_dir()}")  # how to drop the stale point
    assert not (root / "gather").exists()
    atomic_write_json(cluster_config_file(root), {"executor": "slurm"})  # a SLURM sweep
    with pytest.raises(gather.IncompleteSweepError) as err:
        gather.run(StageContext(root, Task(0, 0, 1)))
    assert f"python launch/rerun.py {root}" in str(err.value)
    assert str(err.value).endswith(f"rm -r {paths.point_dir()}")


def test_dropping_the_stale_point_as_the_message_says_lets_gather_run(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(outputs, "AFTER_TABLE", ())
    root = fake_point(tmp_path, commit_all=True)
    stale = fake_point(tmp_path, commit_all=False, layer=9)  # e.g. an abandoned command's
    with pytest.raises(gather.IncompleteSweepError) as err:
        gather.run(StageContext(root, Task(0, 0, 1)))
    assert stale == root
    drop = str(err.value).rsplit("\n", 1)[1].strip()
    assert drop.startswith("rm -r ") and "/points/" in drop
    subprocess.run(drop, shell=True, check=True)
    gather.run(StageContext(root, Task(0, 0, 1)))
    assert json.loads(gather_manifest(root).read_text())["n_rows"] == 4


def test_a_committed_range_without_its_records_is_incomplete(tmp_path: Path) -> None:
    root = fake_point(tmp_path, commit_all=True)
    (cfg,) = gather.load_points(root)
    RunPaths(root, cfg).records_file(0).unlink()
    assert gather.check_complete(root, [cfg]) == []  # the manifests alone are complete
    (problem,) = gather.check_complete(root, [cfg], records=True)
    paths = RunPaths(root, cfg)
    assert problem.startswith(
        f"point {paths.ids.point} (topk-x8-k32, layer 15): {paths.records_file(0)} is gone "
        "but its range is committed"
    )
    assert f"delete {paths.manifest_file('interpret', 0)}, then rerun interpret task 0" in problem
    with pytest.raises(gather.IncompleteSweepError, match="is gone but its range is committed"):
        gather.gather(root)


@pytest.mark.parametrize("digest", [True, False], ids=["digest", "manifest-before-digest"])
def test_a_truncated_record_file_after_gather_is_noticed(
    tmp_path: Path, monkeypatch, digest: bool
) -> None:
    """The gather is not 'up to date' once a record file changed, even though every
    manifest is as it was: it is redone, finds the file, names it and writes nothing."""
    monkeypatch.setattr(outputs, "AFTER_TABLE", ())
    root = fake_point(tmp_path, commit_all=True, digest=digest)
    gather.run(StageContext(root, Task(0, 0, 1)))
    stamp = (root / "gather" / "latents.parquet").stat().st_mtime_ns
    (cfg,) = gather.load_points(root)
    file = RunPaths(root, cfg).records_file(1)
    lines = file.read_text().splitlines(keepends=True)
    file.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # cut mid-record
    with pytest.raises(gather.IncompleteSweepError) as err:
        gather.run(StageContext(root, Task(0, 0, 1)))
    assert str(file) in str(err.value) and "rerun interpret task 1" in str(err.value)
    assert (root / "gather" / "latents.parquet").stat().st_mtime_ns == stamp  # nothing written
    if digest:  # the same length with a changed byte: only the sha256 tells
        file.write_text("".join(lines).replace('"ok"', '"OK"', 1))
        (problem,) = gather.check_complete(root, [cfg], records=True)
        assert "changed since it was committed" in problem


def test_gather_writes_table_summary_exports_then_is_up_to_date(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(outputs, "AFTER_TABLE", ())  # fake points have no dictionaries to align
    root = fake_point(tmp_path, commit_all=True)
    fake_point(tmp_path, commit_all=True, layer=9)  # a second point of the same sweep
    gather.run(StageContext(root, Task(0, 0, 1)))
    out = root / "gather"
    table = pq.read_table(out / "latents.parquet").to_pylist()
    assert sorted((r["layer"], r["latent"]) for r in table) == [
        (layer, i) for layer in (9, 15) for i in range(4)
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert [p["layer"] for p in summary["points"]] == [9, 15]
    p15 = summary["points"][1]
    assert p15["status_counts"] == {"explain_failed": 1, "ok": 3}
    assert p15["dictionary"] == {"fvu": 0.2, "l0": 32.0, "dead_pct": 1.5, "ce_increase": None}
    det = p15["scores"]["detection"]["balanced_accuracy"]
    assert det["n"] == 3 and det["median"] == pytest.approx(0.7)
    diff = p15["real_vs_control"]["detection"]["balanced_accuracy"]
    assert diff["n_pairs"] == 3 and diff["mean_diff"] == pytest.approx(0.2)
    assert p15["cost"]["prompt_tokens"]["per_latent_mean"] == 100
    assert "| detection | balanced_accuracy | 3 | 0.700" in (out / "summary.md").read_text()
    assert (out / "export" / "index.json").is_file()
    stamp = (out / "latents.parquet").stat().st_mtime_ns
    gather.run(StageContext(root, Task(0, 0, 1)))
    assert (out / "latents.parquet").stat().st_mtime_ns == stamp
    assert json.loads(gather_manifest(root).read_text())["n_rows"] == 8


def test_after_table_hooks_get_the_sweep_root(tmp_path: Path, monkeypatch) -> None:
    root = fake_point(tmp_path, commit_all=True)
    seen: list[Path] = []
    monkeypatch.setitem(sys.modules, "fake_report", types.SimpleNamespace(build=seen.append))
    monkeypatch.setattr(outputs, "AFTER_TABLE", ("fake_report:build",))
    gather.gather(root, exports=())
    assert seen == [root] and gather_manifest(root).is_file()


def _fail_exports(*args, **kwargs) -> None:
    raise OSError("No space left on device\nwhile writing export/delphi")


def _fail_report(root: Path) -> None:
    raise RuntimeError("the report could not be drawn")


@pytest.mark.parametrize("step", ["export", "hook"])
def test_a_failed_regather_says_its_outputs_are_stale_until_one_succeeds(
    tmp_path: Path, monkeypatch, step: str
) -> None:
    from interp.report.brief import brief_from_folder
    from interp.report.gather_state import stale_lines

    monkeypatch.setattr(outputs, "AFTER_TABLE", ())
    root = fake_point(tmp_path, commit_all=True)
    gather.gather(root)
    (root / "gather" / "report").mkdir()  # what an earlier gather's HTML report left
    if step == "export":
        monkeypatch.setattr(outputs, "write_exports", _fail_exports)
    else:
        monkeypatch.setitem(sys.modules, "fake_report", types.SimpleNamespace(build=_fail_report))
        monkeypatch.setattr(outputs, "AFTER_TABLE", ("fake_report:build",))
    with pytest.raises((OSError, RuntimeError)):
        gather.gather(root)  # a re-gather (e.g. after a range was redone)
    failed = json.loads((root / "gather" / "FAILED.json").read_text())
    assert not gather_manifest(root).exists()
    if step == "export":
        assert failed["failed_in"] == "exports"
        assert failed["error"] == "OSError: No space left on device"
        assert failed["rewritten_by_the_failed_gather"] == [
            "latents.parquet", "summary.json", "summary.md",
        ]  # fmt: skip
        assert failed["from_an_earlier_gather_or_partly_written"] == ["export", "report"]
    else:
        assert failed["failed_in"] == "fake_report:build"
        assert failed["error"] == "RuntimeError: the report could not be drawn"
        assert failed["from_an_earlier_gather_or_partly_written"] == ["report"]
    brief = brief_from_folder(root)
    assert brief[0].startswith("GATHER FAILED at ") and f"in {failed['failed_in']}: " in brief[0]
    assert "are stale" in brief[1] and "the last summary that was written (stale):" in brief
    assert stale_lines(root) == brief[:3]
    plan, cfgs = load_sweep(root)  # launch/status.py: the gather row needs attention
    (job,) = [j for j in plan.jobs if j.stage == "gather"]
    assert job_status(root, job, cfgs, {}, {}, current=False).problems == brief[:3]
    # the cause fixed, the next gather clears the mark and commits
    monkeypatch.setattr(outputs, "write_exports", write_exports)
    monkeypatch.setattr(outputs, "AFTER_TABLE", ())
    gather.run(StageContext(root, Task(0, 0, 1)))
    assert not (root / "gather" / "FAILED.json").exists() and gather_manifest(root).is_file()
    assert stale_lines(root) == [] and not brief_from_folder(root)[0].startswith("GATHER")


def test_outputs_without_a_manifest_read_as_an_unfinished_gather(
    tmp_path: Path, monkeypatch
) -> None:
    from interp.report.brief import brief_from_folder

    monkeypatch.setattr(outputs, "AFTER_TABLE", ())
    root = fake_point(tmp_path, commit_all=True)
    gather.gather(root)
    gather_manifest(root).unlink()  # as a gather killed midway leaves the folder
    assert brief_from_folder(root)[0].startswith("GATHER NOT FINISHED: ")
