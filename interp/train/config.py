"""``TrainConfig`` and ``DistConfig``: the ``train`` section of the run config and its
``train.dist`` subsection (how training spreads over processes).

Light to import (no torch): ``interp.config`` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.typed import meta as _meta
from interp.typed import positive as _positive

__all__ = ["DistBackend", "DistConfig", "DistStrategy", "TrainConfig"]


DistStrategy = Literal["ddp", "shard_hookpoints", "fsdp", "deepspeed"]
DistBackend = Literal["auto", "nccl", "gloo"]


@dataclass(frozen=True)
class DistConfig:
    """How training spreads over processes. Ranks always come from the environment."""

    strategy: DistStrategy = field(
        default="ddp",
        metadata=_meta(
            "'ddp' = every rank trains every SAE on its share of the data, gradients "
            "averaged; 'shard_hookpoints' = each SAE lives on one rank, activations are "
            "all-gathered (needs >= as many SAEs as ranks); 'fsdp' = ddp with each SAE's "
            "parameters and optimiser sharded (wide dictionaries); 'deepspeed' = ZeRO "
            "sharding via DeepSpeed (install the gpu extra). All but ddp need >= 2 ranks."
        ),
    )
    backend: DistBackend = field(
        default="auto",
        metadata=_meta("torch.distributed backend: 'auto' = nccl on CUDA, gloo on CPU.", id=False),
    )
    timeout_s: int = field(
        default=1800,
        metadata=_meta(
            "Seconds a collective (or the rendezvous) may wait before the run fails.", id=False
        ),
    )
    master_port: int = field(
        default=0,
        metadata=_meta(
            (
                "Rendezvous port when the environment gives none (MASTER_PORT wins); "
                "0 = 20000 + SLURM job id mod 20000 under SLURM, else 29500."
            ),
            id=False,
        ),
    )
    zero_stage: int = field(
        default=2,
        metadata=_meta(
            "DeepSpeed ZeRO stage: 1 = optimiser state sharded, 2 = gradients too. "
            "Stage 3 (parameters too) is refused: it frees parameters between forward and "
            "backward, which the sparse decode's saved weight does not survive; use "
            "strategy fsdp to shard parameters."
        ),
    )

    def __post_init__(self) -> None:
        if self.strategy not in ("ddp", "shard_hookpoints", "fsdp", "deepspeed"):
            raise ValueError(
                f"dist.strategy={self.strategy!r} is unknown: use ddp, shard_hookpoints, "
                "fsdp or deepspeed"
            )
        if self.backend not in ("auto", "nccl", "gloo"):
            raise ValueError(f"dist.backend={self.backend!r} is unknown: use auto, nccl or gloo")
        if self.timeout_s <= 0:
            raise ValueError(f"dist.timeout_s={self.timeout_s} must be > 0")
        if not 0 <= self.master_port < 65536:
            raise ValueError(f"dist.master_port={self.master_port} must be in [0, 65535]")
        if self.zero_stage not in (1, 2):
            raise ValueError(
                f"dist.zero_stage={self.zero_stage} must be 1 or 2 (for parameter sharding "
                "use dist.strategy=fsdp)"
            )


@dataclass(frozen=True)
class TrainConfig:
    """SAE training on activations streamed from the subject model."""

    num_tokens: int = field(default=200_000, metadata=_meta("Training tokens."))
    batch_size: int = field(default=1024, metadata=_meta("Activation vectors per SAE step."))
    lm_batch_size: int = field(default=16, metadata=_meta("Context windows per LM forward."))
    lr: float = field(
        default=0.0, metadata=_meta("Adam learning rate; 0 = 2e-4 / sqrt(num_latents / 2^14).")
    )
    warmup_steps: int = field(default=20, metadata=_meta("Linear LR warmup steps."))
    kernels: Literal["auto", "torch", "triton"] = field(
        default="auto",
        metadata=_meta(
            "Sparse kernels of the TopK family: auto = triton on CUDA when it imports, else "
            "the torch reference (same numerics to float rounding).",
            id=False,
        ),
    )
    buffer_batches: int = field(
        default=8,
        metadata=_meta("Shuffle buffer, in SAE batches, so a batch mixes many windows."),
    )
    seed: int = field(default=0, metadata=_meta("Seed for init and shuffling."))
    log_every: int = field(default=10, metadata=_meta("Steps between metric lines.", id=False))
    checkpoint_every: int = field(
        default=1000,
        metadata=_meta("Steps between resume checkpoints (also saved on stop).", id=False),
    )
    dist: DistConfig = field(
        default_factory=DistConfig,
        metadata=_meta(
            (
                "Multi-process training (ranks from torchrun or SLURM's srun variables; "
                "one process = no distribution)."
            ),
            id="when_set",
        ),
    )
    keep_checkpoints: int = field(
        default=2,
        metadata=_meta(
            "Committed checkpoints kept (the newest ones); older are deleted.", id=False
        ),
    )
    eval_every: int = field(
        default=0,
        metadata=_meta(
            "Steps between spliced evaluations during training (CE increase and KL with the "
            "SAE output in place of the activation, on held-out windows); 0 = only at the end.",
            id=False,
        ),
    )
    wandb_project: str = field(
        default="",
        metadata=_meta(
            "Also log metrics to this Weights & Biases project (needs `wandb` installed); "
            "empty = metrics.jsonl only.",
            id=False,
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "num_tokens", "batch_size", "lm_batch_size", "buffer_batches")
        _positive(self, "log_every", "checkpoint_every", "keep_checkpoints")
        if self.eval_every < 0:
            raise ValueError("train.eval_every must be >= 0 (0 = evaluate only at the end)")
        if self.lr < 0:
            raise ValueError("train.lr must be >= 0 (0 picks the 1/sqrt(width) rule)")
