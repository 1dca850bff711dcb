"""interpret: one latent range -> one record per latent (explanation, scores, costs).

Reads the range from the store once, builds the LLM client once (its response cache
is this range's file in the run folder, so a rerun after preemption re-pays nothing),
then explains and scores latent after latent. Every latent of the range gets exactly
one record, whatever happened to it: ``ok``, ``too_rare``, ``explain_failed`` (raw
reply kept) or ``error`` (traceback kept). Records are written atomically and the task
is committed last.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from tqdm import tqdm

from interp.config import RunConfig
from interp.explain import TokenRenderer, explain
from interp.latents import build_examples
from interp.llm import LLMClient, MeteredClient, TokenUsage, build_client
from interp.models.provision import ModelNotFoundError
from interp.plan import Task
from interp.runs import RunPaths, atomic_write_text, commit_task, is_committed
from interp.score import run_scorers

log = logging.getLogger(__name__)

# A broken setup, not a property of one latent: fail the task instead of recording it.
FATAL = (ModelNotFoundError, MemoryError, ImportError)


def run(cfg: RunConfig, paths: RunPaths, task: Task, should_stop: Callable[[], bool]) -> None:
    manifest = paths.manifest_file("interpret", task.index)
    if is_committed(manifest):
        log.info("interpret range %d [%d, %d) already committed", task.index, task.start, task.stop)
        return
    t0 = time.perf_counter()
    from interp.models.load import load_tokenizer
    from interp.store import StoreReader

    reader = StoreReader(paths.store_dir())
    csr = reader.latent_range(task.start, task.stop)
    token_ids = reader.token_ids()
    render = TokenRenderer(load_tokenizer(cfg.model.name))
    client = build_client(cfg.llm, paths.llm_cache_dir() / f"r{task.index:05d}.jsonl")
    try:
        records = asyncio.run(
            interpret_range(cfg, task, csr, token_ids, render, client, should_stop)
        )
    finally:
        client.close()
    if records is None:
        log.info(
            "interpret range %d stopped early; uncommitted (the cache keeps the work)", task.index
        )
        return
    _check_not_all_errors(records, task)
    atomic_write_text(
        paths.records_file(task.index), "".join(json.dumps(r) + "\n" for r in records)
    )
    commit_task(manifest, _summary(records, time.perf_counter() - t0))
    log.info("interpret range %d committed: %s", task.index, _status_counts(records))


async def interpret_range(
    cfg: RunConfig,
    task: Task,
    csr: Any,
    token_ids: np.ndarray,
    render: TokenRenderer,
    client: LLMClient,
    should_stop: Callable[[], bool],
) -> list[dict[str, Any]] | None:
    """Records of latents ``[task.start, task.stop)`` in order; None if asked to stop."""
    records = []
    bar = tqdm(total=task.stop - task.start, desc=f"interpret r{task.index:05d}", unit="latent")
    with bar:
        for i in range(task.stop - task.start):
            if should_stop():
                return None
            lo, hi = int(csr.offsets[i]), int(csr.offsets[i + 1])
            records.append(
                await interpret_latent(
                    cfg, task.start + i, csr.tok[lo:hi], csr.val[lo:hi], token_ids, render, client
                )
            )
            bar.set_postfix(status=records[-1]["status"], refresh=False)
            bar.update()
    return records


def empty_record(latent: int, tok: np.ndarray, val: np.ndarray) -> dict[str, Any]:
    return {
        "latent": latent,
        "status": "error",
        "n_active_tokens": int(len(tok)),
        "n_active_contexts": 0,
        "max_act": float(np.max(val)) if len(val) else 0.0,
        "explanation": None,
        "raw_explanation": None,
        "scores": {},
        "tokens": {"prompt": 0, "completion": 0, "prompt_computed": 0},
        "wall_s": 0.0,
        "error": None,
    }


async def interpret_latent(
    cfg: RunConfig,
    latent: int,
    tok: np.ndarray,
    val: np.ndarray,
    token_ids: np.ndarray,
    render: TokenRenderer,
    client: LLMClient,
) -> dict[str, Any]:
    """Examples -> explanation -> scores for one latent; any exception becomes the record."""
    t0 = time.perf_counter()
    meter = MeteredClient(client)
    record = empty_record(latent, tok, val)
    try:
        await _fill(record, cfg, latent, tok, val, token_ids, render, meter)
    except FATAL:
        raise
    except Exception as e:  # recorded, never dropped
        record["status"] = "error"
        record["error"] = _error_summary(e)
    u = meter.usage
    record["tokens"] = {
        "prompt": u.prompt,
        "completion": u.completion,
        "prompt_computed": u.prompt_computed,
    }
    record["wall_s"] = round(time.perf_counter() - t0, 3)
    return record


async def _fill(
    record: dict[str, Any],
    cfg: RunConfig,
    latent: int,
    tok: np.ndarray,
    val: np.ndarray,
    token_ids: np.ndarray,
    render: TokenRenderer,
    client: LLMClient,
) -> None:
    icfg = cfg.interpret
    examples = build_examples(tok, val, token_ids, cfg.data.ctx_len, icfg.examples, latent)
    record["n_active_contexts"] = examples.n_active_contexts
    if examples.status == "too_rare":
        record["status"] = "too_rare"
        return
    result = await explain(client, examples.explain, render, icfg.explainer, cfg.llm.temperature)
    record["explanation"], record["raw_explanation"] = result.explanation, result.raw
    if result.status != "ok":
        record["status"] = "explain_failed"
        record["error"] = "no usable 'Explanation:' line in the reply, after one retry"
        return
    rng = np.random.default_rng((icfg.examples.seed, latent, 1))
    outputs = await run_scorers(
        cfg.scorer.names, client, result.explanation, examples, render,
        icfg.explainer.highlight_threshold, rng,
    )  # fmt: skip
    record["scores"] = {name: out.metrics() for name, out in outputs.items()}
    record["status"] = "ok"


def _error_summary(e: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(e))
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _check_not_all_errors(records: list[dict[str, Any]], task: Task) -> None:
    """Every attempted latent raising means a broken setup: fail, so a rerun redoes it."""
    tried = [r for r in records if r["status"] != "too_rare"]
    if len(tried) >= 2 and all(r["status"] == "error" for r in tried):
        raise RuntimeError(
            f"interpret range {task.index}: all {len(tried)} latents failed; first error:\n"
            + tried[0]["error"]
        )


def _status_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def _summary(records: list[dict[str, Any]], wall: float) -> dict[str, Any]:
    total = TokenUsage()
    for r in records:
        t = r["tokens"]
        total.add(TokenUsage(t["prompt"], t["completion"], t["prompt_computed"]))
    tokens = total.as_dict()
    tokens.pop("calls")
    return {
        "n_latents": len(records),
        "n_ok": sum(r["status"] == "ok" for r in records),
        "status_counts": _status_counts(records),
        "tokens": tokens,
        "wall_s": round(wall, 3),
    }
