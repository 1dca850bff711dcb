"""Distributed SAE training on CPU with gloo: 2 processes match 1, env mapping, refusals.

The 2-process runs spawn real processes joined over a loopback port; each trains tiny
TopK SAEs (D=16, M=32, K=4) on fixed synthetic activations with the same small loop a
single process runs, through the :class:`Dist` protocol only.
"""

from __future__ import annotations

import shutil
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from interp.sae import TopKSAE
from interp.train.distributed import (
    Dist,
    DistConfig,
    SingleProcess,
    TorchDist,
    WorldInfo,
    assign_members,
    check_strategy,
    expand_nodelist,
    full_state_dict,
    global_total_variance,
    init_distributed,
    shard_evenly,
    single_process,
    slurm_hostnames,
    world_from_env,
)

pytestmark = pytest.mark.unit

WORLD = 2
D, M, K = 16, 32, 4
STEPS, BATCH = 10, 64  # BATCH = the world batch; each rank takes BATCH // WORLD
LR = 3e-3
NUM_MEMBERS = 3  # shard_hookpoints: member m trains on hookpoint m % 2 with seed m
TOL = 2e-5  # float32 summation order differs between 1 and 2 processes, nothing else


# --------------------------------------------------------------------------------------
# The tiny loop, shared by every run


def activations() -> list[torch.Tensor]:
    """Two fixed "hookpoints" of STEPS * BATCH vectors [T, D] with low-rank structure."""
    g = torch.Generator().manual_seed(1234)
    acts = []
    for _ in range(2):
        z_TR = torch.randn(STEPS * BATCH, 6, generator=g).relu()
        a_RD = torch.randn(6, D, generator=g)
        acts.append(z_TR @ a_RD + 0.05 * torch.randn(STEPS * BATCH, D, generator=g) + 1.0)
    return acts


def new_sae(seed: int) -> TopKSAE:
    return TopKSAE(D, M, K, generator=torch.Generator().manual_seed(seed))


def train(dist: Dist, sae: torch.nn.Module, batches: list[torch.Tensor], loss_dist: Dist):
    """Adam on FVU over the world batch: each rank's loss is its share of
    sum(e^2) / world total variance, so averaged gradients equal one process's.
    ``loss_dist`` spans the ranks whose rows form one batch (the world for ddp/fsdp,
    this rank alone for shard_hookpoints, where the batch is already gathered)."""
    sae = dist.prepare_module(sae)
    opt = torch.optim.Adam(sae.parameters(), lr=LR)
    for step, x_ND in enumerate(batches):
        if step == 0:
            with dist.whole_params(sae):
                sae.b_dec.copy_(loss_dist.all_reduce_(x_ND.mean(0), "mean"))
        out = sae(x_ND)
        total_variance = global_total_variance(loss_dist, x_ND)
        loss = (out.sae_out - x_ND).pow(2).sum() / total_variance * loss_dist.world_size
        loss.backward()
        dist.all_reduce_grads(sae)
        sae.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sae.set_decoder_norm_to_unit_norm()
    return full_state_dict(sae)


def world_batches(dist: Dist, acts_TD: torch.Tensor) -> list[torch.Tensor]:
    """This rank's share of each world batch (a process of its own takes all of it)."""
    return [
        acts_TD[s * BATCH : (s + 1) * BATCH][dist.shard_windows(np.arange(BATCH))]
        for s in range(STEPS)
    ]


def train_ddp(dist: Dist) -> dict[str, torch.Tensor]:
    return train(dist, new_sae(0), world_batches(dist, activations()[0]), dist)


def train_sharded(dist: Dist) -> dict[int, dict[str, torch.Tensor]]:
    """Every rank reads its share and all-gathers both hookpoints; owners train."""
    acts = activations()
    shares = [world_batches(dist, a) for a in acts]
    gathered = [[dist.gather_activations(x) for x in share] for share in shares]
    return {
        m: train(dist, new_sae(m), gathered[m % 2], single_process())
        for m in range(NUM_MEMBERS)
        if dist.owns(m)
    }


# --------------------------------------------------------------------------------------
# Spawning


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_slurm_port() -> int:
    """A free port that a SLURM job id maps to (20000 + id % 20000)."""
    for port in np.random.default_rng().permutation(np.arange(20000, 40000))[:200]:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", int(port)))
            except OSError:
                continue
            return int(port)
    raise RuntimeError("no free port in [20000, 40000)")


