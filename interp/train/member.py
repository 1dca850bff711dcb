"""One dictionary of a train group (:class:`Member`): its SAE, Adam, LR schedule,
dead-latent counters and metric interval, built from its :class:`~interp.train.job.TrainJob`.

Shapes: N = batch_size vectors, W = summed hookpoint widths, D = the member's input
width, E = its target width, M = its num_latents.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR

from interp.sae.base import SparseCoder, TrainOutput
from interp.train.distributed import Dist, load_zero_optimizer_state, zero_optimizer_state
from interp.train.job import TrainJob
from interp.train.schedule import TrainPlan, default_lr, lr_factor
from interp.train.stream import Columns


class _Interval:
    """Metric sums since the member's last metrics line, kept on the device (no per-step
    sync): name -> running sum of a 0-d tensor."""

    def __init__(self) -> None:
        self.steps = 0
        self.seconds = 0.0
        self.sums: dict[str, torch.Tensor] = {}

    def add(self, values: dict[str, torch.Tensor], seconds: float) -> None:
        self.steps += 1
        self.seconds += seconds
        for name, value in values.items():
            v = value.detach().float()
            self.sums[name] = self.sums[name] + v if name in self.sums else v.clone()

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "seconds": self.seconds,
            "sums": {k: v.cpu() for k, v in self.sums.items()},
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device) -> None:
        self.steps, self.seconds = int(state["steps"]), float(state["seconds"])
        self.sums = {k: v.to(device) for k, v in state["sums"].items()}


def build_dictionary(job: TrainJob, d_in: int, d_out: int, device: torch.device) -> SparseCoder:
    """The job's dictionary, initialised from ``train.seed`` only."""
    from interp.sae import build_sae

    generator = torch.Generator().manual_seed(job.train.seed)
    try:
        return build_sae(
            job.sae, d_in, d_out, generator=generator, device=device, backend=job.train.kernels
        )
    except ValueError as err:
        raise ValueError(f"{job.hookpoint}/{job.sae.sae_id}: {err}") from None


class Member:
    """One SAE of the group: its dictionary, optimiser, schedule and counters."""

    def __init__(
        self,
        index: int,
        job: TrainJob,
        columns: Columns,
        plan: TrainPlan,
        dist: Dist,
    ) -> None:
        self.index, self.job = index, job
        self.train_id = job.train_id
        self.x_cols = columns.slices[job.hookpoint]
        self.y_cols = columns.slices[job.target] if job.target != job.hookpoint else None
        d_in = self.x_cols.stop - self.x_cols.start
        d_out = d_in if self.y_cols is None else self.y_cols.stop - self.y_cols.start
        self.device = dist.device
        sae = build_dictionary(job, d_in, d_out, dist.device)
        deepspeed = dist.strategy == "deepspeed"
        self.sae = sae if deepspeed else dist.prepare_module(sae)
        num_latents = int(self.sae.num_latents)
        # fused: one kernel for the whole update, ~10-20x faster than foreach on CPU.
        fused = True if self.device.type in ("cpu", "cuda") else None
        self.lr = job.train.lr or default_lr(num_latents)
        groups = self.sae.param_groups(self.lr)  # per-dictionary lr_scale, threshold lr
        self.optimizer = torch.optim.Adam(groups, lr=self.lr, fused=fused)
        self.scheduler = LambdaLR(
            self.optimizer,
            partial(lr_factor, warmup=job.train.warmup_steps, total=plan.num_steps),
        )
        self.engine: Any = None  # the DeepSpeed engine (strategy deepspeed), else None
        if deepspeed:
            if self.sae.normalize_decoder:  # before_optimizer_step, as a gradient hook
                self.sae.W_dec.register_hook(partial(_project_decoder_grad, self.sae))
            # ZeRO steps the same Adam: the scheduler above still sets its lr
            self.engine = dist.deepspeed_engine(self.sae, self.optimizer)  # type: ignore[attr-defined]
        self.tokens_since_fired = torch.zeros(num_latents, dtype=torch.long, device=self.device)
        self.dead_window = job.sae.dead_tokens or plan.dead_window
        self.last_lr = 0.0  # lr of the latest step (the scheduler already points past it)
        self.interval = _Interval()
        self.evals: dict[str, float] = {}  # latest spliced evaluation, merged into the log
        self.name = job.name

    def inputs(self, batch_NW: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """This member's x [N, D] and target y [N, E] (None: the input itself)."""
        y = None if self.y_cols is None else batch_NW[:, self.y_cols]
        return batch_NW[:, self.x_cols], y

    def dead_mask(self) -> torch.Tensor:
        """[M] bool: latents that have not fired within the dead window."""
        return self.tokens_since_fired >= self.dead_window

    def dead_pct(self) -> float:
        return 100.0 * self.dead_mask().float().mean().item()

    def count_firing(self, fired_M: torch.Tensor, tokens: int) -> None:
        self.tokens_since_fired += tokens
        self.tokens_since_fired[fired_M] = 0

    def optimizer_state(self) -> dict[str, Any]:
        """This rank's optimiser state: Adam's, or under ZeRO this rank's partition."""
        if self.engine is not None:
            return zero_optimizer_state(self.engine)
        return self.optimizer.state_dict()

    def release_engine(self) -> None:
        """End of training under deepspeed: give the SAE parameters storage of their own
        (ZeRO keeps them as views of one flat buffer), so the final SAE is saved from
        whole, unshared tensors; the engine is dropped."""
        if self.engine is None:
            return
        with torch.no_grad():
            for p in self.sae.parameters():
                p.data = p.data.clone()
        self.engine = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "sae": self.sae.state_dict(),
            "optimizer": self.optimizer_state(),
            "scheduler": self.scheduler.state_dict(),
            "tokens_since_fired": self.tokens_since_fired.cpu(),
            "interval": self.interval.state_dict(),
            "last_lr": self.last_lr,
            "evals": dict(self.evals),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sae.load_state_dict(state["sae"])  # in place: ZeRO's flat buffer too
        if self.engine is not None:
            load_zero_optimizer_state(self.engine, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.interval.load_state_dict(state["interval"], self.device)
        self.last_lr = float(state["last_lr"])
        self.evals = dict(state["evals"])


def _train_forward(
    sae: Any, x: torch.Tensor, y: torch.Tensor | None, dead_M: torch.Tensor, step: int
) -> TrainOutput:
    """The dictionary's (or its DeepSpeed engine's) training forward (loss, fvu, l0,
    fired_M, metrics)."""
    return sae(x, y, dead_mask=dead_M, step=step)


def _project_decoder_grad(sae: SparseCoder, grad_MD: torch.Tensor) -> torch.Tensor:
    """:meth:`SparseCoder.remove_gradient_parallel_to_decoder_directions` as a W_dec
    gradient hook [M, E] -> [M, E] (under ZeRO the gradient never sits in ``.grad``).
    Linear in the gradient, so projecting each rank's before averaging is the same."""
    w_ME = sae.W_dec.detach()
    return grad_MD - (grad_MD * w_ME).sum(1, keepdim=True) * w_ME
