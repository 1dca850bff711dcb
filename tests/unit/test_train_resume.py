"""Exact resume after a SIGKILL: a killed training process leaves only committed
checkpoints behind, and the rerun reaches the weights of an uninterrupted run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest
import torch

from interp.config import RunConfig, load_run_config, to_dict
from interp.runs import RunPaths

pytestmark = pytest.mark.unit


def config(out_dir) -> RunConfig:
    """4-layer 256-d random Llama, 32-token windows, 7 steps of 256 vectors."""
    return load_run_config(
        {
            "name": "r",
            "out_dir": str(out_dir),
            "layer": 2,
            "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
            "data": {"ctx_len": 32, "max_tokens": 8192},
            "sae": {"expansion_factor": 2, "k": 8},
            "train": {"num_tokens": 2048, "batch_size": 256, "lm_batch_size": 8,
                      "buffer_batches": 4, "warmup_steps": 2, "log_every": 3},
            "collect": {"num_tokens": 1024, "slice_tokens": 1024},
        }
    )  # fmt: skip


def paths_of(cfg: RunConfig) -> RunPaths:
    return RunPaths(RunPaths.sweep_root(cfg), cfg)


def weights(paths: RunPaths) -> dict[str, torch.Tensor]:
    from interp.sae import load_sae

    return load_sae(paths.sae_dir()).state_dict()


# Runs in a child process: train with checkpoints every 3 steps and SIGKILL itself in the
# middle of committing the checkpoint of step 6 (its rank file written, not yet renamed).
CHILD = """
import json, os, signal, sys
import interp.train.checkpoint as checkpoint
import interp.train.loop as loop
from interp.config import load_run_config
from interp.runs import RunPaths
from interp.stages.train import train_sae

real_commit = checkpoint.commit_checkpoint

def commit_or_die(directory, step, meta, keep):
    if step == 6:
        os.kill(os.getpid(), signal.SIGKILL)
    return real_commit(directory, step, meta, keep)

loop.commit_checkpoint = commit_or_die
cfg = load_run_config(json.loads(sys.argv[1]))
train_sae(cfg, RunPaths(RunPaths.sweep_root(cfg), cfg), checkpoint_every=3)
raise SystemExit("the child was not killed")
"""


def group_checkpoints(cfg: RunConfig) -> list[str]:
    from interp.groups import train_group_id

    folder = paths_of(cfg).train_group_checkpoint_dir(train_group_id([cfg]))
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.slow  # two trainings, a child, a resume (97 s on the loaded 2-core box)
def test_sigkilled_run_resumes_to_the_same_weights(tmp_path):
    from interp.stages.train import train_sae

    straight = config(tmp_path / "straight")
    train_sae(straight, paths_of(straight))

    killed = config(tmp_path / "killed")
    child = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(to_dict(killed))],
        capture_output=True,
        text=True,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    p: RunPaths = paths_of(killed)
    assert group_checkpoints(killed) == ["step-00000003", "step-00000006.partial"]
    assert not p.sae_dir().exists() and not p.train_summary().exists()

    summary = train_sae(killed, p, checkpoint_every=3)  # resumes from step 3
    assert summary is not None and summary["steps"] == 7
    assert group_checkpoints(killed) == ["step-00000006", "step-00000007"]  # partial gone
    a, b = weights(paths_of(straight)), weights(p)
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), f"{name} differs after SIGKILL + resume"

    def steps(paths: RunPaths) -> list[int]:
        return [json.loads(x)["step"] for x in paths.train_metrics().read_text().splitlines()]

    assert steps(p) == steps(paths_of(straight)) == [3, 6, 7]
