"""Distributed SAE training: process group setup and the few collectives the loop needs.

Shapes: N = vectors on this rank, W = world size, D = d_in.

The training loop talks to a :class:`Dist` only; :func:`single_process` is the no-op one
and :func:`init_distributed` builds the real one from the environment. Strategies
(``DistConfig.strategy``):

- ``ddp``: every rank holds every SAE member, reads its own share of the context windows
  (:meth:`Dist.shard_windows`) and averages gradients with :meth:`Dist.all_reduce_grads`
  before each optimiser step. Parameters start equal because :meth:`Dist.prepare_module`
  broadcasts them from rank 0.
- ``shard_hookpoints``: each member (SAE) lives on one rank only (:meth:`Dist.owns`,
  a deterministic balanced assignment). Every rank runs the LM on its share of windows
  and :meth:`Dist.gather_activations` all-gathers the hooked activations, so each rank
  trains its own members on the whole world batch with no gradient sync (sparsify's
  ``distribute_modules``). Optimiser state is per rank by construction: each rank
  checkpoints the members it owns, which avoids sparsify's resume bug where only rank 0
  saved optimiser state and every rank loaded it.
- ``fsdp``: as ``ddp``, but :meth:`Dist.prepare_module` shards each SAE's parameters
  and optimiser state over ranks with torch's FSDP2 (``fully_shard``; parameters become
  DTensors sharded along dim 0, i.e. by latent), for dictionaries too wide to
  replicate. Gradients are reduce-scattered by FSDP itself, so
  :meth:`Dist.all_reduce_grads` is a no-op. Row-wise edits (decoder renormalisation)
  work on the DTensors directly; edits that mix in plain tensors (b_dec = batch mean)
  go inside :meth:`Dist.whole_params`.
- ``deepspeed``: ZeRO stage 1 or 2 through DeepSpeed (optional dependency: the ``gpu``
  extra; runs on CPU with gloo too). DeepSpeed owns the backward and the step, so the
  loop builds such members with :meth:`TorchDist.deepspeed_engine`, edits gradients
  with tensor hooks and parameters inside :meth:`Dist.whole_params` (ZeRO steps fp32
  master copies that would otherwise undo the edit).

For every strategy: parameter edits outside the optimiser go inside
``dist.whole_params(module)``, and :func:`full_state_dict` gives whole CPU tensors for
saving. With the loss ``sum_local(e^2) / global_total_variance(...) * world_size``
(:func:`global_total_variance`), W ranks on batches of N take the same steps as one
process on the W*N batch (the test shows it to float32 rounding).

Why plain ``torch.distributed`` and not accelerate: a TopK SAE has four parameter
tensors, so averaging their gradients is four (asynchronous) all-reduces; DDP's bucketing
buys nothing. The loop trains many members, each with its own optimiser, stepping
inside one LM forward; accelerate's ``Accelerator`` wants to own one model, optimiser
and dataloader and its ``backward``, and its process state reads torchrun/MPI variables
but not SLURM's. Its FSDP plugin calls the same ``fully_shard`` used here. So the
process group, the SLURM mapping and the collectives are a couple of hundred lines of
our own; nothing in here needs accelerate.

Ranks come from torchrun (``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``MASTER_ADDR``/
``MASTER_PORT``) when set, else from SLURM (``SLURM_PROCID``/``SLURM_NTASKS``/
``SLURM_LOCALID``, the master being the first host of the step's node list and the port
derived from the job id), else the run is one process. See :func:`world_from_env`.
"""

from __future__ import annotations

import datetime
import logging
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from interp.config import DistBackend, DistConfig, DistStrategy

log = logging.getLogger(__name__)

ReduceOp = Literal["mean", "sum", "max", "min"]

DEFAULT_PORT = 29500
SLURM_PORT_BASE = 20000  # ports 20000..39999, one per job id, below Linux's ephemeral range
SLURM_PORT_SPAN = 20000


# --------------------------------------------------------------------------------------
# The world, from the environment (pure)