def slurm_env(rank: int, port: int) -> dict[str, str]:
    """What srun gives task ``rank`` of a 2-task step on this one node."""
    return {
        "SLURM_PROCID": str(rank),
        "SLURM_NTASKS": str(WORLD),
        "SLURM_LOCALID": str(rank),
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_JOB_ID": str(port - 20000 + 20000 * 7),  # maps back to ``port``
    }


def torchrun_env(rank: int, port: int) -> dict[str, str]:
    return {
        "RANK": str(rank),
        "WORLD_SIZE": str(WORLD),
        "LOCAL_RANK": str(rank),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }


def spawn(worker, out_dir: Path, *args, port: int | None = None) -> list[dict]:
    """Run ``worker(rank, port, out_dir, *args)`` on WORLD processes; their results."""
    port = port or free_port()
    mp.start_processes(
        worker, args=(port, out_dir, *args), nprocs=WORLD, join=True, start_method="spawn"
    )
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _worker(rank: int, port: int, out_dir: Path) -> None:
    """Joins through the SLURM mapping (srun's variables, scontrol when installed)."""
    torch.set_num_threads(1)
    env = slurm_env(rank, port)
    ddp = init_distributed(DistConfig(strategy="ddp"), env=env, device="cpu")
    assert isinstance(ddp, TorchDist)
    world = world_from_env(env)
    sharded = TorchDist(world, "shard_hookpoints", ddp.device, assign_members([1.0] * 3, WORLD))
    fsdp = TorchDist(world, "fsdp", ddp.device)
    result = {
        "ddp": train_ddp(ddp),
        "sharded": train_sharded(sharded),
        "fsdp": train_ddp(fsdp),
        "collectives": _collectives(ddp),
        "fsdp_edit": _rank_dependent_edit(fsdp),
    }
    torch.save(result, out_dir / f"rank{rank}.pt")
    ddp.close()


def _rank_dependent_edit(dist: TorchDist) -> torch.Tensor:
    """Each rank writes its rank into a sharded (5, 3) weight: rank 0's edit must win."""
    linear = dist.prepare_module(torch.nn.Linear(3, 5))
    with dist.whole_params(linear):
        assert linear.weight.shape == (5, 3)  # whole, not this rank's shard
        linear.weight.fill_(float(dist.rank))
    return full_state_dict(linear)["weight"]


def _collectives(dist: TorchDist) -> dict[str, object]:
    r = dist.rank
    uneven = torch.full((r + 1, 3), float(r))  # rank 0 sends 1 row, rank 1 two
    return {
        "mean": dist.all_reduce_(torch.tensor([1.0 + r, 10.0]), "mean"),
        "sum": dist.all_reduce_(torch.tensor([1 + r]), "sum"),
        "max": dist.all_reduce_(torch.tensor([5.0 - r, r]), "max"),
        "min": dist.all_reduce_(torch.tensor([5.0 - r, r]), "min"),
        "any": dist.all_reduce_(torch.tensor([r == 1, False]), "max"),
        "all": dist.all_reduce_(torch.tensor([r == 1, True]), "min"),
        "broadcast": dist.broadcast_(torch.tensor([100.0 + r]), src=1),
        "gathered": dist.gather_activations(uneven),
        "windows": dist.shard_windows(np.arange(7)),
    }


@pytest.fixture(scope="module")
def two_process(tmp_path_factory) -> list[dict]:
    return spawn(_worker, tmp_path_factory.mktemp("dist"), port=free_slurm_port())


def assert_close(a: dict, b: dict, tol: float = TOL) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=tol, rtol=0, msg=name)


# --------------------------------------------------------------------------------------
# Two processes match one


def test_ddp_two_processes_match_one(two_process) -> None:
    single = train_ddp(single_process())
    start = full_state_dict(new_sae(0))
    moved = max((single[n] - start[n]).abs().max().item() for n in single)
    assert moved > 1000 * TOL, "training must move the weights well past the tolerance"
    assert_close(two_process[0]["ddp"], single)
    for name, value in two_process[0]["ddp"].items():  # ranks stay bit-identical
        assert torch.equal(value, two_process[1]["ddp"][name]), name


def test_local_loss_alone_would_not_match(two_process) -> None:
    """The control: one rank training on its half alone ends far from the world run."""
    half = world_batches(TorchDist(WorldInfo(0, 2, 0, "x", 1, "torchrun"), "ddp", "cpu"),
                         activations()[0])  # fmt: skip
    alone = train(single_process(), new_sae(0), half, single_process())
    gap = max((alone[n] - two_process[0]["ddp"][n]).abs().max().item() for n in alone)
    assert gap > 100 * TOL


