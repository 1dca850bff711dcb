"""The training loop of a train group: one LM forward feeds many SAEs.

Shapes: N = batch_size vectors, W = summed hookpoint widths, D = a member's input width,
E = its target width, M = its num_latents.

Every step draws one [N, W] batch from the shared shuffle buffer; each member takes its
input columns (and, for a transcoder, its target columns) and takes one optimiser step
with its own Adam, schedule and dead-latent counters. The train split is read once, in
order: every position >= ``data.exclude_first`` of every window becomes one training
vector, so the run takes ``floor(n_windows * (ctx_len - exclude_first) / batch_size)``
steps (a little under ``train.num_tokens / batch_size``; the remainder is dropped).

Dead latents: a latent is dead when it has not fired in the last ``dead_window`` training
vectors, with ``dead_window = min(10M, run length // 4)``: sparsify's 10M-token threshold
for long runs, the last quarter of the run for short ones (a 10M window would report
every latent of a 200k-token run alive). Before ``dead_window`` vectors have been seen,
no latent counts as dead. "tokens" in metrics and summary count training vectors (over
every rank).

Resume is the default path: on start the newest committed checkpoint of the group is
loaded and the run continues bit for bit as if it had never stopped. ``should_stop()``
is polled after every step; when it turns true the loop checkpoints at the step boundary
and returns without finishing. A non-finite loss stops the run before any optimiser
step is taken with it (:class:`TrainingDiverged`).

Distributed runs go through a :class:`interp.train.distributed.Dist`: data shards per
rank, gradient averaging, the fired mask (MAX) and metrics (mean) reduced over ranks,
each rank checkpointing the members it trains, only writers touching member files.

Under strategy ``deepspeed`` each member's SAE and its Adam are wrapped by a ZeRO 1/2
engine (:meth:`interp.train.distributed.TorchDist.deepspeed_engine`): forward through the
engine, ``engine.backward``, ``engine.step`` (which averages and partitions the
gradients and steps this rank's fp32 partition). ZeRO moves gradients into its own
buffers during backward, so the decoder-gradient projection is a ``W_dec`` tensor hook;
parameter edits after the step go inside ``dist.whole_params``. The LR schedule steps
the same Adam that ZeRO drives. Checkpoints hold each rank's own ZeRO partition (the
engine's base-optimiser state and fp32 master partition, see
:func:`interp.train.distributed.zero_optimizer_state`), so a resume is exact.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR
from tqdm.auto import tqdm

from interp.config import RunConfig
from interp.models import SubjectModel
from interp.runs import RunIds, RunPaths
from interp.sae.base import SparseCoder, TrainOutput
from interp.train.checkpoint import (
    commit_checkpoint,
    latest_checkpoint,
    load_rank_state,
    read_meta,
    write_rank_state,
)
from interp.train.distributed import Dist, load_zero_optimizer_state, zero_optimizer_state
from interp.train.stream import ActivationStream, Columns, ShuffleBuffer, usable_vectors

log = logging.getLogger(__name__)

DEAD_WINDOW_MAX = 10_000_000
CHECKPOINT_EVERY = 1000  # steps; a stop request checkpoints at once regardless


class TrainingDiverged(RuntimeError):
    """A member's loss became NaN or infinite; no optimiser step was taken with it."""


def default_lr(num_latents: int) -> float:
    """Adam lr of Gao et al. / sparsify: 2e-4 scaled by 1/sqrt(width / 2^14)."""
    return 2e-4 / math.sqrt(num_latents / 2**14)


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warmup over ``warmup`` steps, then linear decay to 0 at ``total``.

    Step 0 already gets 1/warmup (not 0), and the last step a small positive lr, so no
    step is wasted.
    """
    return min((step + 1) / max(warmup, 1), (total - step) / max(total - warmup, 1), 1.0)


def num_latents_of(cfg: RunConfig, d_in: int) -> int:
    return cfg.sae.num_latents or d_in * cfg.sae.expansion_factor


@dataclass(frozen=True)
class TrainPlan:
    """What the group will do, derived from the config and the data (never saved)."""

    num_steps: int
    batch_size: int
    buffer_capacity: int
    tokens_per_step: int  # over every rank
    dead_window: int

    @classmethod
    def of(cls, cfg: RunConfig, num_windows: int, data_parallel: int = 1) -> TrainPlan:
        """``num_windows`` = windows this rank's buffer receives; ``data_parallel`` =
        ranks whose batches add up to one step (1 unless ddp)."""
        t = cfg.train
        vectors = usable_vectors(num_windows, cfg.data.ctx_len, cfg.data.exclude_first)
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


def build_dictionary(cfg: RunConfig, d_in: int, d_out: int, device: torch.device) -> SparseCoder:
    """The member's dictionary, initialised from ``train.seed`` only."""
    from interp.sae import build_sae

    generator = torch.Generator().manual_seed(cfg.train.seed)
    try:
        return build_sae(
            cfg.sae, d_in, d_out, generator=generator, device=device, backend=cfg.train.kernels
        )
    except ValueError as err:
        raise ValueError(f"{cfg.hookpoint}/{cfg.sae.sae_id}: {err}") from None


