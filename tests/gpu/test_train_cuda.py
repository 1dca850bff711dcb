"""DDP and FSDP2 over NCCL on one GPU train what one CPU process trains.

A world of one still goes through the real collectives: the process group is NCCL on
cuda:0, FSDP2 shards (trivially) over a one-device mesh, DDP broadcasts and all-reduces.
The loop is the 2-process CPU test's (tests/unit/test_train_distributed.py), so both
tests check one definition. Run by bench/gpu_check.sh; skipped without CUDA.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist

from interp.train.distributed import TorchDist, single_process, world_from_env

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _cpu_test_module():
    path = Path(__file__).resolve().parents[1] / "unit" / "test_train_distributed.py"
    spec = importlib.util.spec_from_file_location("_train_distributed_loop", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nccl_world():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    tdist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1,
        device_id=torch.device("cuda:0"),
    )  # fmt: skip
    yield world_from_env(env)
    tdist.destroy_process_group()


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_one_gpu_world_matches_one_cpu_process(nccl_world, strategy, record_property) -> None:
    loop = _cpu_test_module()
    acts = loop.activations()[0]
    cpu = single_process("cpu")
    ref = loop.train(cpu, loop.new_sae(0), loop.world_batches(cpu, acts), cpu)

    dist = TorchDist(nccl_world, strategy, torch.device("cuda:0"))
    batches = [b.cuda() for b in loop.world_batches(dist, acts)]
    got = loop.train(dist, loop.new_sae(0).cuda(), batches, dist)
    diff = max((got[k].float().cpu() - ref[k].float()).abs().max().item() for k in ref)
    record_property("max_abs_diff", f"{diff:.2e}")
    assert set(got) == set(ref)
    assert diff < 1e-4, f"{strategy} on CUDA drifted from the CPU loop by {diff}"
