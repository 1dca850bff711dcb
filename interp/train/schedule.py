"""How long a group trains and at what rate: the learning-rate rule and schedule, and
:class:`TrainPlan` (steps, batch, buffer, dead window) derived from the data.

Dead latents: a latent is dead when it has not fired in the last ``dead_window`` training
vectors, with ``dead_window = min(10M, run length // 4)``: sparsify's 10M-token threshold
for long runs, the last quarter of the run for short ones (a 10M window would report
every latent of a 200k-token run alive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from interp.train.stream import usable_vectors

if TYPE_CHECKING:
    from interp.train.config import TrainConfig

DEAD_WINDOW_MAX = 10_000_000


def default_lr(num_latents: int) -> float:
    """Adam lr of Gao et al. / sparsify: 2e-4 scaled by 1/sqrt(width / 2^14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then linear decay to 0 at ``total``.

    Step 0 already gets 1/warmup (not 0), and the last step a small positive lr, so no
    step is wasted.
    """
    return min((step + 1) / max(warmup, 1), (total - step) / max(total - warmup, 1), 1.0)


@dataclass(frozen=True)
class TrainPlan:
    """What the group will do, derived from the config and the data (never saved)."""

    num_steps: int
    batch_size: int
    buffer_capacity: int
    tokens_per_step: int  # over every rank
    dead_window: int

    @classmethod
    def of(
        cls,
        t: TrainConfig,
        num_windows: int,
        ctx_len: int,
        exclude_first: int,
        data_parallel: int = 1,
    ) -> TrainPlan:
        """``num_windows`` windows of ``ctx_len`` tokens reach this rank's buffer (the
        first ``exclude_first`` positions of each dropped); ``data_parallel`` = ranks
        whose batches add up to one step (1 unless ddp)."""
        vectors = usable_vectors(num_windows, ctx_len, exclude_first)
        if vectors < t.batch_size:
            raise ValueError(
                f"the train split yields {vectors} vectors, fewer than train.batch_size="
                f"{t.batch_size}: raise train.num_tokens or lower train.batch_size"
            )
        steps = vectors // t.batch_size
        per_step = t.batch_size * data_parallel
        return cls(
            num_steps=steps,
            batch_size=t.batch_size,
            buffer_capacity=t.buffer_batches * t.batch_size,
            tokens_per_step=per_step,
            dead_window=max(1, min(DEAD_WINDOW_MAX, steps * per_step // 4)),
        )