class Member:
    """One SAE of the group: its dictionary, optimiser, schedule and counters."""

    def __init__(
        self,
        index: int,
        cfg: RunConfig,
        paths: RunPaths,
        columns: Columns,
        plan: TrainPlan,
        dist: Dist,
    ) -> None:
        self.index, self.cfg, self.paths = index, cfg, paths
        self.train_id = RunIds.of(cfg).train
        self.x_cols = columns.slices[cfg.hookpoint]
        self.y_cols = columns.slices[cfg.target] if cfg.target != cfg.hookpoint else None
        d_in = self.x_cols.stop - self.x_cols.start
        d_out = d_in if self.y_cols is None else self.y_cols.stop - self.y_cols.start
        self.device = dist.device
        sae = build_dictionary(cfg, d_in, d_out, dist.device)
        deepspeed = dist.strategy == "deepspeed"
        self.sae = sae if deepspeed else dist.prepare_module(sae)
        num_latents = int(self.sae.num_latents)
        # fused: one kernel for the whole update, ~10-20x faster than foreach on CPU.
        fused = True if self.device.type in ("cpu", "cuda") else None
        self.lr = cfg.train.lr or default_lr(num_latents)
        groups = self.sae.param_groups(self.lr)  # per-dictionary lr_scale, threshold lr
        self.optimizer = torch.optim.Adam(groups, lr=self.lr, fused=fused)
        self.scheduler = LambdaLR(
            self.optimizer,
            partial(lr_factor, warmup=cfg.train.warmup_steps, total=plan.num_steps),
        )
        self.engine: Any = None  # the DeepSpeed engine (strategy deepspeed), else None
        if deepspeed:
            if self.sae.normalize_decoder:  # before_optimizer_step, as a gradient hook
                self.sae.W_dec.register_hook(partial(_project_decoder_grad, self.sae))
            # ZeRO steps the same Adam: the scheduler above still sets its lr
            self.engine = dist.deepspeed_engine(self.sae, self.optimizer)  # type: ignore[attr-defined]
        self.tokens_since_fired = torch.zeros(num_latents, dtype=torch.long, device=self.device)
        self.dead_window = cfg.sae.dead_tokens or plan.dead_window
        self.last_lr = 0.0  # lr of the latest step (the scheduler already points past it)
        self.interval = _Interval()
        self.evals: dict[str, float] = {}  # latest spliced evaluation, merged into the log
        self.name = f"{cfg.hookpoint}/{cfg.sae.sae_id} (train id {self.train_id})"

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


