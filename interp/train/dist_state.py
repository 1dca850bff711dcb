"""Parameters and optimiser state across strategies: whole CPU state dicts of sharded
modules, whole-tensor edits under FSDP2 and ZeRO, a rank's ZeRO partition for
checkpoints, and the FVU denominator over every rank.

Shapes: N = vectors on this rank, D = d_in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from interp.train.distributed import Dist


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
