"""Train a group of SAEs end to end: subject model, loop, save, held-out evaluation.

Each member writes, at the paths of its :class:`~interp.train.job.TrainJob`: its
dictionary (sparsify layout) in ``sae_dir``, ``metrics_file`` and ``summary_file`` =
{fvu, l0, dead_pct, ce_clean, ce_spliced, ce_increase, kl, tokens, steps, wall_s,
tokens_per_s, ...}. fvu, l0, ce_* and kl are measured on the first 32 windows of the
held-out collect split; dead_pct, tokens, steps, wall_s and tokens_per_s describe
training (wall_s sums every attempt, excluding model loading and evaluation;
tokens_per_s is the group's: every member saw every token). The group's resume
checkpoints live in ``GroupInputs.checkpoint_dir``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from interp.models import SubjectModel, load_subject
from interp.runs import atomic_write_json, remove_stale_tmp
from interp.sae import save_sae
from interp.sae.io import WEIGHTS_FILE
from interp.train.distributed import Dist, single_process
from interp.train.evaluate import EVAL_WINDOWS, evaluate_spliced
from interp.train.fit import FitSettings, fit
from interp.train.job import GroupInputs, TrainJob
from interp.train.loop import GroupTrainer
from interp.train.member import Member
from interp.train.schedule import TrainPlan
from interp.train.stream import Columns

log = logging.getLogger(__name__)

__all__ = ["train_group", "train_sae"]


def _never_stop() -> bool:
    return False


def _finished(job: TrainJob) -> dict[str, Any] | None:
    if job.summary_file.is_file() and (job.sae_dir / WEIGHTS_FILE).is_file():
        return json.loads(job.summary_file.read_text())
    return None


def train_sae(
    job: TrainJob,
    inputs: GroupInputs,
    should_stop: Callable[[], bool] = _never_stop,
    *,
    checkpoint_every: int | None = None,
    dist: Dist | None = None,
) -> dict[str, Any] | None:
    """Train (or resume), save and evaluate one SAE: a group of one (:func:`train_group`)."""
    summaries = train_group(
        [job], inputs, should_stop, checkpoint_every=checkpoint_every, dist=dist
    )
    return None if summaries is None else summaries[0]


def train_group(
    jobs: Sequence[TrainJob],
    inputs: GroupInputs,
    should_stop: Callable[[], bool] = _never_stop,
    *,
    checkpoint_every: int | None = None,
    dist: Dist | None = None,
) -> list[dict[str, Any] | None] | None:
    """Train every job's SAE from one LM forward per batch, then save and evaluate each.
    Returns the summaries (None for jobs this rank does not write), or None when
    ``should_stop`` interrupted training (state is checkpointed, nothing is final;
    calling again resumes). ``checkpoint_every`` overrides the jobs'
    ``train.checkpoint_every`` (the group saves at the smallest). The jobs must share
    one activation stream (see :mod:`interp.groups`)."""
    done = [_finished(job) for job in jobs]
    if all(s is not None for s in done):
        return done  # finished earlier, not yet committed
    dist = dist or single_process(_device_of(inputs))
    if dist.world_size > 1 and inputs.model.device_map != "none":
        raise ValueError(
            f"model.device_map={inputs.model.device_map} spreads one model over the node's "
            f"devices, but training runs {dist.world_size} processes: run train as one "
            "process (cluster.stages.train.tasks_per_node=1, nodes=1) or set model.device_map=none"
        )
    subject = _load_subject(jobs, inputs)
    out: list[dict[str, Any] | None] = [None] * len(jobs)
    trained = [i for i, job in enumerate(jobs) if job.sae.spec.trained]
    if trained:
        summaries = _train([jobs[i] for i in trained], inputs, subject, dist, should_stop,
                           checkpoint_every)  # fmt: skip
        if summaries is None:
            return None
        for i, summary in zip(trained, summaries):
            out[i] = summary
    for i, job in enumerate(jobs):
        if not job.sae.spec.trained and dist.is_main:
            out[i] = _finish_fixed(job, inputs, subject)
    return out


def _train(
    jobs: Sequence[TrainJob],
    inputs: GroupInputs,
    subject: SubjectModel,
    dist: Dist,
    should_stop: Callable[[], bool],
    checkpoint_every: int | None,
) -> list[dict[str, Any] | None] | None:
    """Fit the trainable jobs together; summaries aligned with ``jobs``."""
    columns = Columns(subject.hookpoints, subject.widths)
    trainer = _build_trainer(jobs, inputs, subject, columns, dist)
    settings = FitSettings(
        checkpoint_dir=inputs.checkpoint_dir,
        checkpoint_every=checkpoint_every or min(j.train.checkpoint_every for j in jobs),
        keep_checkpoints=max(j.train.keep_checkpoints for j in jobs),
        evaluate=partial_evaluate(subject, inputs, EVAL_WINDOWS),
    )
    trainer.resume(settings.checkpoint_dir)
    if not fit(trainer, settings, should_stop):
        return None
    written = {
        m.index: _finish(trainer, m, inputs, subject) for m in trainer.members if trainer.writes(m)
    }
    return [written.get(i) for i in range(len(jobs))]  # aligned with ``jobs``


def _finish_fixed(job: TrainJob, inputs: GroupInputs, subject: SubjectModel) -> dict[str, Any]:
    """A dictionary that is built, not trained (neurons): save, evaluate, summarise."""
    if (done := _finished(job)) is not None:
        return done
    from interp.train.member import build_dictionary

    width = subject.widths[job.hookpoint]
    sae = build_dictionary(job, width, width, subject.device)
    figures = {
        "architecture": job.sae.architecture,
        "rotate": job.sae.rotate,
        "hookpoint": job.hookpoint,
        "num_latents": int(sae.num_latents),
        "k": int(sae.k),
        "dead_pct": None,  # not trained: no firing statistics
        "tokens": 0,
        "steps": 0,
        "wall_s": 0.0,
    }
    return _save_and_evaluate(job, inputs, sae, subject, figures)


def _device_of(inputs: GroupInputs) -> Any:
    from interp.models import resolve_device

    return resolve_device(inputs.model.device)


def _load_subject(jobs: Sequence[TrainJob], inputs: GroupInputs) -> SubjectModel:
    """The subject LM capturing every job's input and target hookpoints, cut after the
    deepest; layers past the cut are kept for spliced evaluation."""
    hookpoints = list(dict.fromkeys(h for j in jobs for h in (j.hookpoint, j.target)))
    return load_subject(inputs.model, hookpoints=hookpoints, keep_full=True)


def _build_trainer(
    jobs: Sequence[TrainJob],
    inputs: GroupInputs,
    subject: SubjectModel,
    columns: Columns,
    dist: Dist,
) -> GroupTrainer:
    windows = dist.shard_windows(inputs.windows("train"))
    gathered = dist.strategy == "shard_hookpoints" and dist.world_size > 1
    num_windows = len(windows) * (dist.world_size if gathered else 1)
    data_parallel = 1 if gathered else dist.world_size
    plan = TrainPlan.of(
        jobs[0].train, num_windows, inputs.ctx_len, inputs.exclude_first, data_parallel
    )
    for job in jobs:
        if job.train.warmup_steps >= plan.num_steps:
            log.warning(
                "%s: train.warmup_steps=%d >= the run's %d steps: the lr never reaches its peak",
                job.hookpoint,
                job.train.warmup_steps,
                plan.num_steps,
            )
    return GroupTrainer(jobs, subject, windows, plan, dist, columns, inputs.exclude_first)


def partial_evaluate(
    subject: SubjectModel, inputs: GroupInputs, num_windows: int
) -> Callable[[Member], dict[str, float]]:
    """The spliced evaluation of a member on the held-out windows (full LM restored)."""
    windows = None

    def evaluate(member: Member) -> dict[str, float]:
        nonlocal windows
        if windows is None:
            windows = _eval_windows(inputs, num_windows)
        return _evaluate(member.job, inputs, member.sae, subject, windows)

    return evaluate


def _eval_windows(inputs: GroupInputs, num_windows: int) -> Any:
    windows = inputs.windows("collect")[:num_windows]
    if len(windows) == 0:
        raise ValueError("the collect split is empty: raise collect.num_tokens")
    return windows


def _evaluate(
    job: TrainJob, inputs: GroupInputs, sae: nn.Module, subject: SubjectModel, windows: Any
) -> dict:
    was_training = sae.training
    sae.eval()
    try:
        with subject.full_model() as lm:
            return evaluate_spliced(
                sae, lm, windows, inputs.exclude_first, hookpoint=job.hookpoint, target=job.target
            )
    finally:
        sae.train(was_training)


def _finish(
    trainer: GroupTrainer, member: Member, inputs: GroupInputs, subject: SubjectModel
) -> dict[str, Any]:
    """Save the member's dictionary, evaluate it, write its summary."""
    if (done := _finished(member.job)) is not None:
        return done
    inference = member.sae.to_inference()
    figures = _training_figures(trainer, member)
    return _save_and_evaluate(member.job, inputs, inference, subject, figures)