class GroupTrainer:
    """Every member, the shared data stream and everything :meth:`state_dict` saves."""

    def __init__(
        self,
        members: Sequence[tuple[RunConfig, RunPaths]],
        subject: SubjectModel,
        windows: np.ndarray,
        plan: TrainPlan,
        dist: Dist,
        columns: Columns,
    ) -> None:
        cfg = members[0][0]
        self.plan, self.dist, self.columns = plan, dist, columns
        self.replicated = dist.strategy != "shard_hookpoints"  # every rank has every member
        self.members = [
            Member(i, c, p, columns, plan, dist) for i, (c, p) in enumerate(members) if dist.owns(i)
        ]
        gather = None if self.replicated or dist.world_size == 1 else dist.gather_activations
        self.stream = ActivationStream(
            subject, windows, cfg.train.lm_batch_size, cfg.data.exclude_first, columns, gather
        )
        self.buffer = ShuffleBuffer(columns.width, cfg.train.seed + 1, dist.device)
        self.member_ids = [RunIds.of(c).train for c, _ in members]
        self.step = 0
        self.wall_s = 0.0
        self.last_good_checkpoint: Path | None = None

    @property
    def tokens(self) -> int:
        return self.step * self.plan.tokens_per_step

    def writes(self, member: Member) -> bool:
        """Whether this rank writes the member's files (one rank per member)."""
        return self.dist.is_main or not self.replicated

    def next_batch(self) -> torch.Tensor:
        """Top the buffer up to capacity (while data lasts), then draw one batch [N, W]."""
        while len(self.buffer) < self.plan.buffer_capacity and not self.stream.exhausted:
            self.buffer.push(self.stream.next_chunk())
        return self.buffer.pop(self.plan.batch_size)

    # ------------------------------------------------------------------ one step
    def train_step(self, should_stop: Callable[[], bool]) -> bool:
        """One optimiser step of every member; returns whether a stop was requested.

        Every member's forward and backward run first; the losses are checked for NaN/inf
        (one sync, agreed over ranks with the stop flag) before any optimiser steps.
        """
        t0 = time.perf_counter()
        batch_NW = self.next_batch()
        results = [self._forward_backward(m, batch_NW) for m in self.members]
        stop = self._agree_on_flags([r.loss for r in results], should_stop)
        for member, result in zip(self.members, results):
            self._optimizer_step(member, result.fired_M)
        self.step += 1
        seconds = time.perf_counter() - t0
        self.wall_s += seconds
        for member, result in zip(self.members, results):
            member.interval.add(result.metrics, seconds)
        return stop

    def _forward_backward(self, member: Member, batch_NW: torch.Tensor) -> _StepResult:
        """Forward and backward of one member; keeps only scalars and the fired mask (not
        the [N, M] codes) until every member's loss is known to be finite."""
        x, y = member.inputs(batch_NW)
        if self.step == 0:
            self._init_from_batch(member, x, y)
        engine = member.engine
        out = _train_forward(
            member.sae if engine is None else engine, x, y, member.dead_mask(), self.step
        )
        if engine is not None:
            engine.backward(out.loss)  # ZeRO reduces (and partitions) the gradients
        else:
            out.loss.backward()
        metrics = {"fvu": out.fvu, "loss": out.loss, "l0": out.l0, **out.metrics}
        return _StepResult(
            out.loss.detach().reshape(()),
            out.fired_M.detach(),
            {k: v.detach() for k, v in metrics.items()},
        )

    def _init_from_batch(self, member: Member, x: torch.Tensor, y: torch.Tensor | None) -> None:
        """Data-dependent init (b_dec = mean, ...), averaged over ranks under ddp: every
        parameter the init changed on any rank."""
        sae = member.sae
        with self.dist.whole_params(sae):  # FSDP / ZeRO: edit whole tensors, written back
            before = [p.detach().clone() for p in sae.parameters()]
            sae.init_from_batch(x, y)
            if not self.replicated or self.dist.world_size == 1:
                return
            params = list(sae.parameters())
            changed = torch.tensor(
                [float(not torch.equal(p, b)) for p, b in zip(params, before)],
                device=self.dist.device,
            )
            self.dist.all_reduce_(changed, "max")
            with torch.no_grad():
                for p, flag in zip(params, changed.tolist()):
                    if flag:
                        self.dist.all_reduce_(p.data, "mean")

    def _agree_on_flags(self, losses: list[torch.Tensor], should_stop: Callable[[], bool]) -> bool:
        bad_L = ~torch.isfinite(torch.stack(losses)) if losses else torch.zeros(0, dtype=torch.bool)
        flags = torch.tensor([float(bad_L.any()), float(should_stop())], device=self.dist.device)
        if self.dist.world_size > 1:
            self.dist.all_reduce_(flags, "max")
        if flags[0] > 0:
            self._diverged(bad_L, losses)
        return bool(flags[1] > 0)

    def _diverged(self, bad_L: torch.Tensor, losses: list[torch.Tensor]) -> None:
        bad = [
            f"{m.name}: loss={float(loss)}" for m, loss, b in zip(self.members, losses, bad_L) if b
        ]
        latest = self.last_good_checkpoint
        raise TrainingDiverged(
            f"non-finite loss at step {self.step} (no optimiser step taken with it): "
            f"{'; '.join(bad) or 'on another rank'}. Last good checkpoint: "
            f"{latest or 'none (a rerun starts from step 0)'}. Lower train.lr or raise "
            "train.warmup_steps; a rerun resumes from that checkpoint."
        )

    def _optimizer_step(self, member: Member, fired_M: torch.Tensor) -> None:
        sae = member.sae
        member.last_lr = member.optimizer.param_groups[0]["lr"]
        if member.engine is not None:
            member.engine.step()  # projection ran as a hook; grads zeroed by the engine
            member.scheduler.step()
            with self.dist.whole_params(sae):  # into ZeRO's fp32 master partition too
                sae.after_optimizer_step()
        else:
            self.dist.all_reduce_grads(sae)
            sae.before_optimizer_step()
            member.optimizer.step()
            member.optimizer.zero_grad(set_to_none=True)
            member.scheduler.step()
            sae.after_optimizer_step()
        if self.replicated and self.dist.world_size > 1:
            fired_M = self.dist.all_reduce_(fired_M.to(torch.uint8), "max").bool()
        member.count_firing(fired_M, self.plan.tokens_per_step)

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "tokens": self.tokens,
            "num_steps": self.plan.num_steps,
            "data_position": self.stream.position,
            "wall_s": self.wall_s,
            "buffer": self.buffer.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "members": {m.train_id: m.state_dict() for m in self.members},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_steps"] != self.plan.num_steps:
            raise ValueError(
                f"checkpoint was made for {state['num_steps']} steps, this run plans "
                f"{self.plan.num_steps}: delete the group's checkpoints folder to start over"
            )
        missing = [m.name for m in self.members if m.train_id not in state["members"]]
        if missing:
            raise ValueError(f"the checkpoint has no state for {missing}: delete it to start over")
        self.step = state["step"]
        self.stream.position = state["data_position"]
        self.wall_s = state["wall_s"]
        self.buffer.load_state_dict(state["buffer"])
        torch.set_rng_state(state["torch_rng"])
        for m in self.members:
            m.load_state_dict(state["members"][m.train_id])

    def save(self, directory: Path, keep: int) -> Path | None:
        """Checkpoint every rank's state; returns the committed folder on the main rank."""
        write_rank_state(directory, self.step, self.dist.rank, self.state_dict())
        self.dist.barrier()
        committed = None
        if self.dist.is_main:
            meta = {"world_size": self.dist.world_size, "members": self.member_ids}
            committed = commit_checkpoint(directory, self.step, meta, keep)
        self.dist.barrier()
        self.last_good_checkpoint = committed or latest_checkpoint(directory)
        return committed

    def resume(self, directory: Path) -> None:
        """Load the newest committed checkpoint, if any (resume path = save path)."""
        path = latest_checkpoint(directory)
        if path is None:
            log.info("no checkpoint in %s: starting from step 0", directory)
            return
        meta = read_meta(path)
        if meta["world_size"] != self.dist.world_size:
            raise ValueError(
                f"{path} was written by {meta['world_size']} ranks, this run has "
                f"{self.dist.world_size}: resume with the same number of processes, or "
                "delete the group's checkpoints folder to start over"
            )
        self.load_state_dict(load_rank_state(path, self.dist.rank))
        self.last_good_checkpoint = path
        log.info("resumed from %s (step %d, %d tokens)", path, self.step, self.tokens)


