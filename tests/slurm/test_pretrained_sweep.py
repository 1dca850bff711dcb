"""The issue's check through the real local SLURM: two pretrained checkpoints (sparsify's
layout, SAELens') and one trained point submitted by the user's command
(tests/pretrained_sweep.py): no train job for a pretrained point, one collect job for the
three, every selected latent one record, the table names each source, the gather's summary
and alignment compare them; status counts every job done."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT, all_done, counts, wait_for
from pretrained_sweep import MIXED, SOURCES, check_alignment, check_sweep

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def test_pretrained_and_trained_points_through_slurm(tmp_path: Path) -> None:
    t0 = time.perf_counter()
    cmd = [sys.executable, "launch/sweep.py", *MIXED, f"out_dir={tmp_path}", "cluster=local_slurm"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    root = tmp_path / "mixed"
    state = counts(root)
    assert state["queued"] + state["running"] > 0, state  # submitted, not run here
    wait_for(lambda: all_done(root), 3000, "the sweep and its gather to finish", every=5)
    check_sweep(root, root / "slurm" / "jobs", SOURCES)
    check_alignment(root, 3)
    print(f"\npretrained sweep through SLURM: {time.perf_counter() - t0:.0f} s")
