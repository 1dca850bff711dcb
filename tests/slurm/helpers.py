"""Small fake sweeps and polling helpers for the slurm tier."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from interp.config import RunConfig, load_run_config
from interp.plan import Plan
from interp.runs import RunIds, gather_dir
from slurm.status import Submission, summary, sweep_status
from slurm.submit import plan_points, record_point

ROOT = Path(__file__).resolve().parents[2]
WORKER = "fake_stages:fake_execute"


def fake_points(out: Path, layers: tuple[int, ...] = (0, 1)) -> list[RunConfig]:
    """Points of a small sweep: 4 token slices, 4 latent ranges, 4 interpret ranges each."""
    raw = {
        "name": "fake",
        "out_dir": str(out),
        "model": {"name": "tiny-random-llama"},
        "data": {"max_tokens": 4096},
        "train": {"num_tokens": 1024},
        "collect": {"num_tokens": 1024, "slice_tokens": 256, "range_latents": 64},
        "sae": {"num_latents": 256},
        "interpret": {"num_latents": 200, "range_latents": 50},
    }
    cfgs = [load_run_config({**raw, "layer": layer}) for layer in layers]
    for cfg in cfgs:
        record_point(cfg)
    return cfgs


def sweep_root(out: Path) -> Path:
    return out / "fake"


def fake_plan(cfgs: list[RunConfig]) -> tuple[Plan, dict[str, RunConfig]]:
    return plan_points(cfgs, gather=True), {RunIds.of(c).point: c for c in cfgs}


def cluster(**changes: Any) -> dict[str, Any]:
    """The local_slurm profile with the fake worker; arrays split at 3 tasks."""
    raw = yaml.safe_load((ROOT / "conf/cluster/local_slurm.yaml").read_text())
    return {**raw, "worker": WORKER, "max_array_size": 3, **changes}


def counts(root: Path) -> dict[str, int]:
    from slurm.submit import load_sweep

    plan, cfgs = load_sweep(root)
    return summary(sweep_status(root, plan, list(cfgs.values())))


def status_text(root: Path) -> str:
    proc = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "launch/status.py", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.stdout + proc.stderr


def wait_for(check: Callable[[], bool], timeout: float, what: str, every: float = 1.0) -> float:
    """Seconds until ``check()`` held; fails the test (never hangs) after ``timeout``."""
    t0 = time.monotonic()
    while not check():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - t0


def all_done(root: Path) -> bool:
    c = counts(root)
    return c["done"] > 0 and c["done"] == sum(c.values())


def table(root: Path) -> list[dict[str, Any]]:
    return json.loads((gather_dir(root) / "table.json").read_text())


def submissions(root: Path, stage: str) -> list[Submission]:
    jobs = root / "slurm" / "jobs"
    keys = sorted(p.name for p in jobs.iterdir() if p.name.split("-")[0] == stage)
    return [s for k in keys for s in Submission.load_all(root, k)]


def slurm_id_of(root: Path, stage: str, task: int) -> str:
    """The SLURM id running ``task`` of the first point's ``stage`` (latest submission)."""
    for sub in reversed(submissions(root, stage)):
        if task in sub.tasks:
            return sub.slurm_ids()[sub.tasks.index(task)]
    raise KeyError((stage, task))


def squeue_state(slurm_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-r", "-o", "%i %T"], capture_output=True, text=True, check=True
    ).stdout
    states = dict(line.split() for line in out.splitlines())
    return states.get(slurm_id, "")


def sacct_state(slurm_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", slurm_id.split("_")[0]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    states = dict(line.split("|", 1) for line in out.splitlines())
    return states.get(slurm_id, "")


def cancel_sweep(root: Path) -> None:
    """Cancel whatever this sweep still has queued (test cleanup)."""
    ids = sorted(
        {
            s.job_id
            for p in (root / "slurm/jobs").glob("*")
            for s in Submission.load_all(root, p.name)
        }
    )
    if ids:
        subprocess.run(["scancel", *ids], check=False)
