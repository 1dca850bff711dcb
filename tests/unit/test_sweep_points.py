"""Multirun points: collisions refused before anything runs; overrides recorded per point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from interp.config import load_run_config
from interp.runs import RunIds, read_point_overrides
from slurm.submit import PointCollisionError, check_collisions, record_point

ROOT = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, **over: object) -> object:
    raw = {"name": "s", "out_dir": str(tmp_path), **over}
    return load_run_config(raw)


def test_points_differing_only_outside_the_run_id_collide(tmp_path: Path) -> None:
    a = _cfg(tmp_path, train={"kernels": "torch"})
    b = _cfg(tmp_path, train={"kernels": "auto"})
    c = _cfg(tmp_path, layer=3)
    assert RunIds.of(a).point == RunIds.of(b).point
    with pytest.raises(PointCollisionError, match=r"train\.kernels \('torch' vs 'auto'\)"):
        check_collisions([a, c, b], ["k=torch", "layer=3", "k=auto"])
    with pytest.raises(PointCollisionError, match="same point"):
        check_collisions([c, c])
    check_collisions([a, c])  # distinct points pass


def test_record_point_keeps_its_overrides(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, layer=3)
    over = {"overrides": ["layer=3", "sae=topk"], "multirun_dir": "x", "job_num": 1}
    root = record_point(cfg, over)
    assert read_point_overrides(root) == {RunIds.of(cfg).point: over}
    record_point(_cfg(tmp_path, layer=4))  # a point run without -m records none
    assert len(read_point_overrides(root)) == 1


def _sweep(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "launch/sweep.py", "-m", "experiment=tiny", f"out_dir={tmp_path}"]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )


def test_colliding_multirun_exits_before_recording_anything(tmp_path: Path) -> None:
    proc = _sweep(tmp_path, "train.kernels=torch,auto")
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "same run id" in proc.stderr and "train.kernels" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("tiny/points/*/config.json"))
    proc = _sweep(tmp_path, "layer=3,3")
    assert proc.returncode != 0 and "remove the repeated value" in proc.stderr, proc.stderr
    assert not list(tmp_path.glob("tiny/points/*/config.json"))


def test_serving_outside_slurm_is_refused_naming_the_fix(tmp_path: Path) -> None:
    from slurm.submit import check_serving

    cfg = _cfg(tmp_path, serve={"enabled": True}, llm={"backend": "http"})
    with pytest.raises(ValueError, match="cluster=local_slurm"):
        check_serving([cfg], {"executor": "local"})
    check_serving([cfg], {"executor": "slurm"})
    check_serving([_cfg(tmp_path)], {"executor": "local"})