@dataclass(frozen=True)
class WorldInfo:
    """Where this process sits in the job, as read from the environment."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: Literal["torchrun", "slurm", "single"]


def world_from_env(
    env: Mapping[str, str],
    cfg: DistConfig | None = None,
    hostnames: Callable[[str], list[str]] | None = None,
) -> WorldInfo:
    """Read rank, world size, local rank and the rendezvous address from ``env``.

    torchrun's variables win (a torchrun started by srun sets both). Under SLURM the
    step's task count and node list are preferred to the job's (an ``srun`` inside a
    bigger allocation), the master is the first host of that list (``hostnames``
    expands it; default ``scontrol show hostnames``, else :func:`expand_nodelist`),
    and the port is derived from the job id so every task of the job agrees on it and
    two jobs on one node do not collide. ``MASTER_ADDR``/``MASTER_PORT`` override both.
    """
    cfg = cfg or DistConfig()
    if "RANK" in env and "WORLD_SIZE" in env:
        return _torchrun_world(env, cfg)
    ntasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" in env and ntasks and int(ntasks) > 1:
        return _slurm_world(env, cfg, int(ntasks), hostnames or slurm_hostnames)
    return WorldInfo(0, 1, 0, "127.0.0.1", _port(env, cfg, None), "single")


def _torchrun_world(env: Mapping[str, str], cfg: DistConfig) -> WorldInfo:
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    addr = env.get("MASTER_ADDR", "127.0.0.1")
    return _checked(WorldInfo(rank, world, local, addr, _port(env, cfg, None), "torchrun"))


def _slurm_world(
    env: Mapping[str, str], cfg: DistConfig, world: int, hostnames: Callable[[str], list[str]]
) -> WorldInfo:
    rank = _int(env, "SLURM_PROCID")
    local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = (
            env.get("SLURM_STEP_NODELIST")
            or env.get("SLURM_JOB_NODELIST")
            or env.get("SLURM_NODELIST")
        )
        if not nodelist:
            raise ValueError(
                "SLURM_PROCID and SLURM_NTASKS are set but no SLURM_*NODELIST: launch the "
                "tasks with srun, or set MASTER_ADDR to the first task's host"
            )
        addr = hostnames(nodelist)[0]
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    return _checked(WorldInfo(rank, world, local, addr, _port(env, cfg, job_id), "slurm"))


def _port(env: Mapping[str, str], cfg: DistConfig, slurm_job_id: str | None) -> int:
    if env.get("MASTER_PORT"):
        return _int(env, "MASTER_PORT")
    if cfg.master_port:
        return cfg.master_port
    if slurm_job_id and slurm_job_id.isdigit():
        return SLURM_PORT_BASE + int(slurm_job_id) % SLURM_PORT_SPAN
    return DEFAULT_PORT


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={env[key]!r} is not an integer") from None


def _checked(world: WorldInfo) -> WorldInfo:
    if world.world_size < 1 or not 0 <= world.rank < world.world_size:
        raise ValueError(
            f"rank {world.rank} is outside world size {world.world_size} (from the "
            f"{world.source} environment): check the launcher's task count"
        )
    if world.local_rank < 0:
        raise ValueError(f"local rank {world.local_rank} must be >= 0")
    return world


def slurm_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list with ``scontrol show hostnames`` when scontrol exists,
    else with :func:`expand_nodelist` (same result for the common syntax)."""
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            out = subprocess.run(
                [scontrol, "show", "hostnames", nodelist],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split()
            if out:
                return out
        except (subprocess.SubprocessError, OSError) as err:
            log.warning("scontrol show hostnames %s failed (%s); parsing it here", nodelist, err)
    return expand_nodelist(nodelist)


_BRACKET = re.compile(r"\[([^\]]*)\]")


def expand_nodelist(nodelist: str) -> list[str]:
    """``"gpu[01-03,07],cpu5"`` -> ``["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]``.

    Zero padding follows the range's start, several bracket groups expand as a product.
    """
    hosts: list[str] = []
    for part in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_one(part))
    if not hosts:
        raise ValueError(f"SLURM node list {nodelist!r} names no host")
    return hosts


def _split_top_level(nodelist: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(nodelist[start:i])
            start = i + 1
    parts.append(nodelist[start:])
    return [p for p in parts if p]


def _expand_one(pattern: str) -> list[str]:
    match = _BRACKET.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out = []
    for item in match.group(1).split(","):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"cannot parse {item!r} in SLURM node list pattern {pattern!r}")
        for n in range(int(lo), int(hi or lo) + 1):
            out.extend(_expand_one(f"{head}{n:0{len(lo)}d}{tail}"))
    return out


