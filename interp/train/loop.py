"""The SAE training loop: stream activations, take Adam steps on FVU, checkpoint, resume.

Shapes: N = batch_size vectors, D = d_in, M = num_latents, K = k.

One run trains one TopK SAE on the residual stream after ``cfg.layer``. The train split
(``data.load_windows(paths, "train")``) is read once, in order: every position >=
``data.exclude_first`` of every window becomes one training vector, so the run takes
``floor(n_windows * (ctx_len - exclude_first) / batch_size)`` steps (a little under
``train.num_tokens / batch_size``; the remainder is dropped).

Dead latents: a latent is dead when it has not fired in the last ``dead_window`` training
vectors, with ``dead_window = min(10M, run length // 4)``: sparsify's 10M-token threshold
for long runs, the last quarter of the run for short ones (a 10M window would report
every latent of a 200k-token run alive). Before ``dead_window`` vectors have been seen,
no latent counts as dead. "tokens" in metrics and summary count training vectors.

Resume is the default path: on start the newest checkpoint under
``paths.train_checkpoint_dir()`` is loaded, and the run continues bit for bit as if it
had never stopped. ``should_stop()`` is polled after every step; when it turns true the
loop checkpoints and returns without finishing.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from interp.config import RunConfig
from interp.models import SubjectModel
from interp.sae import TopKSAE
from interp.train.checkpoint import (
    checkpoint_file,
    latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from interp.train.stream import ActivationStream, ShuffleBuffer, usable_vectors

log = logging.getLogger(__name__)

DEAD_WINDOW_MAX = 10_000_000
CHECKPOINT_EVERY = 1000  # steps; a stop request checkpoints at once regardless


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
    """What one run will do, derived from the config and the data (never saved as config)."""

    num_steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    dead_window: int
    buffer_capacity: int

    @classmethod
    def of(cls, cfg: RunConfig, num_windows: int, num_latents: int) -> TrainPlan:
        t = cfg.train
        vectors = usable_vectors(num_windows, cfg.data.ctx_len, cfg.data.exclude_first)
        if vectors < t.batch_size:
            raise ValueError(
                f"the train split yields {vectors} vectors, fewer than train.batch_size="
                f"{t.batch_size}: raise train.num_tokens or lower train.batch_size"
            )
        steps = vectors // t.batch_size
        if t.warmup_steps >= steps:
            log.warning(
                "train.warmup_steps=%d >= the run's %d steps: the lr never reaches its peak",
                t.warmup_steps,
                steps,
            )
        return cls(
            num_steps=steps,
            batch_size=t.batch_size,
            lr=t.lr or default_lr(num_latents),
            warmup_steps=t.warmup_steps,
            dead_window=max(1, min(DEAD_WINDOW_MAX, steps * t.batch_size // 4)),
            buffer_capacity=t.buffer_batches * t.batch_size,
        )


class _Interval:
    """Metric sums since the last metrics line, kept on the device (no per-step sync)."""

    def __init__(self) -> None:
        self.steps = 0
        self.seconds = 0.0
        self.fvu: torch.Tensor | float = 0.0
        self.l0: torch.Tensor | float = 0.0

    def add(self, fvu: torch.Tensor, l0: torch.Tensor, seconds: float) -> None:
        self.steps += 1
        self.fvu = self.fvu + fvu
        self.l0 = self.l0 + l0
        self.seconds += seconds

    def state_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in vars(self).items()}

    def load_state_dict(self, state: dict[str, float]) -> None:
        vars(self).update(state)
        self.steps = int(state["steps"])


class Trainer:
    """One SAE, its optimizer and its data stream; everything :meth:`state_dict` saves."""

    def __init__(
        self, cfg: RunConfig, subject: SubjectModel, windows: np.ndarray, plan: TrainPlan
    ) -> None:
        self.cfg, self.plan = cfg, plan
        device = subject.device
        num_latents = cfg.sae.num_latents or subject.d_in * cfg.sae.expansion_factor
        init_rng = torch.Generator().manual_seed(cfg.train.seed)
        self.sae = TopKSAE(subject.d_in, num_latents, cfg.sae.k, generator=init_rng, device=device)
        # fused: one kernel for the whole update, ~10-20x faster than foreach on CPU.
        fused = True if device.type in ("cpu", "cuda") else None
        self.optimizer = torch.optim.Adam(self.sae.parameters(), lr=plan.lr, fused=fused)
        self.scheduler = LambdaLR(
            self.optimizer,
            partial(lr_factor, warmup=plan.warmup_steps, total=plan.num_steps),
        )
        self.stream = ActivationStream(
            subject, windows, cfg.train.lm_batch_size, cfg.data.exclude_first
        )
        self.buffer = ShuffleBuffer(subject.d_in, cfg.train.seed + 1, device)
        self.tokens_since_fired = torch.zeros(num_latents, dtype=torch.long, device=device)
        self.step = 0
        self.wall_s = 0.0
        self.last_lr = 0.0  # lr of the latest step (the scheduler already points past it)
        self.interval = _Interval()

    @property
    def tokens(self) -> int:
        return self.step * self.plan.batch_size

    def next_batch(self) -> torch.Tensor:
        """Top the buffer up to capacity (while data lasts), then draw one batch [N, D]."""
        while len(self.buffer) < self.plan.buffer_capacity and not self.stream.exhausted:
            self.buffer.push(self.stream.next_chunk())
        return self.buffer.pop(self.plan.batch_size)

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One Adam step on FVU; returns the batch's (fvu, l0) as 0-d device tensors."""
        batch_ND = self.next_batch()
        if self.step == 0:
            # b_dec = data mean: encode centred inputs from the first step (sparsify).
            self.sae.b_dec.data.copy_(batch_ND.mean(0))
        out = self.sae(batch_ND)
        out.fvu.backward()
        self.sae.remove_gradient_parallel_to_decoder_directions()
        self.last_lr = self.lr()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.sae.set_decoder_norm_to_unit_norm()
        self._count_firing(out.top_acts, out.top_idx)
        self.step += 1
        return out.fvu.detach(), (out.top_acts > 0).sum(-1).float().mean()

    def _count_firing(self, top_acts_NK: torch.Tensor, top_idx_NK: torch.Tensor) -> None:
        fired_M = torch.zeros_like(self.tokens_since_fired, dtype=torch.bool)
        fired_M[top_idx_NK[top_acts_NK > 0]] = True
        self.tokens_since_fired += top_acts_NK.shape[0]
        self.tokens_since_fired[fired_M] = 0

    def dead_pct(self) -> float:
        dead_M = self.tokens_since_fired >= self.plan.dead_window
        return 100.0 * dead_M.float().mean().item()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "data_position": self.stream.position,
            "wall_s": self.wall_s,
            "sae": self.sae.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "buffer": self.buffer.state_dict(),
            "tokens_since_fired": self.tokens_since_fired.cpu(),
            "interval": self.interval.state_dict(),
            "num_steps": self.plan.num_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_steps"] != self.plan.num_steps:
            raise ValueError(
                f"checkpoint was made for {state['num_steps']} steps, this run plans "
                f"{self.plan.num_steps}: delete the checkpoints folder to start over"
            )
        self.step = state["step"]
        self.stream.position = state["data_position"]
        self.wall_s = state["wall_s"]
        self.sae.load_state_dict(state["sae"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.buffer.load_state_dict(state["buffer"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.interval.load_state_dict(state["interval"])


# ---------------------------------------------------------------------------- fitting


def resume(trainer: Trainer, checkpoint_dir: Path) -> None:
    """Load the newest checkpoint, if any (resume path = save path)."""
    path = latest_checkpoint(checkpoint_dir)
    if path is None:
        log.info("no checkpoint in %s: starting from step 0", checkpoint_dir)
        return
    trainer.load_state_dict(load_checkpoint(path))
    log.info("resumed from %s (step %d, %d tokens)", path.name, trainer.step, trainer.tokens)


def fit(
    trainer: Trainer,
    checkpoint_dir: Path,
    metrics_file: Path,
    should_stop: Callable[[], bool],
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> bool:
    """Train to the planned step count; True when done, False when stopped early.

    Either way the state is checkpointed before returning.
    """
    plan, log_every = trainer.plan, trainer.cfg.train.log_every
    _truncate_metrics(metrics_file, trainer.step)
    with _progress_bar(trainer) as bar:
        while trainer.step < plan.num_steps:
            _timed_step(trainer)
            bar.update(plan.batch_size)
            if trainer.step % log_every == 0 or trainer.step == plan.num_steps:
                record = _log_interval(trainer, metrics_file)
                bar.set_postfix(fvu=f"{record['fvu']:.3f}", dead=f"{record['dead_pct']:.1f}%")
            if trainer.step < plan.num_steps and should_stop():
                save_checkpoint(checkpoint_dir, trainer.step, trainer.state_dict())
                log.info("stop requested: checkpointed at step %d", trainer.step)
                return False
            if trainer.step % checkpoint_every == 0:
                save_checkpoint(checkpoint_dir, trainer.step, trainer.state_dict())
    if latest_checkpoint(checkpoint_dir) != checkpoint_file(checkpoint_dir, trainer.step):
        save_checkpoint(checkpoint_dir, trainer.step, trainer.state_dict())
    return True


def _timed_step(trainer: Trainer) -> None:
    t0 = time.perf_counter()
    fvu, l0 = trainer.train_step()
    seconds = time.perf_counter() - t0
    trainer.wall_s += seconds
    trainer.interval.add(fvu, l0, seconds)


def _progress_bar(trainer: Trainer) -> tqdm:
    quiet = not sys.stderr.isatty()  # batch logs: a line every 30 s, not every second
    return tqdm(
        total=trainer.plan.num_steps * trainer.plan.batch_size,
        initial=trainer.tokens,
        unit="tok",
        unit_scale=True,
        desc=f"train {trainer.cfg.hookpoint}",
        mininterval=30.0 if quiet else 1.0,
    )


def _log_interval(trainer: Trainer, metrics_file: Path) -> dict[str, Any]:
    iv = trainer.interval
    record = {
        "step": trainer.step,
        "tokens": trainer.tokens,
        "fvu": float(iv.fvu) / iv.steps,
        "l0": float(iv.l0) / iv.steps,
        "dead_pct": trainer.dead_pct(),
        "lr": trainer.last_lr,
        "tokens_per_s": iv.steps * trainer.plan.batch_size / max(iv.seconds, 1e-9),
    }
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    with open(metrics_file, "a") as f:
        f.write(json.dumps(record) + "\n")
    trainer.interval = _Interval()
    return record


def _truncate_metrics(metrics_file: Path, step: int) -> None:
    """Drop metric lines logged after the checkpoint we resume from (they will be
    logged again), so a resumed run's metrics.jsonl has each step once."""
    if not metrics_file.exists():
        return
    kept = []
    for line in metrics_file.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a line cut short by a kill
    metrics_file.write_text("".join(kept))