def test_fsdp_two_processes_match_one(two_process) -> None:
    single = train_ddp(single_process())
    assert_close(two_process[0]["fsdp"], single)
    assert_close(two_process[1]["fsdp"], two_process[0]["fsdp"], tol=0)
    for rank in range(WORLD):
        assert torch.equal(two_process[rank]["fsdp_edit"], torch.zeros(5, 3))


def test_shard_hookpoints_each_member_trained_once_and_matches(two_process) -> None:
    owners = assign_members([1.0] * NUM_MEMBERS, WORLD)
    assert owners == [0, 1, 0]
    for rank in range(WORLD):
        got = two_process[rank]["sharded"]
        assert sorted(got) == [m for m in range(NUM_MEMBERS) if owners[m] == rank]
    acts = activations()
    for m in range(NUM_MEMBERS):
        batches = [acts[m % 2][s * BATCH : (s + 1) * BATCH] for s in range(STEPS)]
        single = train(single_process(), new_sae(m), batches, single_process())
        assert_close(two_process[owners[m]]["sharded"][m], single)


def test_collectives(two_process) -> None:
    for rank, result in enumerate(two_process):
        c = result["collectives"]
        assert c["mean"].tolist() == [1.5, 10.0]
        assert c["sum"].tolist() == [3]
        assert c["max"].tolist() == [5.0, 1.0]
        assert c["min"].tolist() == [4.0, 0.0]
        assert c["any"].tolist() == [True, False] and c["all"].tolist() == [False, True]
        assert c["broadcast"].tolist() == [101.0]
        assert c["gathered"].tolist() == [[0.0] * 3, [1.0] * 3, [1.0] * 3]
        assert c["windows"].tolist() == [[0, 2, 4], [1, 3, 5]][rank]  # 7th dropped


# --------------------------------------------------------------------------------------
# DeepSpeed (optional dependency)


def _deepspeed_worker(rank: int, port: int, out_dir: Path, stage: int) -> None:
    torch.set_num_threads(1)
    cfg = DistConfig(strategy="deepspeed", zero_stage=stage)
    dist = init_distributed(cfg, env=torchrun_env(rank, port), device="cpu")
    assert isinstance(dist, TorchDist)
    sae = new_sae(0)
    sae.W_dec.register_hook(project_decoder_grad(sae))  # ZeRO never exposes .grad
    engine = dist.deepspeed_engine(sae, torch.optim.Adam(sae.parameters(), lr=LR))
    for step, x_ND in enumerate(world_batches(dist, activations()[0])):
        if step == 0:
            with dist.whole_params(sae):
                sae.b_dec.copy_(dist.all_reduce_(x_ND.mean(0), "mean"))
        out = engine(x_ND)
        total_variance = global_total_variance(dist, x_ND)
        engine.backward((out.sae_out - x_ND).pow(2).sum() / total_variance * WORLD)
        engine.step()
        with dist.whole_params(sae):  # into ZeRO's fp32 master copy too
            sae.set_decoder_norm_to_unit_norm()
    torch.save(full_state_dict(sae), out_dir / f"rank{rank}.pt")
    dist.close()


def project_decoder_grad(sae: TopKSAE):
    """remove_gradient_parallel_to_decoder_directions as a gradient hook."""

    def hook(grad_MD: torch.Tensor) -> torch.Tensor:
        w_MD = sae.W_dec.detach()
        return grad_MD - (grad_MD * w_MD).sum(1, keepdim=True) * w_MD

    return hook


@pytest.mark.slow
@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_two_processes_match_one(tmp_path, stage) -> None:
    """ZeRO over 2 CPU ranks (gloo) takes the single-process steps."""
    pytest.importorskip("deepspeed")
    ranks = spawn(_deepspeed_worker, tmp_path, stage)
    assert_close(ranks[0], ranks[1], tol=0)
    single = train_ddp(single_process())
    assert_close(ranks[0], single)


def test_deepspeed_missing_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "deepspeed", None)  # import deepspeed -> ImportError
    env = {**torchrun_env(0, 1), "WORLD_SIZE": "2"}
    with pytest.raises(ValueError, match="pip install 'interp\\[gpu\\]'"):
        init_distributed(DistConfig(strategy="deepspeed"), env=env, device="cpu")


