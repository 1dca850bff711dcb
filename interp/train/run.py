"""Train one SAE end to end: data, subject model, loop, save, held-out evaluation.

Outputs, all under the train stage folder (paths from :class:`interp.runs.RunPaths`):
``sae/<hookpoint>/<sae_id>/`` (sparsify layout), ``metrics.jsonl``, ``checkpoints/`` and
``summary.json`` = {fvu, l0, dead_pct, ce_clean, ce_spliced, ce_increase, kl, tokens,
steps, wall_s, tokens_per_s, ...}. fvu, l0, ce_* and kl are measured on the first 32
windows of the held-out collect split; dead_pct, tokens, steps, wall_s and tokens_per_s
describe training (wall_s sums every attempt, excluding model loading and evaluation).
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from interp.config import RunConfig
from interp.data import load_windows
from interp.models import load_causal_lm, load_subject
from interp.runs import RunPaths, atomic_write_json, remove_stale_tmp
from interp.sae import TopKSAE, save_sae
from interp.sae.io import WEIGHTS_FILE
from interp.train.evaluate import EVAL_WINDOWS, evaluate_spliced
from interp.train.loop import CHECKPOINT_EVERY, Trainer, TrainPlan, fit, resume

log = logging.getLogger(__name__)


def _never_stop() -> bool:
    return False


def train_sae(
    cfg: RunConfig,
    paths: RunPaths,
    should_stop: Callable[[], bool] = _never_stop,
    *,
    checkpoint_every: int = CHECKPOINT_EVERY,
) -> dict[str, Any] | None:
    """Train (or resume), save the SAE, evaluate it; returns the summary, or None when
    ``should_stop`` interrupted training (state is checkpointed, nothing is final)."""
    summary_file = paths.train_summary()
    if summary_file.is_file() and (paths.sae_dir() / WEIGHTS_FILE).is_file():
        return json.loads(summary_file.read_text())  # finished earlier, not yet committed
    windows = load_windows(paths, "train")
    subject = load_subject(cfg.model, cfg.layer)
    num_latents = cfg.sae.num_latents or subject.d_in * cfg.sae.expansion_factor
    plan = TrainPlan.of(cfg, len(windows), num_latents)
    trainer = Trainer(cfg, subject, windows, plan)
    resume(trainer, paths.train_checkpoint_dir())
    done = fit(
        trainer, paths.train_checkpoint_dir(), paths.train_metrics(), should_stop, checkpoint_every
    )
    if not done:
        return None
    if not (paths.sae_dir() / WEIGHTS_FILE).is_file():
        remove_stale_tmp(paths.sae_dir().parent)  # half-written copies of killed attempts
        save_sae(trainer.sae, paths.sae_dir())
    figures = _training_figures(trainer)
    sae = trainer.sae
    del subject, trainer  # free the cut LM, buffer and Adam state before loading the full LM
    gc.collect()
    summary = {**_evaluate(cfg, paths, sae), **figures}
    atomic_write_json(summary_file, summary)
    log.info("trained %s: %s", paths.sae_dir(), summary)
    return summary


def _evaluate(cfg: RunConfig, paths: RunPaths, sae: TopKSAE) -> dict[str, Any]:
    t0 = time.perf_counter()
    windows = load_windows(paths, "collect")[:EVAL_WINDOWS]
    if len(windows) == 0:
        raise ValueError("the collect split is empty: raise collect.num_tokens")
    lm = load_causal_lm(cfg.model.name, cfg.model.dtype, cfg.model.device)
    result = evaluate_spliced(sae.eval(), lm, cfg.layer, windows, cfg.data.exclude_first)
    return {**result, "eval_s": time.perf_counter() - t0}


def _training_figures(trainer: Trainer) -> dict[str, Any]:
    return {
        "dead_pct": trainer.dead_pct(),
        "dead_window_tokens": trainer.plan.dead_window,
        "num_latents": trainer.sae.num_latents,
        "k": trainer.sae.k,
        "tokens": trainer.tokens,
        "steps": trainer.step,
        "wall_s": trainer.wall_s,
        "tokens_per_s": trainer.tokens / max(trainer.wall_s, 1e-9),
    }
