"""SAE training: activation streaming, the loop, checkpoints, held-out evaluation.

Which sweep points may train together (group keys and ids) is the orchestration's
question: :mod:`interp.groups`. Names resolve lazily (PEP 562): importing the package
pays for no torch.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_EXPORTS = {
    "GroupTrainer": "interp.train.loop",
    "GroupInputs": "interp.train.job",
    "TrainJob": "interp.train.job",
    "TrainPlan": "interp.train.schedule",
    "TrainingDiverged": "interp.train.loop",
    "default_lr": "interp.train.schedule",
    "lr_factor": "interp.train.schedule",
    "train_group": "interp.train.run",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