# --------------------------------------------------------------------------------------
# Member assignment for shard_hookpoints (pure)


def assign_members(costs: Sequence[float], world_size: int) -> list[int]:
    """The rank that trains each member: greedy longest-processing-time first, so ranks
    get about equal total cost (e.g. num_latents * d_in). Deterministic: ties go to the
    lower member index and the lower rank, so every rank computes the same assignment."""
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    if len(costs) < world_size:
        raise ValueError(
            f"strategy shard_hookpoints puts each SAE on one rank, but there are "
            f"{len(costs)} SAEs for {world_size} ranks: train at least {world_size} SAEs "
            "(hookpoints x sweep members) or use strategy ddp"
        )
    if any(c <= 0 for c in costs):
        raise ValueError(f"member costs must be > 0, got {list(costs)}")
    load = [0.0] * world_size
    owner = [0] * len(costs)
    for member in sorted(range(len(costs)), key=lambda m: (-costs[m], m)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[member] = rank
        load[rank] += costs[member]
    return owner


def shard_evenly(n: int, rank: int, world_size: int) -> np.ndarray:
    """Indices of ``range(n)`` that ``rank`` takes: every ``world_size``-th one, starting
    at ``rank``, after dropping the last ``n % world_size`` so all ranks take the same
    number (ranks that run out first would leave the others hanging in a collective)."""
    usable = n - n % world_size
    return np.arange(rank, usable, world_size)


# --------------------------------------------------------------------------------------
# The protocol and its two implementations


@runtime_checkable
class Dist(Protocol):
    """What the training loop may ask of the process group."""

    rank: int
    world_size: int
    local_rank: int
    is_main: bool
    device: torch.device
    strategy: DistStrategy

    def shard_windows(self, windows: np.ndarray) -> np.ndarray:
        """This rank's deterministic share of ``windows`` (rows); equal sizes on every rank."""
        ...

    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Call once per member before building its optimiser: equal start (ddp) or
        parameter sharding (fsdp). Returns the module to train."""
        ...

    def whole_params(self, module: nn.Module) -> AbstractContextManager[None]:
        """Inside (under ``torch.no_grad``), ``module``'s parameters are whole plain
        tensors that may be edited in place outside the optimiser (data-dependent init,
        renormalisation); on exit the edits reach FSDP's shards or DeepSpeed's fp32
        master copy (rank 0's edit wins). A collective under fsdp and deepspeed: every
        rank enters it together."""
        ...

    def all_reduce_grads(self, module: nn.Module) -> None:
        """Average ``module``'s gradients over ranks (ddp); a no-op otherwise."""
        ...

    def all_reduce_(self, t: Tensor, op: ReduceOp = "mean") -> Tensor:
        """Reduce ``t`` in place over ranks and return it (bool: max = any, min = all)."""
        ...

    def broadcast_(self, t: Tensor, src: int = 0) -> Tensor:
        """Overwrite ``t`` in place with rank ``src``'s copy and return it."""
        ...

    def owns(self, member_index: int) -> bool:
        """Whether this rank trains member ``member_index`` (always true but in shard mode)."""
        ...

    def gather_activations(self, x: Tensor) -> Tensor:
        """Concatenate every rank's ``x`` [N_r, ...] along dim 0, in rank order."""
        ...

    def barrier(self) -> None: ...

    def close(self) -> None:
        """Leave the process group (end of training)."""
        ...


class SingleProcess:
    """The world of one: every collective is the identity."""

    rank = 0
    world_size = 1
    local_rank = 0
    is_main = True
    strategy: DistStrategy = "ddp"

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self.device = torch.device(device)

    def shard_windows(self, windows: np.ndarray) -> np.ndarray:
        return windows

    def prepare_module(self, module: nn.Module) -> nn.Module:
        return module

    @contextmanager
    def whole_params(self, module: nn.Module) -> Iterator[None]:
        with torch.no_grad():
            yield

    def all_reduce_grads(self, module: nn.Module) -> None:
        return None

    def all_reduce_(self, t: Tensor, op: ReduceOp = "mean") -> Tensor:
        _check_op(op, t)
        return t

    def broadcast_(self, t: Tensor, src: int = 0) -> Tensor:
        if src != 0:
            raise ValueError(f"broadcast source rank {src} does not exist in a world of 1")
        return t

    def owns(self, member_index: int) -> bool:
        return True

    def gather_activations(self, x: Tensor) -> Tensor:
        return x

    def barrier(self) -> None:
        return None

    def close(self) -> None:
        return None


def single_process(device: torch.device | str = "cpu") -> SingleProcess:
    """The no-op :class:`Dist` for one process."""
    return SingleProcess(device)


_OPS = {"sum": "SUM", "mean": "SUM", "max": "MAX", "min": "MIN"}


def _check_op(op: str, t: Tensor) -> None:
    if op not in _OPS:
        raise ValueError(f"reduce op {op!r} is unknown: use mean, sum, max or min")
    if t.dtype == torch.bool and op not in ("max", "min"):
        raise ValueError(f"a bool tensor reduces with op='max' (any) or 'min' (all), not {op!r}")
    if op == "mean" and not (t.is_floating_point() or t.is_complex()):
        raise ValueError(f"op='mean' needs a floating tensor, got {t.dtype}: use op='sum'")


class TorchDist:
    """A :class:`Dist` over an initialised ``torch.distributed`` process group."""

    def __init__(
        self,
        world: WorldInfo,
        strategy: DistStrategy,
        device: torch.device,
        owners: Sequence[int] | None = None,
        cfg: DistConfig | None = None,
    ) -> None:
        self.rank, self.world_size, self.local_rank = world.rank, world.world_size, world.local_rank
        self.is_main = world.rank == 0
        self.device = device
        self.strategy: DistStrategy = strategy
        self.cfg = cfg or DistConfig(strategy=strategy)
        self._owners = list(owners) if owners is not None else None
        self._mesh: Any = None
        self._world = world

    def shard_windows(self, windows: np.ndarray) -> np.ndarray:
        return windows[shard_evenly(len(windows), self.rank, self.world_size)]

    def prepare_module(self, module: nn.Module) -> nn.Module:
        if self.strategy == "fsdp":
            return self._fully_shard(module)
        if self.strategy == "deepspeed":
            raise ValueError(
                "strategy deepspeed owns the optimiser: build members with "
                "TorchDist.deepspeed_engine(module, lr), not prepare_module"
            )
        if self.strategy == "ddp":
            with torch.no_grad():
                for tensor in [*module.parameters(), *module.buffers()]:
                    self.broadcast_(tensor.data, 0)
        return module

    def _fully_shard(self, module: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        if self._mesh is None:
            self._mesh = init_device_mesh(self.device.type, (self.world_size,))
        return fully_shard(module, mesh=self._mesh)

    @contextmanager
    def whole_params(self, module: nn.Module) -> Iterator[None]:
        with torch.no_grad():
            if self.strategy == "fsdp":
                with _whole_dtensor_params(module):
                    yield
            elif self.strategy == "deepspeed":
                with _whole_zero_params(module):
                    yield
            else:
                yield

    def all_reduce_grads(self, module: nn.Module) -> None:
        if self.strategy != "ddp":
            return
        import torch.distributed as dist

        work = []
        grads = []
        for p in module.parameters():
            if not p.requires_grad:
                continue
            if p.grad is None:  # every rank must send the same tensors, in the same order
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
            work.append(dist.all_reduce(p.grad, op=dist.ReduceOp.SUM, async_op=True))
        for w in work:
            w.wait()
        for g in grads:
            g.div_(self.world_size)

    def all_reduce_(self, t: Tensor, op: ReduceOp = "mean") -> Tensor:
        import torch.distributed as dist

        _check_op(op, t)
        if t.dtype == torch.bool:  # gloo and nccl reduce no bools
            return t.copy_(self.all_reduce_(t.to(torch.uint8), op).bool())
        dist.all_reduce(t, op=getattr(dist.ReduceOp, _OPS[op]))
        if op == "mean":
            t.div_(self.world_size)
        return t

    def broadcast_(self, t: Tensor, src: int = 0) -> Tensor:
        import torch.distributed as dist

        if not 0 <= src < self.world_size:
            raise ValueError(f"broadcast source rank {src} is outside world size {self.world_size}")
        dist.broadcast(t, src=src)
        return t

    def owns(self, member_index: int) -> bool:
        if self.strategy != "shard_hookpoints":
            return True
        if self._owners is None:
            raise ValueError(
                "strategy shard_hookpoints needs the members: pass num_members (or "
                "member_costs) to init_distributed"
            )
        if not 0 <= member_index < len(self._owners):
            raise ValueError(f"member {member_index} is outside [0, {len(self._owners)})")
        return self._owners[member_index] == self.rank

    def gather_activations(self, x: Tensor) -> Tensor:
        """All-gather ``x`` [N_r, ...] -> [sum_r N_r, ...]; N_r may differ between ranks
        (sizes are exchanged first and rows padded to the largest)."""
        import torch.distributed as dist

        x = x.contiguous()
        size = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
        sizes = [torch.zeros_like(size) for _ in range(self.world_size)]
        dist.all_gather(sizes, size)
        counts = [int(s.item()) for s in sizes]
        most = max(counts)
        if x.shape[0] < most:
            pad = x.new_zeros((most - x.shape[0], *x.shape[1:]))
            x = torch.cat([x, pad])
        parts = [torch.empty_like(x) for _ in range(self.world_size)]
        dist.all_gather(parts, x)
        return torch.cat([p[:n] for p, n in zip(parts, counts)])

    def barrier(self) -> None:
        import torch.distributed as dist

        if self.device.type == "cuda" and dist.get_backend() == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            self.barrier()  # a rank leaving while gloo peers still talk aborts them
            dist.destroy_process_group()

    def deepspeed_engine(self, module: nn.Module, optimizer: torch.optim.Optimizer) -> Any:
        """A DeepSpeed engine training ``module`` with ``optimizer`` (built on its
        parameters) under ZeRO stage ``cfg.zero_stage``: call ``engine(x)``,
        ``engine.backward(loss)`` and ``engine.step()`` in place of ``module(x)``,
        ``loss.backward()``, ``all_reduce_grads`` and ``optimizer.step()``.

        ZeRO moves gradients into its partitioned buffers during backward, so anything
        that must edit a gradient (the decoder's parallel-component removal) has to be a
        tensor hook (``W_dec.register_hook``), not a pass over ``.grad`` after backward.
        """
        if self.strategy != "deepspeed":
            raise ValueError(f"deepspeed_engine needs strategy deepspeed, not {self.strategy}")
        deepspeed = _import_deepspeed()
        # DeepSpeed reads these from os.environ even over an existing process group.
        for key, value in {
            "RANK": self.rank,
            "WORLD_SIZE": self.world_size,
            "LOCAL_RANK": self.local_rank,
            "MASTER_ADDR": self._world.master_addr,
            "MASTER_PORT": self._world.master_port,
        }.items():
            os.environ.setdefault(key, str(value))
        config = {
            "train_micro_batch_size_per_gpu": 1,
            "gradient_accumulation_steps": 1,
            "zero_optimization": {"stage": self.cfg.zero_stage},
            "zero_allow_untested_optimizer": True,
        }
        engine, *_ = deepspeed.initialize(model=module, optimizer=optimizer, config=config)
        return engine


def _import_deepspeed() -> Any:
    try:
        import deepspeed
    except ImportError:
        raise ValueError(
            "strategy deepspeed needs the deepspeed package: pip install 'interp[gpu]' "
            "(or pip install deepspeed), or use strategy fsdp, which shards an SAE's "
            "parameters and optimiser state with torch alone"
        ) from None
    return deepspeed


# --------------------------------------------------------------------------------------
# Setup


def init_distributed(
    cfg: DistConfig,
    *,
    num_members: int = 1,
    member_costs: Sequence[float] | None = None,
    device: str | torch.device = "auto",
    env: Mapping[str, str] | None = None,
) -> Dist:
    """Join the process group described by the environment and return this rank's Dist.

    ``num_members`` (or ``member_costs``, one per member, e.g. num_latents * d_in) says
    how many SAEs the run trains; shard_hookpoints assigns them to ranks. ``device``
    'auto' = ``cuda:<local rank>`` when CUDA exists, else cpu; 'cuda' also picks the
    local rank's GPU. A world of one returns :func:`single_process` (ddp only).
    """
    env = os.environ if env is None else env
    world = world_from_env(env, cfg)
    costs = list(member_costs) if member_costs is not None else [1.0] * num_members
    check_strategy(cfg.strategy, world.world_size, len(costs))
    dev = _local_device(device, world.local_rank)
    if world.world_size == 1:
        return single_process(dev)
    backend = _backend(cfg.backend, dev)
    if cfg.strategy == "deepspeed":
        _import_deepspeed()  # refuse before the rendezvous, not after
    _init_process_group(world, backend, dev, cfg.timeout_s)
    owners = assign_members(costs, world.world_size) if cfg.strategy == "shard_hookpoints" else None
    log.info(
        "rank %d/%d (local %d) on %s joined %s:%d via %s (%s, strategy %s)",
        world.rank,
        world.world_size,
        world.local_rank,
        dev,
        world.master_addr,
        world.master_port,
        world.source,
        backend,
        cfg.strategy,
    )
    return TorchDist(world, cfg.strategy, dev, owners, cfg)


def check_strategy(strategy: DistStrategy, world_size: int, num_members: int) -> None:
    """Refuse combinations that cannot work, before any process group is joined."""
    if num_members < 1:
        raise ValueError(f"num_members={num_members} must be >= 1")
    if world_size == 1 and strategy != "ddp":
        raise ValueError(
            f"strategy {strategy} splits work over ranks but this run has 1 process: "
            "launch >= 2 (torchrun --nproc-per-node 2, or SLURM tasks_per_node/nodes) "
            "or set dist.strategy=ddp"
        )
    if strategy == "shard_hookpoints" and num_members < world_size:
        assign_members([1.0] * num_members, world_size)  # raises with the explanation


def _local_device(device: str | torch.device, local_rank: int) -> torch.device:
    """'auto'/'cuda' -> this task's GPU: ``cuda:<local rank>`` when the task sees every
    GPU of the node (``--gpus-per-node``), ``cuda:0`` when it sees one (SLURM bound one
    GPU to it with ``--gpus-per-task=1``: CUDA_VISIBLE_DEVICES holds just that one)."""
    name = str(device)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        count = torch.cuda.device_count()
        if count == 1:
            return torch.device("cuda:0")
        if count <= local_rank:
            raise ValueError(
                f"local rank {local_rank} needs a GPU but this task sees {count}: launch "
                "at most one task per GPU (tasks_per_node <= gpus_per_node)"
            )
        name = f"cuda:{local_rank}"
    return torch.device(name)


def _backend(backend: DistBackend, device: torch.device) -> str:
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise ValueError("dist.backend=nccl needs CUDA devices: use gloo (or auto) on CPU")
    return backend


def _init_process_group(world: WorldInfo, backend: str, device: torch.device, timeout_s: int):
    import torch.distributed as dist

    if dist.is_initialized():
        if (dist.get_rank(), dist.get_world_size()) != (world.rank, world.world_size):
            raise ValueError(
                f"a process group is already initialised as rank {dist.get_rank()}/"
                f"{dist.get_world_size()}, but the environment says {world.rank}/"
                f"{world.world_size}"
            )
        return
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend,
        init_method=f"tcp://{world.master_addr}:{world.master_port}",
        rank=world.rank,
        world_size=world.world_size,
        timeout=datetime.timedelta(seconds=timeout_s),
        device_id=device if backend == "nccl" else None,
    )


def full_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """``module.state_dict()`` as whole tensors on the CPU, whatever the strategy: FSDP's
    sharded DTensors are all-gathered (a collective: call it on every rank)."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, value in module.state_dict().items():
        if isinstance(value, DTensor):
            value = value.full_tensor()
        out[name] = value.detach().to("cpu", copy=True)
    return out


@contextmanager
def _whole_dtensor_params(module: nn.Module) -> Iterator[None]:
    """Swap every FSDP-sharded DTensor parameter for its whole tensor, then scatter the
    (edited) whole tensors back into the shards and restore the DTensors."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    swapped = []
    with torch.no_grad():
        for sub in module.modules():
            for name, p in list(sub._parameters.items()):
                if isinstance(p, DTensor):
                    whole = nn.Parameter(p.full_tensor(), requires_grad=p.requires_grad)
                    sub._parameters[name] = whole
                    swapped.append((sub, name, p, whole))
    try:
        yield
    finally:
        with torch.no_grad():
            for sub, name, p, whole in swapped:
                shard = distribute_tensor(whole.detach(), p.device_mesh, p.placements)
                p.to_local().copy_(shard.to_local())
                sub._parameters[name] = p


@contextmanager
def _whole_zero_params(module: nn.Module) -> Iterator[None]:
    """ZeRO 1/2 keep whole parameters on every rank but step fp32 master partitions
    that the next step copies back over them: push the edits into those partitions."""
    from deepspeed.utils import safe_set_full_fp32_param

    yield
    for p in module.parameters():
        safe_set_full_fp32_param(p, p.detach().clone())


def zero_optimizer_state(engine: Any) -> dict[str, Any]:
    """This rank's ZeRO 1/2 optimiser partition, from the engine's own state: the base
    optimiser's state (Adam moments and step over this rank's flat fp32 partition of
    each param group) and those fp32 master partitions themselves, as CPU tensors.

    Plain tensors and numbers only (``torch.load(weights_only=True)`` reads it back);
    each rank saves and restores its own partition, so resuming needs the same world
    size and ZeRO stage (recorded here and checked by :func:`load_zero_optimizer_state`).
    """
    zero = engine.optimizer
    partitions = [t.detach().to("cpu", copy=True) for t in zero.single_partition_of_fp32_groups]
    return {
        "zero_stage": int(engine.zero_optimization_stage()),
        "world_size": int(zero.partition_count[0]),
        "base_optimizer": _to_cpu(zero.optimizer.state_dict()),
        "fp32_partitions": partitions,
    }


def load_zero_optimizer_state(engine: Any, state: dict[str, Any]) -> None:
    """Restore :func:`zero_optimizer_state` into a freshly built engine of the same
    shape (call after loading the module's whole parameters)."""
    zero = engine.optimizer
    if "fp32_partitions" not in state:
        raise ValueError(
            "the checkpoint's optimizer state is not a ZeRO partition (it was written "
            "under another strategy): resume with the strategy that wrote it, or delete "
            "the group's checkpoints folder to start over"
        )
    here = (int(engine.zero_optimization_stage()), int(zero.partition_count[0]))
    saved = (state["zero_stage"], state["world_size"])
    if saved != here:
        raise ValueError(
            f"the checkpoint holds ZeRO stage {saved[0]} partitions of {saved[1]} ranks, "
            f"this run is stage {here[0]} on {here[1]}: resume with the same "
            "dist.zero_stage and process count, or delete the checkpoints folder"
        )
    current = zero.single_partition_of_fp32_groups
    shapes = [tuple(t.shape) for t in state["fp32_partitions"]]
    if shapes != [tuple(t.shape) for t in current]:
        raise ValueError(f"ZeRO partition shapes {shapes} do not match this run's dictionary")
    zero.optimizer.load_state_dict(state["base_optimizer"])
    with torch.no_grad():
        for mine, saved_t in zip(current, state["fp32_partitions"]):
            mine.copy_(saved_t)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value


def global_total_variance(dist: Dist, y_ND: Tensor) -> Tensor:
    """sum over the world batch of ||y - world mean||^2, a 0-d float32 tensor.

    The FVU denominator of the batch the world trains on together. With it each rank's
    loss ``sum_local(e^2) / global_total_variance * world_size`` averages (ddp) to the
    single-process FVU of the concatenated batch, so a W-rank run takes the same steps
    as one process on W times the per-rank batch. One all-reduce of D + 2 float64.
    """
    y = y_ND.reshape(-1, y_ND.shape[-1]).double()
    stats = torch.cat([y.sum(0), y.pow(2).sum().reshape(1), y.new_tensor([y.shape[0]])])
    dist.all_reduce_(stats, "sum")
    total_D, sq, n = stats[:-2], stats[-2], stats[-1]
    return (sq - total_D.pow(2).sum() / n).float()
