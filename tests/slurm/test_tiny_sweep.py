"""The real pipeline (SmolLM2, the bundled corpus, the test LLM) through the real scheduler:
the tiny sweep submitted by the user's command, one interpret range killed with scancel,
status shows it, rerun.py completes it, and the gather table equals a local run's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, all_done, counts, slurm_id_of, squeue_state, status_text, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]
SWEEP = ["-m", "experiment=tiny", "layer=3,6"]


def sweep(out: Path, cluster: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "launch/sweep.py", *SWEEP, f"out_dir={out}", f"cluster={cluster}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def read_table(root: Path) -> list[dict]:
    """The sweep table without wall-clock columns (the only ones that may differ)."""
    import pyarrow.parquet as pq

    rows = pq.read_table(root / "gather" / "latents.parquet").to_pylist()
    rows = [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
    return sorted(rows, key=lambda r: (r["point"], r["latent"]))


@pytest.fixture(scope="module")
def local_table(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out = tmp_path_factory.mktemp("local")
    sweep(out, "local")
    return read_table(out / "tiny")


def test_tiny_sweep_through_slurm_with_a_cancelled_range(tmp_path: Path, local_table) -> None:
    sweep(tmp_path, "local_slurm")
    root = tmp_path / "tiny"
    state = counts(root)  # the command returned after submitting, not after the jobs ran
    assert state["queued"] + state["running"] > 0, state
    target = slurm_id_of(root, "interpret", 1)
    wait_for(lambda: squeue_state(target) == "RUNNING", 2400, f"{target} to run", every=2)
    subprocess.run(["scancel", target], check=True)
    wait_for(lambda: counts(root)["failed"] == 1, 60, "status to show the cancelled range")
    assert "CANCELLED" in status_text(root)

    rerun = [sys.executable, "launch/rerun.py", str(root)]
    proc = subprocess.run(rerun, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-4000:]
    wait_for(lambda: all_done(root), 2400, "the rerun and gather to finish", every=5)
    assert read_table(root) == local_table
