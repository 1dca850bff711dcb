"""Interpreting dictionaries someone else trained, end to end through the user's command
(submitit's local executor): ``experiment=pretrained_demo`` (a sparsify-layout checkpoint
on the tiny model, the fast test LLM), and the issue's check (tests/pretrained_sweep.py):
two pretrained checkpoints (sparsify, SAELens) and one trained point in one sweep."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pretrained_sweep import MIXED, ROOT, SOURCES, SPARSIFY, check_alignment, check_sweep

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def sweep(out_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "launch/sweep.py", *args, f"out_dir={out_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def test_the_preset_interprets_a_sparsify_checkpoint(tmp_path: Path) -> None:
    proc = sweep(tmp_path, "experiment=pretrained_demo")
    root = tmp_path / "pretrained_demo"
    check_sweep(root, root / ".submitit", {str(SPARSIFY): "sparsify"})
    (src,) = (root / "pretrained").glob("*/source.json")
    assert json.loads(src.read_text())["format"] == "sparsify"
    summary = (root / "gather" / "summary.md").read_text()
    assert f"pretrained dictionary: {SPARSIFY} (sparsify)" in summary
    assert "pretrained pretrained-512-" in proc.stdout  # the brief names the point


def test_two_checkpoints_and_a_trained_point_in_one_sweep(tmp_path: Path) -> None:
    sweep(tmp_path, *MIXED)
    root = tmp_path / "mixed"
    check_sweep(root, root / ".submitit", SOURCES)
    check_alignment(root, 3)