class _StepResult(NamedTuple):
    """What a member's step keeps after its backward."""

    loss: torch.Tensor  # 0-d
    fired_M: torch.Tensor  # [M] bool
    metrics: dict[str, torch.Tensor]  # 0-d each: fvu, loss, l0 and the architecture's extras


# ---------------------------------------------------------------------------- fitting


@dataclass
class FitSettings:
    """Loop cadences (group-wide) and the per-member periodic evaluation hook."""

    checkpoint_dir: Path
    checkpoint_every: int = CHECKPOINT_EVERY
    keep_checkpoints: int = 2
    evaluate: Callable[[Member], dict[str, float]] | None = None


def fit(trainer: GroupTrainer, settings: FitSettings, should_stop: Callable[[], bool]) -> bool:
    """Train to the planned step count; True when done, False when stopped early.

    Either way the state is checkpointed before returning.
    """
    plan = trainer.plan
    for m in trainer.members:
        if trainer.writes(m):
            _truncate_metrics(m.paths.train_metrics(), trainer.step)
    loggers = [_MetricsLog(trainer, m) for m in trainer.members if trainer.writes(m)]
    with _progress_bar(trainer) as bar:
        while trainer.step < plan.num_steps:
            stop = trainer.train_step(should_stop)
            bar.update(plan.tokens_per_step)
            _after_step(trainer, settings, loggers, bar)
            if trainer.step < plan.num_steps and stop:
                trainer.save(settings.checkpoint_dir, settings.keep_checkpoints)
                log.info("stop requested: checkpointed at step %d", trainer.step)
                return False
            if trainer.step % settings.checkpoint_every == 0:
                trainer.save(settings.checkpoint_dir, settings.keep_checkpoints)
    latest = latest_checkpoint(settings.checkpoint_dir)
    if latest is None or latest.name != f"step-{trainer.step:08d}":
        trainer.save(settings.checkpoint_dir, settings.keep_checkpoints)
    for logger in loggers:
        logger.close()
    for m in trainer.members:
        m.release_engine()
    return True


