"""Running a :class:`~interp.train.loop.GroupTrainer` to its planned step count:
checkpoint cadence, stop requests, periodic evaluation, metrics.jsonl and wandb logging.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from interp.train.checkpoint import latest_checkpoint
from interp.train.loop import CHECKPOINT_EVERY, GroupTrainer
from interp.train.member import Member, _Interval

log = logging.getLogger(__name__)


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
            _truncate_metrics(m.job.metrics_file, trainer.step)
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
        every = m.job.train.eval_every
        # the final evaluation is the summary's; decisions here are the same on every rank
        evaluate = settings.evaluate is not None and every and step % every == 0 and not last
        if evaluate and trainer.writes(m):
            m.evals = {f"eval_{k}": v for k, v in settings.evaluate(m).items()}
        if step % m.job.train.log_every == 0 or last or evaluate:
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
        self.file = member.job.metrics_file
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
    project = member.job.train.wandb_project
    if not project:
        return None
    try:
        import wandb
    except ImportError:
        log.warning(
            "train.wandb_project=%s but wandb is not installed: metrics.jsonl only", project
        )
        return None
    job = member.job
    return wandb.init(
        project=project,
        name=f"{job.label}/{job.hookpoint}/{job.sae.sae_id}",
        id=member.train_id,
        resume="allow",
        config=job.wandb_config,
        reinit="create_new",
    )


def _progress_bar(trainer: GroupTrainer) -> tqdm:
    quiet = not sys.stderr.isatty()  # batch logs: a line every 30 s, not every second
    hooks = sorted({m.job.hookpoint for m in trainer.members})
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
