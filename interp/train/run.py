"""Train a group of SAEs end to end: data, subject model, loop, save, held-out evaluation.

Each member writes, under its own point's train folder (paths from
:class:`interp.runs.RunPaths`): ``sae/<hookpoint>/<sae_id>/`` (sparsify layout),
``metrics.jsonl`` and ``summary.json`` = {fvu, l0, dead_pct, ce_clean, ce_spliced,
ce_increase, kl, tokens, steps, wall_s, tokens_per_s, ...}. fvu, l0, ce_* and kl are
measured on the first 32 windows of the held-out collect split; dead_pct, tokens, steps,
wall_s and tokens_per_s describe training (wall_s sums every attempt, excluding model
loading and evaluation; tokens_per_s is the group's: every member saw every token). The
group's resume checkpoints live in ``RunPaths.train_group_dir(<group id>)``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from interp.config import RunConfig
from interp.data import load_windows
from interp.models import SubjectModel, load_subject
from interp.runs import RunPaths, atomic_write_json, remove_stale_tmp
from interp.sae import save_sae
from interp.sae.io import WEIGHTS_FILE
from interp.train.distributed import Dist, single_process
from interp.train.evaluate import EVAL_WINDOWS, evaluate_spliced
from interp.train.group import check_group, train_group_id, train_group_key
from interp.train.loop import (
    FitSettings,
    GroupTrainer,
    Member,
    TrainPlan,
    fit,
)
from interp.train.stream import Columns

log = logging.getLogger(__name__)

__all__ = ["train_group", "train_group_key", "train_sae"]

Members = Sequence[tuple[RunConfig, RunPaths]]


def _never_stop() -> bool:
    return False


def _finished(paths: RunPaths) -> dict[str, Any] | None:
    summary_file = paths.train_summary()
    if summary_file.is_file() and (paths.sae_dir() / WEIGHTS_FILE).is_file():
        return json.loads(summary_file.read_text())
    return None


def train_sae(
    cfg: RunConfig,
    paths: RunPaths,
    should_stop: Callable[[], bool] = _never_stop,
    *,
    checkpoint_every: int | None = None,
    dist: Dist | None = None,
) -> dict[str, Any] | None:
    """Train (or resume), save and evaluate one SAE: a group of one (:func:`train_group`)."""
    summaries = train_group(
        [(cfg, paths)], should_stop, checkpoint_every=checkpoint_every, dist=dist
    )
    return None if summaries is None else summaries[0]


def train_group(
    members: Members,
    should_stop: Callable[[], bool] = _never_stop,
    *,
    checkpoint_every: int | None = None,
    dist: Dist | None = None,
) -> list[dict[str, Any] | None] | None:
    """Train every member's SAE from one LM forward per batch, then save and evaluate
    each. Returns the members' summaries (None for members this rank does not write),
    or None when ``should_stop`` interrupted training (state is checkpointed, nothing
    is final; calling again resumes). ``checkpoint_every`` overrides the members'
    ``train.checkpoint_every`` (the group saves at the smallest)."""
    cfgs = [c for c, _ in members]
    check_group(cfgs)
    done = [_finished(p) for _, p in members]
    if all(s is not None for s in done):
        return done  # finished earlier, not yet committed
    dist = dist or single_process(_device_of(cfgs[0]))
    subject = _load_subject(cfgs)
    out: list[dict[str, Any] | None] = [None] * len(members)
    trained = [i for i, c in enumerate(cfgs) if c.sae.spec.trained]
    if trained:
        summaries = _train(
            [members[i] for i in trained], subject, dist, should_stop, checkpoint_every
        )
        if summaries is None:
            return None
        for i, summary in zip(trained, summaries):
            out[i] = summary
    for i, (cfg, paths) in enumerate(members):
        if not cfg.sae.spec.trained and dist.is_main:
            out[i] = _finish_fixed(cfg, paths, subject)
    return out


def _train(
    members: Members,
    subject: SubjectModel,
    dist: Dist,
    should_stop: Callable[[], bool],
    checkpoint_every: int | None,
) -> list[dict[str, Any] | None] | None:
    """Fit the trainable members together; summaries aligned with ``members``."""
    cfgs = [c for c, _ in members]
    columns = Columns(subject.hookpoints, subject.widths)
    trainer = _build_trainer(members, subject, columns, dist)
    paths0 = members[0][1]
    settings = FitSettings(
        checkpoint_dir=paths0.train_group_checkpoint_dir(train_group_id(cfgs)),
        checkpoint_every=checkpoint_every or min(c.train.checkpoint_every for c in cfgs),
        keep_checkpoints=max(c.train.keep_checkpoints for c in cfgs),
        evaluate=partial_evaluate(subject, paths0, EVAL_WINDOWS),
    )
    trainer.resume(settings.checkpoint_dir)
    if not fit(trainer, settings, should_stop):
        return None
    written = {m.index: _finish(trainer, m, subject) for m in trainer.members if trainer.writes(m)}
    return [written.get(i) for i in range(len(members))]  # aligned with ``members``


def _finish_fixed(cfg: RunConfig, paths: RunPaths, subject: SubjectModel) -> dict[str, Any]:
    """A dictionary that is built, not trained (neurons): save, evaluate, summarise."""
    if (done := _finished(paths)) is not None:
        return done
    from interp.train.loop import build_dictionary

    width = subject.widths[cfg.hookpoint]
    sae = build_dictionary(cfg, width, width, subject.device)
    figures = {
        "architecture": cfg.sae.architecture,
        "rotate": cfg.sae.rotate,
        "hookpoint": cfg.hookpoint,
        "num_latents": int(sae.num_latents),
        "k": int(sae.k),
        "dead_pct": None,  # not trained: no firing statistics
        "tokens": 0,
        "steps": 0,
        "wall_s": 0.0,
    }
    return _save_and_evaluate(cfg, paths, sae, subject, figures)


def _device_of(cfg: RunConfig) -> Any:
    from interp.models import resolve_device

    return resolve_device(cfg.model.device)


def _load_subject(cfgs: Sequence[RunConfig]) -> SubjectModel:
    """The subject LM capturing every member's input and target hookpoints, cut after the
    deepest; layers past the cut are kept for spliced evaluation."""
    hookpoints = list(dict.fromkeys(h for c in cfgs for h in (c.hookpoint, c.target)))
    return load_subject(cfgs[0].model, hookpoints=hookpoints, keep_full=True)


def _build_trainer(
    members: Members, subject: SubjectModel, columns: Columns, dist: Dist
) -> GroupTrainer:
    cfg, paths = members[0]
    windows = dist.shard_windows(load_windows(paths, "train"))
    gathered = dist.strategy == "shard_hookpoints" and dist.world_size > 1
    num_windows = len(windows) * (dist.world_size if gathered else 1)
    data_parallel = 1 if gathered else dist.world_size
    plan = TrainPlan.of(cfg, num_windows, data_parallel)
    for c, _ in members:
        if c.train.warmup_steps >= plan.num_steps:
            log.warning(
                "%s: train.warmup_steps=%d >= the run's %d steps: the lr never reaches its peak",
                c.hookpoint,
                c.train.warmup_steps,
                plan.num_steps,
            )
    return GroupTrainer(members, subject, windows, plan, dist, columns)


def partial_evaluate(
    subject: SubjectModel, paths: RunPaths, num_windows: int
) -> Callable[[Member], dict[str, float]]:
    """The spliced evaluation of a member on the held-out windows (full LM restored)."""
    windows = None

    def evaluate(member: Member) -> dict[str, float]:
        nonlocal windows
        if windows is None:
            windows = load_windows(paths, "collect")[:num_windows]
            if len(windows) == 0:
                raise ValueError("the collect split is empty: raise collect.num_tokens")
        return _evaluate(member.cfg, member.sae, subject, windows)

    return evaluate


def _evaluate(cfg: RunConfig, sae: nn.Module, subject: SubjectModel, windows: Any) -> dict:
    was_training = sae.training
    sae.eval()
    try:
        with subject.full_model() as lm:
            return evaluate_spliced(
                sae,
                lm,
                windows,
                cfg.data.exclude_first,
                hookpoint=cfg.hookpoint,
                target=cfg.target,
            )
    finally:
        sae.train(was_training)


def _finish(trainer: GroupTrainer, member: Member, subject: SubjectModel) -> dict[str, Any]:
    """Save the member's dictionary, evaluate it, write its summary."""
    if (done := _finished(member.paths)) is not None:
        return done
    inference = member.sae.to_inference()
    figures = _training_figures(trainer, member)
    return _save_and_evaluate(member.cfg, member.paths, inference, subject, figures)


