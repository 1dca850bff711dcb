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
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor, nn

from interp.train.config import DistBackend, DistStrategy
from interp.train.config import DistConfig as DistConfig  # re-exported
from interp.train.dist_state import full_state_dict as full_state_dict
from interp.train.dist_state import global_total_variance as global_total_variance
from interp.train.dist_state import load_zero_optimizer_state as load_zero_optimizer_state
from interp.train.dist_state import zero_optimizer_state as zero_optimizer_state
from interp.train.torch_dist import ReduceOp, TorchDist, _check_op, _import_deepspeed
from interp.train.world import WorldInfo, assign_members, world_from_env
from interp.train.world import expand_nodelist as expand_nodelist
from interp.train.world import shard_evenly as shard_evenly
from interp.train.world import slurm_hostnames as slurm_hostnames

log = logging.getLogger(__name__)


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
