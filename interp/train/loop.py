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

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from interp.models import SubjectModel
from interp.train.checkpoint import (
    commit_checkpoint,
    latest_checkpoint,
    load_rank_state,
    read_meta,
    write_rank_state,
)
from interp.train.distributed import Dist
from interp.train.job import TrainJob
from interp.train.member import Member, _train_forward
from interp.train.member import build_dictionary as build_dictionary  # re-exported
from interp.train.schedule import TrainPlan
from interp.train.schedule import default_lr as default_lr  # re-exported
from interp.train.schedule import lr_factor as lr_factor  # re-exported
from interp.train.stream import ActivationStream, Columns, ShuffleBuffer

log = logging.getLogger(__name__)

CHECKPOINT_EVERY = 1000  # steps; a stop request checkpoints at once regardless


class TrainingDiverged(RuntimeError):
    """A member's loss became NaN or infinite; no optimiser step was taken with it."""


class GroupTrainer:
    """Every member, the shared data stream and everything :meth:`state_dict` saves."""

    def __init__(
        self,
        jobs: Sequence[TrainJob],
        subject: SubjectModel,
        windows: np.ndarray,
        plan: TrainPlan,
        dist: Dist,
        columns: Columns,
        exclude_first: int,
    ) -> None:
        """``jobs`` share the stream settings (``train.lm_batch_size``, ``seed``, ...: see
        :mod:`interp.groups`); ``exclude_first`` leading positions of every window
        are skipped."""
        train = jobs[0].train
        self.plan, self.dist, self.columns = plan, dist, columns
        self.replicated = dist.strategy != "shard_hookpoints"  # every rank has every member
        self.members = [
            Member(i, job, columns, plan, dist) for i, job in enumerate(jobs) if dist.owns(i)
        ]
        gather = None if self.replicated or dist.world_size == 1 else dist.gather_activations
        self.stream = ActivationStream(
            subject, windows, train.lm_batch_size, exclude_first, columns, gather
        )
        self.buffer = ShuffleBuffer(columns.width, train.seed + 1, dist.device)
        self.member_ids = [job.train_id for job in jobs]
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