def _save_and_evaluate(
    cfg: RunConfig,
    paths: RunPaths,
    sae: nn.Module,
    subject: SubjectModel,
    figures: dict[str, Any],
) -> dict[str, Any]:
    """Save ``sae`` (unless an earlier attempt did), run the spliced evaluation on the
    held-out windows, and commit the summary = evaluation + ``figures``."""
    if not (paths.sae_dir() / WEIGHTS_FILE).is_file():
        remove_stale_tmp(paths.sae_dir().parent)  # half-written copies of killed attempts
        save_sae(sae, paths.sae_dir())
    t0 = time.perf_counter()
    windows = load_windows(paths, "collect")[:EVAL_WINDOWS]
    if len(windows) == 0:
        raise ValueError("the collect split is empty: raise collect.num_tokens")
    summary = {**_evaluate(cfg, sae, subject, windows), "eval_s": time.perf_counter() - t0}
    summary.update(figures)
    atomic_write_json(paths.train_summary(), summary)
    log.info("finished %s: %s", paths.sae_dir(), summary)
    return summary


def _training_figures(trainer: GroupTrainer, member: Member) -> dict[str, Any]:
    sae = member.sae
    figures = {
        "architecture": member.cfg.sae.architecture,
        "hookpoint": member.cfg.hookpoint,
        "dead_pct": member.dead_pct(),
        "dead_window_tokens": trainer.plan.dead_window,
        "num_latents": int(sae.num_latents),
        "tokens": trainer.tokens,
        "steps": trainer.step,
        "wall_s": trainer.wall_s,
        "tokens_per_s": trainer.tokens / max(trainer.wall_s, 1e-9),
        "group_size": len(trainer.member_ids),
    }
    if member.cfg.target != member.cfg.hookpoint:
        figures["target_hookpoint"] = member.cfg.target
    if getattr(sae, "k", None) is not None:
        figures["k"] = int(sae.k)
    return figures
