"""A :class:`~interp.train.distributed.Dist` over an initialised ``torch.distributed``
process group (:class:`TorchDist`): the collectives, FSDP2 wrapping and DeepSpeed engines.

Shapes: N = vectors on this rank, W = world size, D = d_in.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from interp.train.config import DistConfig, DistStrategy
from interp.train.dist_state import _whole_dtensor_params, _whole_zero_params
from interp.train.world import WorldInfo, shard_evenly

log = logging.getLogger(__name__)

ReduceOp = Literal["mean", "sum", "max", "min"]

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
