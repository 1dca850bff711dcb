"""What the training library is given: per dictionary a :class:`TrainJob` (its sub-configs
and plain output paths), per group a :class:`GroupInputs` (the subject model's config,
the token windows and the checkpoint folder). ``interp.stages.train`` builds both from
the run config and the run folder; the library never sees either.

Light (no torch): the configs are only named for type checkers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import numpy as np

    from interp.models.config import ModelConfig
    from interp.sae.config import SAEConfig
    from interp.train.config import TrainConfig

Split = Literal["train", "collect"]


@dataclass(frozen=True)
class TrainJob:
    """One dictionary to train (or build): what it computes and where its files go."""

    sae: SAEConfig
    train: TrainConfig
    hookpoint: str
    """Where its input is read (a hookpoint name relative to the model's base)."""
    target: str
    """Where its target is read: ``hookpoint`` itself unless a transcoder."""
    train_id: str
    """Names its state in the group's checkpoints (the run's train id)."""
    sae_dir: Path
    metrics_file: Path
    summary_file: Path
    label: str = ""
    """Prefix of its wandb run name (the sweep name)."""
    wandb_config: dict[str, Any] = field(default_factory=dict)
    """The config logged with its wandb run (a plain dict)."""

    @property
    def name(self) -> str:
        """How logs and errors name it."""
        return f"{self.hookpoint}/{self.sae.sae_id} (train id {self.train_id})"


@dataclass(frozen=True)
class GroupInputs:
    """What a group's members share."""

    model: ModelConfig
    ctx_len: int
    exclude_first: int
    """Leading positions of every window that are never training or evaluation vectors."""
    windows: Callable[[Split], np.ndarray]
    """Split -> its token windows [W, T] (memory-mapped; read when training starts)."""
    checkpoint_dir: Path
    """The group's resume checkpoints (its id names a fixed set of members)."""
