"""The slurm tier runs against a real SLURM on this machine, brought up once per session by
the project's own script (slurm/local_cluster/up.sh) and torn down after."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session", autouse=True)
def local_slurm() -> Iterator[float]:
    """Seconds the bring-up took. Jobs import fake_stages from here (sbatch passes the env)."""
    if os.geteuid() != 0 or not (shutil.which("apt-get") or shutil.which("sbatch")):
        pytest.skip("the local SLURM needs root on Debian (it installs and starts daemons)")
    t0 = time.perf_counter()
    up = subprocess.run(
        ["bash", str(ROOT / "slurm/local_cluster/up.sh")], capture_output=True, text=True
    )
    if up.returncode != 0:
        pytest.fail(f"slurm/local_cluster/up.sh failed:\n{up.stdout}\n{up.stderr}")
    elapsed = time.perf_counter() - t0
    print(f"\nlocal SLURM up in {elapsed:.1f} s")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE), old) if p)
    try:
        yield elapsed
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.update(PYTHONPATH=old)
        subprocess.run(["bash", str(ROOT / "slurm/local_cluster/down.sh")], timeout=120)