def _save_and_evaluate(
    job: TrainJob,
    inputs: GroupInputs,
    sae: nn.Module,
    subject: SubjectModel,
    figures: dict[str, Any],
) -> dict[str, Any]:
    """Save ``sae`` (unless an earlier attempt did), run the spliced evaluation on the
    held-out windows, and commit the summary = evaluation + ``figures``."""
    if not (job.sae_dir / WEIGHTS_FILE).is_file():
        remove_stale_tmp(job.sae_dir.parent)  # half-written copies of killed attempts
        save_sae(sae, job.sae_dir)
    t0 = time.perf_counter()
    windows = _eval_windows(inputs, EVAL_WINDOWS)
    summary = {
        **_evaluate(job, inputs, sae, subject, windows),
        "eval_s": time.perf_counter() - t0,
    }
    summary.update(figures)
    atomic_write_json(job.summary_file, summary)
    log.info("finished %s: %s", job.sae_dir, summary)
    return summary


def _training_figures(trainer: GroupTrainer, member: Member) -> dict[str, Any]:
    sae, job = member.sae, member.job
    figures = {
        "architecture": job.sae.architecture,
        "hookpoint": job.hookpoint,
        "dead_pct": member.dead_pct(),
        "dead_window_tokens": trainer.plan.dead_window,
        "num_latents": int(sae.num_latents),
        "tokens": trainer.tokens,
        "steps": trainer.step,
        "wall_s": trainer.wall_s,
        "tokens_per_s": trainer.tokens / max(trainer.wall_s, 1e-9),
        "group_size": len(trainer.member_ids),
    }
    if job.target != job.hookpoint:
        figures["target_hookpoint"] = job.target
    if getattr(sae, "k", None) is not None:
        figures["k"] = int(sae.k)
    return figures
