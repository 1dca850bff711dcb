"""SAE training: activation streaming, the loop, checkpoints, held-out evaluation."""

from interp.train.loop import Trainer, TrainPlan, default_lr, lr_factor
from interp.train.run import train_sae

__all__ = ["TrainPlan", "Trainer", "default_lr", "lr_factor", "train_sae"]
