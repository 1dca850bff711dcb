"""Preemption of a REAL training job through the real scheduler: USR2 (what SLURM sends
``signal_delay_s`` before a time limit, and what sites send on preemption) arrives mid-
training; the stage checkpoints at a step boundary, submitit requeues the job, the job
resumes from that checkpoint, and the dictionary is bitwise the one an undisturbed run
trains (CPU training is deterministic and resume is exact)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from helpers import cluster, slurm_id_of, squeue_state, wait_for

from interp.config import RunConfig, load_run_config
from interp.plan import Plan
from interp.runs import RunIds, RunPaths
from slurm.submit import plan_points, record_point

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def _point(out: Path) -> RunConfig:
    raw = {
        "name": "preempt",
        "out_dir": str(out),
        "model": {"name": "smollm2-135m"},
        "layer": 3,
        "data": {"max_tokens": 200_000},
        "sae": {"expansion_factor": 2, "k": 16},
        # ~100 s of steps on 2 cores: room to signal it mid-run
        "train": {"num_tokens": 98_304, "batch_size": 512, "log_every": 2},
        "collect": {"num_tokens": 16_384, "slice_tokens": 8192},
    }
    cfg = load_run_config(raw)
    record_point(cfg)
    return cfg


def _train_only(cfg: RunConfig) -> tuple[Plan, dict[str, RunConfig]]:
    plan = plan_points([cfg], gather=False)
    return Plan(tuple(j for j in plan.jobs if j.stage == "train")), {RunIds.of(cfg).point: cfg}


def _weights(cfg: RunConfig, root: Path) -> dict[str, bytes]:
    sae = RunPaths(root, cfg).sae_dir()
    files = sorted(p for p in sae.rglob("*.safetensors"))
    assert files, f"no weights under {sae}"
    return {p.relative_to(sae).as_posix(): p.read_bytes() for p in files}


def _steps(cfg: RunConfig, root: Path) -> list[int]:
    metrics = RunPaths(root, cfg).train_metrics()
    if not metrics.exists():
        return []
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line]


def test_usr2_mid_training_checkpoints_requeues_and_resumes_exactly(tmp_path: Path) -> None:
    import slurm.local
    from slurm.slurm_executor import submit_plan

    ref_cfg = _point(tmp_path / "local")
    ref_root = RunPaths.sweep_root(ref_cfg)
    plan, by_point = _train_only(ref_cfg)
    slurm.local.run_plan(plan, by_point, ref_root, {"executor": "inprocess"})
    reference = _weights(ref_cfg, ref_root)

    cfg = _point(tmp_path / "slurm")
    root = RunPaths.sweep_root(cfg)
    plan, by_point = _train_only(cfg)
    submit_plan(plan, by_point, root, cluster(worker=""))
    target = slurm_id_of(root, "train", 0)
    wait_for(lambda: squeue_state(target) == "RUNNING", 300, f"{target} to run")
    wait_for(lambda: len(_steps(cfg, root)) >= 2, 300, "training to log a few steps")
    subprocess.run(["scancel", "--signal=USR2", target], check=True)  # as at a time limit

    log = next((root / "slurm" / "logs").glob(f"train-*/{target}_0_log.err"))
    wait_for(lambda: "Requeued job" in log.read_text(), 120, "submitit to requeue the job")
    wait_for(lambda: "resumed from" in log.read_text(), 300, "the requeued job to resume")
    text = log.read_text()
    assert "stop requested: checkpointed at step" in text, text[-4000:]
    wait_for(lambda: RunPaths(root, cfg).train_summary().exists(), 900, "training to finish")
    stopped = int(text.split("stop requested: checkpointed at step ")[1].split()[0])
    assert 0 < stopped < max(_steps(cfg, root)), "the signal must have landed mid-training"
    assert _weights(cfg, root) == reference