# --------------------------------------------------------------------------------------
# Environment mapping (pure)


def test_torchrun_env() -> None:
    env = {**torchrun_env(1, 4321), "MASTER_ADDR": "node7", "SLURM_PROCID": "0"}
    w = world_from_env(env)
    assert (w.rank, w.world_size, w.local_rank, w.master_addr, w.master_port) == (
        1, 2, 1, "node7", 4321)  # fmt: skip
    assert w.source == "torchrun"  # torchrun inside srun: torchrun's ranks win


def test_slurm_env_two_nodes() -> None:
    env = {
        "SLURM_PROCID": "5",
        "SLURM_NTASKS": "8",
        "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu[007-008]",
        "SLURM_JOB_ID": "123456",
    }
    w = world_from_env(env, hostnames=expand_nodelist)
    assert (w.rank, w.world_size, w.local_rank) == (5, 8, 1)
    assert w.master_addr == "gpu007"
    assert w.master_port == 20000 + 123456 % 20000
    assert w.source == "slurm"


def test_slurm_step_wins_over_job_and_overrides() -> None:
    env = {
        "SLURM_PROCID": "0",
        "SLURM_NTASKS": "16",
        "SLURM_STEP_NUM_TASKS": "4",
        "SLURM_JOB_NODELIST": "a[1-4]",
        "SLURM_STEP_NODELIST": "a[3-4]",
        "SLURM_JOB_ID": "77",
    }
    w = world_from_env(env, hostnames=expand_nodelist)
    assert (w.world_size, w.master_addr, w.local_rank) == (4, "a3", 0)
    w = world_from_env({**env, "MASTER_ADDR": "h", "MASTER_PORT": "999"})
    assert (w.master_addr, w.master_port) == ("h", 999)
    assert world_from_env(env, DistConfig(master_port=3333), expand_nodelist).master_port == 3333


def test_slurm_single_task_and_plain_env_are_one_process() -> None:
    assert world_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).world_size == 1
    assert world_from_env({}).source == "single"
    assert isinstance(init_distributed(DistConfig(), env={}, device="cpu"), SingleProcess)


def test_task_gpu_from_local_rank(monkeypatch) -> None:
    from interp.train.distributed import _local_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # --gpus-per-node=4
    assert _local_device("cuda", 3) == torch.device("cuda:3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)  # --gpus-per-task=1
    assert _local_device("cuda", 3) == torch.device("cuda:0")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="local rank 2 needs a GPU but this task sees 2"):
        _local_device("cuda", 2)
    assert _local_device("cpu", 2) == torch.device("cpu")
    assert _local_device("cuda:1", 0) == torch.device("cuda:1")  # explicit wins


