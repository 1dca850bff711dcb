"""interpret: one latent range -> one record per latent (explanation, scores, controls, costs).

Wiring only. The task's latents are positions ``[start, stop)`` of the point's selection
(``interpret.latents``, resolved the same in every task; :mod:`interp.stages.selected`);
those a sibling selection already committed are copied, not recomputed. Reads the rest
from the store once (checked), builds the LLM client once
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

import numpy as np

from interp.config import RunConfig
from interp.explain import TokenRenderer
from interp.interpret.pipeline import LatentRange, interpret_range
from interp.interpret.summary import check_not_all_errors, client_stats, headline, summarize
from interp.latents.sources import build_negative_sources
from interp.llm.http import LLMUnavailableError
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed
from interp.stages.context import StageContext
from interp.stages.interpret_io import build_resources, build_task_client, range_config
from interp.stages.selected import describe, reusable_records, selected_ids

__all__ = ["build_resources", "build_task_client", "range_config", "run"]

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
    """The work of one range: its selected latents, those other selections already
    recorded (:mod:`interp.stages.selected`), the rest explained and scored; commit."""
    manifest = paths.manifest_file("interpret", task.index)
    if is_committed(manifest):
        log.info("interpret range %d [%d, %d) already committed", task.index, task.start, task.stop)
        return
    t0 = time.perf_counter()
    from interp.llm.ledger import read_ledger
    from interp.verify import write_records

    selection = selected_ids(cfg, paths)
    ids = tuple(int(i) for i in selection[task.start : task.stop])
    reused, origin = reusable_records(cfg, paths, ids)
    fresh = [i for i in ids if i not in reused]
    latents = LatentRange(task.index, task.start, task.stop, ids)
    records, llm_stats = _compute(cfg, paths, latents, fresh, reused, should_stop)
    if records is None:
        log.info(
            "interpret range %d stopped early; uncommitted (the cache keeps the work)", task.index
        )
        return
    check_not_all_errors([r for r in records if r.latent not in reused], task.index)
    summary = summarize(records, time.perf_counter() - t0, llm_stats)
    summary.update(
        selection=describe(cfg), n_selected=len(selection), latents=list(ids), reused=origin
    )
    # size and sha256: gather and launch/verify.py check them
    summary["records"] = write_records(paths.records_file(task.index), records)
    summary["tokens_paid"] = read_ledger(paths.llm_ledger_dir(), task.index)  # all attempts
    commit_task(manifest, summary)
    log.info(
        "interpret range %d committed: %s (%d reused); real vs control: %s",
        task.index, summary["status_counts"], len(reused), headline(summary["scores"]),
    )  # fmt: skip


def _pool(cfg: RunConfig, reader: Any) -> Any:
    """The whole dictionary as control sources (interpret.control_source=dictionary)."""
    icfg = cfg.interpret
    if not (icfg.control and icfg.control_source == "dictionary"):
        return None
    from interp.interpret.controls import store_pool

    return store_pool(
        reader, icfg.examples.min_examples, icfg.control_max_overlap, icfg.examples.seed
    )


def _compute(
    cfg: RunConfig,
    paths: RunPaths,
    task: LatentRange,
    fresh: list[int],
    reused: dict[int, Any],
    should_stop: Callable[[], bool],
) -> tuple[list[Any] | None, dict[str, Any]]:
    """Records of ``task.ids`` (None if stopped) and the LLM client's stats: the
    ``fresh`` latents read checked from the store, explained and scored."""
    if not fresh:  # every latent reused (or a sample shorter than its array): no LLM
        return [reused[i] for i in task.ids], {}
    from interp.interpret.select import runs
    from interp.models.load import load_tokenizer
    from interp.verify import read_checked_latents

    # read once, checked: raises on damage, naming the file and the fix
    reader, csr, token_ids, unchecked = read_checked_latents(
        paths, fresh[0], fresh[-1] + 1, runs(np.asarray(fresh))
    )
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
                range_config(cfg), task, csr, token_ids, TokenRenderer(tokenizer), client,
                should_stop, resources, **negatives, reused=reused, pool=_pool(cfg, reader),
            )
        )  # fmt: skip
        return records, client_stats(client)
    except LLMUnavailableError as err:
        log.error(
            "interpret range %d: the LLM is unavailable (%s); the range is left uncommitted "
            "and a rerun redoes it (the response cache keeps what finished)", task.index, err
        )  # fmt: skip
        raise
    finally:
        resources.close()
        client.close()