def _after_step(
    trainer: GroupTrainer, settings: FitSettings, loggers: list[_MetricsLog], bar: tqdm
) -> None:
    step, last = trainer.step, trainer.step == trainer.plan.num_steps
    records = []
    for m in trainer.members:
        every = m.cfg.train.eval_every
        # the final evaluation is the summary's; decisions here are the same on every rank
        evaluate = settings.evaluate is not None and every and step % every == 0 and not last
        if evaluate and trainer.writes(m):
            m.evals = {f"eval_{k}": v for k, v in settings.evaluate(m).items()}
        if step % m.cfg.train.log_every == 0 or last or evaluate:
            records.append(_interval_record(trainer, m))
    for logger in loggers:
        for record in records:
            if record["member"] is logger.member:
                logger.write(record["values"])
    if records:
        fvu = [r["values"]["fvu"] for r in records]
        bar.set_postfix(fvu=f"{min(fvu):.3f}-{max(fvu):.3f}" if len(fvu) > 1 else f"{fvu[0]:.3f}")


def _interval_record(trainer: GroupTrainer, m: Member) -> dict[str, Any]:
    """The member's metrics line; resets its interval. Collective under ddp: every rank
    calls it for the same members at the same steps."""
    iv = m.interval
    names = sorted(iv.sums)
    means = torch.stack([iv.sums[n] for n in names]) / max(iv.steps, 1)
    if trainer.replicated and trainer.dist.world_size > 1:
        trainer.dist.all_reduce_(means, "mean")
    values: dict[str, Any] = {"step": trainer.step, "tokens": trainer.tokens}
    values.update(dict(zip(names, means.tolist())))
    values["dead_pct"] = m.dead_pct()
    values["lr"] = m.last_lr
    values["tokens_per_s"] = iv.steps * trainer.plan.tokens_per_step / max(iv.seconds, 1e-9)
    values.update(m.evals)
    m.interval, m.evals = _Interval(), {}
    return {"member": m, "values": values}


class _MetricsLog:
    """metrics.jsonl of one member (and its wandb run, when configured)."""

    def __init__(self, trainer: GroupTrainer, member: Member) -> None:
        self.member = member
        self.file = member.paths.train_metrics()
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.wandb = _wandb_run(member)

    def write(self, values: dict[str, Any]) -> None:
        with open(self.file, "a") as f:
            f.write(json.dumps(values) + "\n")
        if self.wandb is not None:
            self.wandb.log(values, step=values["step"])

    def close(self) -> None:
        if self.wandb is not None:
            self.wandb.finish()


def _wandb_run(member: Member) -> Any:
    project = member.cfg.train.wandb_project
    if not project:
        return None
    try:
        import wandb
    except ImportError:
        log.warning(
            "train.wandb_project=%s but wandb is not installed: metrics.jsonl only", project
        )
        return None
    from interp.config import to_dict

    return wandb.init(
        project=project,
        name=f"{member.cfg.name}/{member.cfg.hookpoint}/{member.cfg.sae.sae_id}",
        id=member.train_id,
        resume="allow",
        config=to_dict(member.cfg),
        reinit="create_new",
    )


def _progress_bar(trainer: GroupTrainer) -> tqdm:
    quiet = not sys.stderr.isatty()  # batch logs: a line every 30 s, not every second
    hooks = sorted({m.cfg.hookpoint for m in trainer.members})
    return tqdm(
        total=trainer.plan.num_steps * trainer.plan.tokens_per_step,
        initial=trainer.tokens,
        unit="tok",
        unit_scale=True,
        desc=f"train {len(trainer.members)} SAE(s) @ {','.join(hooks)}",
        mininterval=30.0 if quiet else 1.0,
        disable=not trainer.dist.is_main,
    )


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