def test_bad_env_is_refused() -> None:
    with pytest.raises(ValueError, match="RANK='x' is not an integer"):
        world_from_env({"RANK": "x", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="rank 3 is outside world size 2"):
        world_from_env({"RANK": "3", "WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="no SLURM_\\*NODELIST"):
        world_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"})


@pytest.mark.skipif(shutil.which("scontrol") is None, reason="needs SLURM's scontrol")
def test_expand_nodelist_agrees_with_scontrol() -> None:
    for nodelist in ["gpu[01-03,10],cpu5", "r[1-2]n[08-09]", "node-[9-11]", "a1,b[2]"]:
        assert slurm_hostnames(nodelist) == expand_nodelist(nodelist), nodelist


def test_expand_nodelist() -> None:
    assert expand_nodelist("gpu[01-03,10],cpu5") == ["gpu01", "gpu02", "gpu03", "gpu10", "cpu5"]
    assert expand_nodelist("r[1-2]n[08-09]") == ["r1n08", "r1n09", "r2n08", "r2n09"]
    assert expand_nodelist("localhost") == ["localhost"]
    with pytest.raises(ValueError, match="cannot parse"):
        expand_nodelist("n[a-b]")


# --------------------------------------------------------------------------------------
# Assignment, sharding and refusals (pure)


def test_assign_members_balances_cost() -> None:
    owners = assign_members([4.0, 1.0, 1.0, 2.0, 2.0], 2)
    loads = [sum(c for c, o in zip([4, 1, 1, 2, 2], owners) if o == r) for r in range(2)]
    assert loads == [5, 5]
    assert assign_members([1.0] * 4, 4) == [0, 1, 2, 3]


def test_shard_evenly_equal_disjoint_shares() -> None:
    shares = [shard_evenly(10, r, 3) for r in range(3)]
    assert [len(s) for s in shares] == [3, 3, 3]
    assert sorted(np.concatenate(shares).tolist()) == list(range(9))


@pytest.mark.parametrize("strategy", ["fsdp", "deepspeed", "shard_hookpoints"])
def test_one_process_refuses_multi_rank_strategies(strategy) -> None:
    with pytest.raises(ValueError, match=f"strategy {strategy} .* 1 process"):
        init_distributed(DistConfig(strategy=strategy), env={}, device="cpu")


def test_shard_hookpoints_needs_a_member_per_rank() -> None:
    with pytest.raises(ValueError, match="2 SAEs for 4 ranks: train at least 4"):
        check_strategy("shard_hookpoints", 4, 2)
    check_strategy("shard_hookpoints", 4, 4)
    check_strategy("ddp", 4, 1)


def test_config_refusals() -> None:
    with pytest.raises(ValueError, match="dist.strategy='dp' is unknown"):
        DistConfig(strategy="dp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="zero_stage=3 must be 1 or 2 .*strategy=fsdp"):
        DistConfig(zero_stage=3)
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        init_distributed(DistConfig(backend="nccl"), env=torchrun_env(0, 1), device="cpu")


def test_single_process_is_identity() -> None:
    d = single_process()
    t = torch.tensor([2.0])
    assert d.all_reduce_(t) is t and d.gather_activations(t) is t and d.owns(7)
    with pytest.raises(ValueError, match="op='mean' needs a floating tensor"):
        d.all_reduce_(torch.tensor([1]), "mean")
    with pytest.raises(ValueError, match="bool tensor reduces with op='max'"):
        d.all_reduce_(torch.tensor([True]), "sum")


# --------------------------------------------------------------------------------------
# The real training loop (interp.train.train_group) over 2 processes


def loop_members(out_dir: Path, batch_size: int) -> list:
    """Two members, the residual stream after layers 1 and 2 of the tiny random Llama."""
    from interp.config import load_run_config
    from interp.runs import RunPaths

    members = []
    for layer in (1, 2):
        cfg = load_run_config(
            {
                "name": "dist",
                "out_dir": str(out_dir),
                "layer": layer,
                "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
                "data": {"ctx_len": 32, "max_tokens": 8192},
                "sae": {"expansion_factor": 2, "k": 8},
                "train": {"num_tokens": 2048, "batch_size": batch_size, "lm_batch_size": 8,
                          "buffer_batches": 4, "warmup_steps": 2, "log_every": 3},
                "collect": {"num_tokens": 1024, "slice_tokens": 1024},
            }
        )  # fmt: skip
        members.append((cfg, RunPaths(RunPaths.sweep_root(cfg), cfg)))
    return members


def _loop_worker(rank: int, port: int, out_dir: Path, strategy: str) -> None:
    from interp.stages.train import train_group

    torch.set_num_threads(1)
    members = loop_members(out_dir / strategy, LOOP_BATCH[strategy])
    dist = init_distributed(
        DistConfig(strategy=strategy), num_members=2, env=slurm_env(rank, port), device="cpu"
    )
    summaries = train_group(members, dist=dist)
    torch.save([s for s in summaries or [] if s is not None], out_dir / f"rank{rank}.pt")
    dist.close()


# train.batch_size as the loop reads it: per rank under ddp, the gathered world batch
# under shard_hookpoints. Both make every SAE step on 256 vectors, as one process does.
LOOP_BATCH = {"ddp": 128, "shard_hookpoints": 256}


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "shard_hookpoints"])
def test_training_loop_two_processes(tmp_path, strategy) -> None:
    """train_group on 2 ranks vs 1 process, 256 vectors per SAE step either way: each
    SAE is written once (by rank 0 under ddp, by its owner under shard_hookpoints) and
    reaches the single-process held-out FVU (shuffle order and, under ddp, the per-rank
    FVU denominator differ, so not bit for bit)."""
    from interp.data import load_windows
    from interp.stages.inputs import token_source
    from interp.stages.train import train_group

    single = {s["hookpoint"]: s for s in train_group(loop_members(tmp_path / "single", 256))}
    for _, paths in loop_members(tmp_path / strategy, LOOP_BATCH[strategy]):
        load_windows(token_source(paths), "train")  # tokenise once, before two ranks race to
        load_windows(token_source(paths), "collect")
    ranks = spawn(_loop_worker, tmp_path, strategy, port=free_slurm_port())
    written = [sorted(s["hookpoint"] for s in r) for r in ranks]
    expected = {"ddp": [["layers.1", "layers.2"], []],
                "shard_hookpoints": [["layers.1"], ["layers.2"]]}[strategy]  # fmt: skip
    assert written == expected
    for summary in ranks[0] + ranks[1]:
        one = single[summary["hookpoint"]]
        assert summary["steps"] == one["steps"] and summary["tokens"] == one["tokens"]
        assert summary["fvu"] == pytest.approx(one["fvu"], abs=0.01)


# --------------------------------------------------------------------------------------
# The real training loop under DeepSpeed ZeRO (optional dependency)


def _deepspeed_loop_worker(rank: int, port: int, out_dir: Path, stage: int) -> None:
    """Rank ``rank`` trains the group under ZeRO ``stage`` straight through (in ``full``),
    stopped after 3 steps then resumed from the checkpoint (in ``resumed``), and under
    ddp over the same process group (in ``ddp``)."""
    from interp.stages.train import train_group

    torch.set_num_threads(1)
    cfg = DistConfig(strategy="deepspeed", zero_stage=stage)
    env = torchrun_env(rank, port)
    dist = init_distributed(cfg, num_members=2, env=env, device="cpu")
    ddp = TorchDist(world_from_env(env), "ddp", dist.device)
    train_group(loop_members(out_dir / "ddp", 128), dist=ddp)
    full = train_group(loop_members(out_dir / "full", 128), dist=dist)
    calls = iter(range(1000))
    stopped = train_group(loop_members(out_dir / "resumed", 128), lambda: next(calls) >= 2,
                          dist=dist)  # fmt: skip
    resumed = train_group(loop_members(out_dir / "resumed", 128), dist=dist)
    torch.save(
        {
            "full": [s for s in full or [] if s is not None],
            "stopped": stopped,
            "resumed": [s for s in resumed or [] if s is not None],
        },
        out_dir / f"rank{rank}.pt",
    )
    dist.close()


def _saved_weights(out_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    from interp.sae.io import WEIGHTS_FILE

    return {
        cfg.hookpoint: load_file(str(paths.sae_dir() / WEIGHTS_FILE))
        for cfg, paths in loop_members(out_dir, 128)
    }


@pytest.mark.slow  # ~55 s per stage on 2 busy CPU cores (four train_group runs)
@pytest.mark.parametrize("stage", [1, 2])
def test_training_loop_deepspeed(tmp_path, stage) -> None:
    """train_group under ZeRO 1/2 on 2 CPU ranks: rank 0 writes each SAE, which reaches
    the single-process held-out FVU (as ddp: 128 vectors per rank, 256 per step) and
    the 2-rank ddp run's weights (same batches and gradients, float32 rounding apart);
    a run stopped after 3 steps and resumed from its checkpoint (each rank's ZeRO
    partition) ends on the uninterrupted run's weights."""
    pytest.importorskip("deepspeed")
    from interp.data import load_windows
    from interp.stages.inputs import token_source
    from interp.stages.train import train_group

    single = {s["hookpoint"]: s for s in train_group(loop_members(tmp_path / "single", 256))}
    for run in ("full", "resumed", "ddp"):
        for _, paths in loop_members(tmp_path / run, 128):
            load_windows(token_source(paths), "train")  # tokenise once, before two ranks race to
            load_windows(token_source(paths), "collect")
    ranks = spawn(_deepspeed_loop_worker, tmp_path, stage)
    assert [sorted(s["hookpoint"] for s in r["full"]) for r in ranks] == [
        ["layers.1", "layers.2"], []]  # fmt: skip
    assert ranks[0]["stopped"] is None and ranks[1]["stopped"] is None
    for summary in ranks[0]["full"]:
        one = single[summary["hookpoint"]]
        assert summary["steps"] == one["steps"] and summary["tokens"] == one["tokens"]
        assert summary["fvu"] == pytest.approx(one["fvu"], abs=0.01)
    full, resumed = _saved_weights(tmp_path / "full"), _saved_weights(tmp_path / "resumed")
    ddp = _saved_weights(tmp_path / "ddp")
    for hookpoint in full:
        assert_close(full[hookpoint], ddp[hookpoint], tol=1e-4)
        assert_close(resumed[hookpoint], full[hookpoint], tol=1e-6)
