"""interpret: one latent range -> one record per latent (explanation, scores, controls, costs).

Wiring only. Reads the range from the store once (checked), builds the LLM client once
(its response cache is this range's file in the run folder, so a rerun after
preemption re-pays nothing; its ledger keeps what every attempt paid), the scorers'
lazily loaded resources and the hard-negative sources, then runs
:func:`interp.interpret.pipeline.interpret_range` and commits the records
(:mod:`interp.records`) and the summary (:mod:`interp.interpret.summary`), the manifest
last. An LLM that is unavailable fails the task uncommitted; a stop request leaves it
uncommitted; every attempted latent failing means a broken setup and fails it too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from interp.config import RunConfig
from interp.explain import TokenRenderer
from interp.interpret.pipeline import LatentRange, RangeConfig, interpret_range
from interp.interpret.summary import check_not_all_errors, client_stats, headline, summarize
from interp.latents.sources import build_negative_sources
from interp.llm import Ledger, LLMClient, build_client
from interp.llm.http import LLMUnavailableError
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed
from interp.score.context import ResourceInputs, ScoreResources
from interp.score.run import resource_factories
from interp.stages.context import StageContext

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> None:
    """Explain and score latent range ``ctx.task`` of the point; with a served LLM, its
    replicas are waited for and watched (:func:`interp.stages.served.attend`)."""
    from interp.stages.served import attend

    with attend(ctx, "interpret") as should_stop:
        interpret_range_task(ctx.cfg, ctx.paths, ctx.task, should_stop)


def interpret_range_task(
    cfg: RunConfig, paths: RunPaths, task: Task, should_stop: Callable[[], bool]
) -> None:
    """The work of one range: read it checked, explain and score, commit its records."""
    manifest = paths.manifest_file("interpret", task.index)
    if is_committed(manifest):
        log.info("interpret range %d [%d, %d) already committed", task.index, task.start, task.stop)
        return
    t0 = time.perf_counter()
    from interp.llm.ledger import read_ledger
    from interp.models.load import load_tokenizer
    from interp.verify import read_checked_latents, write_records

    # read once, checked: raises on damage, naming the file and the fix
    reader, csr, token_ids, unchecked = read_checked_latents(paths, task.start, task.stop)
    if unchecked:
        log.warning("interpret range %d reads groups without checksums: %s", task.index, unchecked)
    tokenizer = load_tokenizer(cfg.model.name)
    client = build_task_client(cfg, paths, task)
    resources = build_resources(cfg, paths)
    try:
        negatives = build_negative_sources(
            cfg.interpret.examples, cfg.data.ctx_len, reader, csr, token_ids,
            tokenizer.decode, partial(resources.get, "embedder"),
        )  # fmt: skip
        records = asyncio.run(
            interpret_range(
                range_config(cfg), LatentRange(task.index, task.start, task.stop), csr,
                token_ids, TokenRenderer(tokenizer), client, should_stop, resources, **negatives,
            )
        )  # fmt: skip
        llm_stats = client_stats(client)
    except LLMUnavailableError as err:
        log.error(
            "interpret range %d: the LLM is unavailable (%s); the range is left uncommitted "
            "and a rerun redoes it (the response cache keeps what finished)", task.index, err
        )  # fmt: skip
        raise
    finally:
        resources.close()
        client.close()
    if records is None:
        log.info(
            "interpret range %d stopped early; uncommitted (the cache keeps the work)", task.index
        )
        return
    check_not_all_errors(records, task.index)
    summary = summarize(records, time.perf_counter() - t0, llm_stats)
    # size and sha256: gather and launch/verify.py check them
    summary["records"] = write_records(paths.records_file(task.index), records)
    summary["tokens_paid"] = read_ledger(paths.llm_ledger_dir(), task.index)  # all attempts
    commit_task(manifest, summary)
    log.info(
        "interpret range %d committed: %s; real vs control: %s",
        task.index, summary["status_counts"], headline(summary["scores"]),
    )  # fmt: skip


def range_config(cfg: RunConfig) -> RangeConfig:
    """What the range's passes read of the run's config."""
    return RangeConfig(cfg.interpret, cfg.scorer, cfg.llm.temperature, cfg.data.ctx_len)


# --------------------------------------------------------------------------- resources
def build_task_client(cfg: RunConfig, paths: RunPaths, task: Task) -> LLMClient:
    """The range's LLM client: its response cache (a rerun re-pays nothing), its ledger
    (what this attempt pays, kept when it is killed) and, when served, discovery."""
    discover = None
    if cfg.serve.enabled:  # replicas that start (or come back) later are picked up too
        from interp.llm.replicas import discoverer, serve_id

        # the scheduler check attend() installed from ctx.jobs_alive applies here
        discover = discoverer(paths.root, serve_id(cfg.llm, cfg.serve))
    return build_client(
        cfg.llm, paths.llm_cache_dir() / f"r{task.index:05d}.jsonl", discover=discover,
        ledger=Ledger(paths.llm_ledger_dir(), task.index),
    )  # fmt: skip


def build_resources(cfg: RunConfig, paths: RunPaths) -> ScoreResources:
    """Factories of the task-wide resources the configured scorers declare (their specs)
    and of the embedder examples.negatives='similar' uses; nothing loads until asked."""
    inputs = ResourceInputs(
        cfg.model, cfg.target, cfg.data.prepend_bos, paths.sae_dir(), paths.ids.point
    )
    return ScoreResources(
        {"embedder": _load_embedder, **resource_factories(cfg.scorer.names, inputs)}
    )


def _load_embedder() -> Any:
    from interp.models.embedder import load_embedder

    return load_embedder()
