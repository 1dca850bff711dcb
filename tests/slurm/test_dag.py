"""The cluster layer against the real local SLURM, with stand-in stages (seconds per test):
DAG submission and resume, failures, scancel, USR2 requeue, bad resources, the sweep command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import (
    ROOT,
    WORKER,
    all_done,
    cancel_sweep,
    cluster,
    counts,
    fake_plan,
    fake_points,
    sacct_state,
    slurm_id_of,
    squeue_state,
    status_text,
    submissions,
    sweep_root,
    table,
    wait_for,
)

from slurm.slurm_executor import submit_plan

pytestmark = pytest.mark.timeout(600)  # a hang fails the test; it never blocks CI


@pytest.fixture(scope="module")
def reference_table(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    """The same fake sweep run in-process by the local executor."""
    import fake_stages

    import slurm.local

    out = tmp_path_factory.mktemp("local")
    cfgs = fake_points(out)
    plan, by_point = fake_plan(cfgs)
    real = slurm.local.execute
    slurm.local.execute = fake_stages.fake_execute
    try:
        slurm.local.run_plan(plan, by_point, sweep_root(out), {"executor": "inprocess"})
    finally:
        slurm.local.execute = real
    return table(sweep_root(out))


def submit(out: Path, **changes) -> tuple[Path, list]:
    plan, by_point = fake_plan(fake_points(out))
    root = sweep_root(out)
    return root, submit_plan(plan, by_point, root, cluster(**changes))


def mark(root: Path, kind: str, stage: str, index: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    marker = root / f"{kind}-{stage}-{index}"
    marker.touch()
    return marker


def rerun(root: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "launch/rerun.py", str(root)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def manifests(root: Path) -> dict[Path, tuple[str, int]]:
    return {m: (m.read_text(), m.stat().st_mtime_ns) for m in root.rglob("manifest/*/*.json")}


def test_dag_completes_through_slurm_and_equals_a_local_run(tmp_path, reference_table) -> None:
    root, subs = submit(tmp_path)
    collect = submissions(root, "collect")
    # both points collect from one forward per slice: one group job of 4 slices,
    # split in two arrays by MaxArraySize 3
    assert [len(s.tasks) for s in collect] == [2, 2]
    (gather,) = submissions(root, "gather")
    interpret_ids = {s.job_id for s in submissions(root, "interpret")}
    assert set(gather.dependency.removeprefix("afterok:").split(":")) == interpret_ids
    wait_for(lambda: all_done(root), 300, "the sweep to finish")
    assert table(root) == reference_table
    assert {sacct_state(i) for s in subs for i in s.slurm_ids()} == {"COMPLETED"}

    plan, by_point = fake_plan(fake_points(tmp_path))
    assert submit_plan(plan, by_point, root, cluster()) == []  # all committed, gathered


def test_submitting_again_while_queued_submits_nothing(tmp_path) -> None:
    hold = mark(sweep_root(tmp_path), "hold", "train", 0)
    root, first = submit(tmp_path)
    try:
        _, again = submit(tmp_path)
        assert again == []
        # train group + collect group (4 slices) + per point compact and interpret + gather
        assert counts(root)["queued"] + counts(root)["running"] == 1 + 4 + 2 * (4 + 4) + 1
    finally:
        hold.unlink()
        cancel_sweep(root)


def test_a_failed_task_blocks_gather_and_rerun_alone_completes_it(tmp_path, reference_table):
    fail = mark(sweep_root(tmp_path), "fail", "collect", 1)
    root, _ = submit(tmp_path)
    failed = slurm_id_of(root, "collect", 1)
    wait_for(lambda: counts(root)["failed"] == 1, 300, "collect group task 1 to fail")
    wait_for(lambda: sacct_state(failed) == "FAILED", 30, "sacct to record FAILED")
    text = status_text(root)
    assert "FAILED" in text and "wait on a failed dependency" in text, text
    assert not (root / "gather" / "table.json").exists()  # no final result while a task fails
    before = manifests(root)

    fail.unlink()
    proc = rerun(root)  # returns once submitted (rerun() has a timeout), never waits for jobs
    assert "collect" in proc.stderr and "cancelled" in proc.stderr
    wait_for(lambda: all_done(root), 300, "the rerun to finish")
    after = manifests(root)
    assert {m: after[m] for m in before} == before  # committed work untouched
    assert table(root) == reference_table


def test_scancel_is_reported_promptly_and_rerun_completes_it(tmp_path, reference_table) -> None:
    hold = mark(sweep_root(tmp_path), "hold", "interpret", 0)
    root, _ = submit(tmp_path)
    target = slurm_id_of(root, "interpret", 0)
    wait_for(lambda: squeue_state(target) == "RUNNING", 300, f"{target} to run")
    subprocess.run(["scancel", target], check=True)
    wait_for(lambda: counts(root)["failed"] == 1, 60, "the cancel to show in status")
    wait_for(lambda: "CANCELLED" in sacct_state(target), 30, "sacct to record CANCELLED")
    assert "CANCELLED" in status_text(root)

    hold.unlink()
    rerun(root)
    wait_for(lambda: all_done(root), 300, "the rerun to finish")
    assert table(root) == reference_table


def test_usr2_checkpoints_requeues_and_resumes(tmp_path) -> None:
    hold = mark(sweep_root(tmp_path), "hold", "collect", 0)
    root, _ = submit(tmp_path)
    target = slurm_id_of(root, "collect", 0)
    wait_for(lambda: squeue_state(target) == "RUNNING", 300, f"{target} to run")
    log = next((root / "slurm" / "logs").glob(f"collect-*/{target}_0_log.err"))
    # a real limit signals minutes in; before python has its handlers USR2 would kill it
    wait_for(lambda: "collect task 0" in log.read_text(), 60, "the stage to start")
    subprocess.run(["scancel", "--signal=USR2", target], check=True)  # as at a time limit
    wait_for(lambda: "Requeued job" in log.read_text(), 60, "submitit to requeue the task")
    wait_for(lambda: squeue_state(target) == "RUNNING", 120, "the requeued task to restart")
    hold.unlink()
    wait_for(lambda: all_done(root), 300, "the sweep to finish")
    assert sacct_state(target) == "COMPLETED"
    assert log.with_suffix(".out").read_text().count("Starting with JobEnvironment") == 2


def test_resources_slurm_rejects_fail_before_anything_is_submitted(tmp_path) -> None:
    plan, by_point = fake_plan(fake_points(tmp_path))
    root = sweep_root(tmp_path)
    for bad, message in [
        ({"partition": "nosuch"}, "invalid partition"),
        ({"gres": "gpu:1"}, "gres"),
    ]:
        raw = cluster()
        raw["stages"] = {"interpret": bad}
        with pytest.raises(ValueError, match="SLURM rejects the interpret jobs") as err:
            submit_plan(plan, by_point, root, raw)
        assert message in str(err.value).lower()
    assert not (root / "slurm" / "jobs").exists()


def test_the_sweep_command_submits_every_point_then_one_gather(tmp_path) -> None:
    cmd = [
        sys.executable,
        "launch/sweep.py",
        "-m",
        "name=cmd",
        f"out_dir={tmp_path}",
        "layer=3,6",
        "cluster=local_slurm",
        f"+cluster.worker={WORKER}",
        "cluster.max_array_size=2",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    root = tmp_path / "cmd"
    assert f"sweep folder: {root}" in proc.stdout
    (gather,) = submissions(root, "gather")
    interpret = {s.job_id for s in submissions(root, "interpret")}
    assert len(interpret) == 2  # 2 interpret ranges per point, one array each
    assert set(gather.dependency.removeprefix("afterok:").split(":")) == interpret
    assert f"gather: job {gather.job_id}" in proc.stdout + proc.stderr
    wait_for(lambda: all_done(root), 300, "the sweep to finish")

    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-4000:]
    logs = again.stdout + again.stderr  # the gather callback logs through Hydra's stdout
    assert logs.count("submitted 0 job(s)") == 1, logs[-4000:]  # the whole sweep at once


def test_bring_up_leaves_a_controller_that_answers(local_slurm: float) -> None:
    assert os.path.exists("/run/slurmctld.pid")
    proc = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.split()[0] in {"idle", "mixed", "allocated"}
