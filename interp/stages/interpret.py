"""interpret: one latent range -> one record per latent (explanation, scores, controls, costs).

Reads the range from the store once, builds the LLM client once (its response cache
is this range's file in the run folder, so a rerun after preemption re-pays nothing),
then works in two passes over the range:

1. explain every latent (or build its single-token explanation, no LLM);
2. score every explained latent's explanation, then its random-explanation control
   (another latent's explanation of this range, a fixed derangement, scored with the
   same examples and the same random draws), then the single-token baseline if asked.

Every latent gets exactly one record, whatever happened to it: ``ok``, ``too_rare``
(the reason in ``error``), ``explain_failed`` (every raw reply kept, nothing scored)
or ``error`` (traceback, and the raw reply when the LLM sent an unusable one). An LLM
that is *unavailable* (after the client's retries: no replica, timeouts, 429, 5xx) is
not a property of the latent and is never recorded: the task raises, uncommitted, and a
rerun redoes the range (the response cache keeps every call that finished). Records
are written atomically and the task is committed last; a stop request leaves it
uncommitted. Heavy scorer resources (sentence embedder, subject model for steering)
load lazily, once per task, through :class:`ScoreResources` factories.

Record keys: latent, status, n_active_tokens, n_active_contexts, max_act, explanation,
raw_explanation, negatives {explain|score: {kind: count}}, scores {scorer: metrics}, control {explanation, source_latent, scores,
error} | None, baseline {explanation, scores, error} | None, tokens {prompt,
completion, prompt_computed, usage_tokenizer, usage_missing, parts:
{explain|score|control|baseline: ...}}, retries, wall_s, error. ``retries`` counts the
explainer's re-asks after unusable replies; transport retries of the backend (timeouts,
429/5xx) are per task, in the summary's ``llm`` counters. ``usage_tokenizer`` /
``usage_missing`` count the latent's calls whose server sent no token counts (counted
with ``llm.tokenizer`` / recorded as 0; :mod:`interp.llm.usage`).

Records count the tokens of the attempt that wrote them (cache hits as cached). What
every attempt paid, killed ones included, is in the range's LLM ledger
(:mod:`interp.llm.ledger`); the manifest's ``tokens_paid`` sums it at commit.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import traceback
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from interp.config import RunConfig
from interp.explain import TokenRenderer, derangement, explain, single_token_explanation
from interp.latents import CooccurrenceIndex, SimilarPool, build_examples, index_for_range
from interp.latents.examples import LatentExamples
from interp.llm import Ledger, LLMClient, MeteredClient, TokenUsage, build_client
from interp.llm.http import LLMUnavailableError
from interp.models.provision import ModelNotFoundError
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed
from interp.score import run_scorers
from interp.score.context import ScoreContext, ScoreResources
from interp.stages.context import StageContext

log = logging.getLogger(__name__)

# A broken setup, not a property of one latent: fail the task instead of recording it.
# LLMUnavailableError: no replica answers, or every retry met a timeout, 429 or 5xx; the
# range stops uncommitted (the response cache keeps the work) so `rerun` redoes it.
FATAL = (ModelNotFoundError, MemoryError, ImportError, LLMUnavailableError)
PARTS = ("explain", "score", "control", "baseline")
RAW_LIMIT = 2000  # characters of an unusable LLM response kept on the record


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
    render = TokenRenderer(tokenizer)
    client = build_task_client(cfg, paths, task)
    resources = build_resources(cfg, paths)
    try:
        negatives = build_negative_sources(cfg, reader, csr, token_ids, tokenizer, resources)
        records = asyncio.run(
            interpret_range(
                cfg, task, csr, token_ids, render, client, should_stop, resources, **negatives
            )
        )
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
    check_not_all_errors(records, task)
    digest = write_records(paths.records_file(task.index), records)
    summary = summarize(records, time.perf_counter() - t0, llm_stats)
    summary["records"] = digest  # size and sha256: gather and launch/verify.py check them
    summary["tokens_paid"] = read_ledger(paths.llm_ledger_dir(), task.index)  # all attempts
    commit_task(manifest, summary)
    log.info(
        "interpret range %d committed: %s; real vs control: %s",
        task.index, summary["status_counts"], _headline(summary["scores"]),
    )  # fmt: skip


# --------------------------------------------------------------------------- resources
def build_task_client(cfg: RunConfig, paths: RunPaths, task: Task) -> LLMClient:
    """The range's LLM client: its response cache (a rerun re-pays nothing), its ledger
    (what this attempt pays, kept when it is killed) and, when served, discovery."""
    discover = None
    if cfg.serve.enabled:  # replicas that start (or come back) later are picked up too
        from interp.llm.replicas import discoverer, serve_id

        # the scheduler check the cluster edge installed (replicas.scheduler) applies here
        discover = discoverer(paths.root, serve_id(cfg))
    return build_client(
        cfg.llm, paths.llm_cache_dir() / f"r{task.index:05d}.jsonl", discover=discover,
        ledger=Ledger(paths.llm_ledger_dir(), task.index),
    )  # fmt: skip


def build_resources(cfg: RunConfig, paths: RunPaths) -> ScoreResources:
    """Factories of the task-wide scorer resources; nothing loads until a scorer asks."""
    return ScoreResources(
        {"embedder": _load_embedder, "subject": partial(_load_subject, cfg, paths)}
    )


def build_negative_sources(
    cfg: RunConfig,
    reader: Any,
    csr: Any,
    token_ids: np.ndarray,
    tokenizer: Any,
    resources: ScoreResources,
) -> dict[str, Any]:
    """What ``examples.negatives`` needs, built once per task: a co-occurrence index over
    this range ('neighbours') or an embedded pool of candidate windows ('similar')."""
    ecfg = cfg.interpret.examples
    if ecfg.negatives == "neighbours":
        return {"cooccurrence": index_for_range(reader, csr, ecfg.neighbour_tokens)}
    if ecfg.negatives == "similar":
        embedder = resources.get("embedder")  # shared with the embedding scorer
        pool = SimilarPool.build(token_ids, cfg.data.ctx_len, ecfg, embedder, tokenizer.decode)
        return {"similar": pool}
    return {}


def _load_embedder() -> Any:
    from interp.models.embedder import load_embedder

    return load_embedder()


def _load_subject(cfg: RunConfig, paths: RunPaths) -> Any:
    """The subject model with this run's dictionary, for the intervention scorer.

    Hook for the intervention scorer's owner: ``interp.score.intervention.load_subject``
    builds it; imported only when a scorer asks for "subject".
    """
    from interp.score.intervention import load_subject

    return load_subject(cfg, paths)


# --------------------------------------------------------------------------- the range
@dataclass
class LatentWork:
    """One latent through both passes: its examples, record, meters and wall time."""

    latent: int
    examples: LatentExamples | None
    record: dict[str, Any]
    baseline: str | None = None  # single-token explanation to score, if enabled
    meters: dict[str, MeteredClient] = field(default_factory=dict)
    wall: float = 0.0

    def meter(self, part: str, client: LLMClient) -> MeteredClient:
        if part not in self.meters:
            self.meters[part] = MeteredClient(client)
        return self.meters[part]


async def interpret_range(
    cfg: RunConfig,
    task: Task,
    csr: Any,
    token_ids: np.ndarray,
    render: TokenRenderer,
    client: LLMClient,
    should_stop: Callable[[], bool],
    resources: ScoreResources | None = None,
    *,
    cooccurrence: CooccurrenceIndex | None = None,
    similar: SimilarPool | None = None,
) -> list[dict[str, Any]] | None:
    """Records of latents ``[task.start, task.stop)`` in order; None if asked to stop.

    ``cooccurrence`` / ``similar``: the sources of hard negatives that
    ``examples.negatives`` asks for (see :func:`build_negative_sources`).
    """
    resources = resources if resources is not None else ScoreResources()
    prepare = partial(
        _prepare, cfg, csr=csr, token_ids=token_ids, negatives=(cooccurrence, similar)
    )
    work = [prepare(task.start + i, i) for i in range(task.stop - task.start)]
    todo = [w for w in work if w.record["status"] == "pending"]
    explain_one = partial(explain_latent, cfg=cfg, render=render, client=client)
    if not await _each(todo, explain_one, cfg, should_stop, f"explain r{task.index:05d}"):
        return None
    explained = [w for w in todo if w.record["explanation"] is not None]
    sources = _controls(cfg, task, explained)
    score_one = partial(
        score_latent, cfg=cfg, render=render, client=client, resources=resources, sources=sources
    )
    if not await _each(explained, score_one, cfg, should_stop, f"score r{task.index:05d}"):
        return None
    return [_finish(w) for w in work]


async def _each(
    items: Sequence[LatentWork],
    fn: Callable[[LatentWork], Awaitable[None]],
    cfg: RunConfig,
    should_stop: Callable[[], bool],
    desc: str,
) -> bool:
    """``fn`` on every item, ``max_concurrent_latents`` at a time; False if asked to stop."""
    gate = asyncio.Semaphore(cfg.interpret.max_concurrent_latents)
    stopped = False
    bar = tqdm(total=len(items), desc=desc, unit="latent")

    async def one(w: LatentWork) -> None:
        nonlocal stopped
        async with gate:
            if stopped or should_stop():
                stopped = True
                return
            t0 = time.perf_counter()
            await fn(w)
            w.wall += time.perf_counter() - t0
            bar.set_postfix(status=w.record["status"], refresh=False)
            bar.update()

    with bar:
        await asyncio.gather(*(one(w) for w in items))
    return not stopped


def empty_record(latent: int, tok: np.ndarray, val: np.ndarray) -> dict[str, Any]:
    return {
        "latent": latent,
        "status": "pending",
        "n_active_tokens": int(len(tok)),
        "n_active_contexts": 0,
        "max_act": float(np.max(val)) if len(val) else 0.0,
        "explanation": None,
        "raw_explanation": None,
        "negatives": None,
        "scores": {},
        "control": None,
        "baseline": None,
        "tokens": {k: 0 for k in TokenUsage().as_dict() if k != "calls"},
        "retries": 0,
        "wall_s": 0.0,
        "error": None,
    }


def _prepare(
    cfg: RunConfig,
    latent: int,
    i: int,
    *,
    csr: Any,
    token_ids: np.ndarray,
    negatives: tuple[CooccurrenceIndex | None, SimilarPool | None],
) -> LatentWork:
    """The latent's examples; too rare or unreadable latents get their final record here."""
    lo, hi = int(csr.offsets[i]), int(csr.offsets[i + 1])
    tok, val = csr.tok[lo:hi], csr.val[lo:hi]
    record = empty_record(latent, tok, val)
    icfg = cfg.interpret
    try:
        examples = build_examples(
            tok, val, token_ids, cfg.data.ctx_len, icfg.examples, latent,
            cooccurrence=negatives[0], similar=negatives[1],
        )  # fmt: skip
        record["negatives"] = examples.negative_kinds()
    except FATAL:
        raise
    except Exception as e:  # recorded, never dropped
        _fail(record, e)
        return LatentWork(latent, None, record)
    record["n_active_contexts"] = examples.n_active_contexts
    if examples.status != "ok":
        record["status"] = examples.status
        record["error"] = getattr(examples, "reason", "") or (
            f"{examples.n_active_contexts} activating contexts < "
            f"interpret.examples.min_examples={icfg.examples.min_examples}"
        )
    return LatentWork(latent, examples, record)


# --------------------------------------------------------------------------- pass 1
async def explain_latent(
    w: LatentWork, *, cfg: RunConfig, render: TokenRenderer, client: LLMClient
) -> None:
    """Fill the explanation (or explain_failed / error) of one latent; never raises."""
    try:
        await _bounded(_explain(w, cfg, render, w.meter("explain", client)), cfg, "explain")
    except FATAL:
        raise
    except Exception as e:
        _fail(w.record, e, into="raw_explanation")


async def _explain(w: LatentWork, cfg: RunConfig, render: TokenRenderer, client: LLMClient) -> None:
    ecfg, record, ex = cfg.interpret.explainer, w.record, w.examples
    assert ex is not None
    token_expl = single_token_explanation(
        ex.explain, render, ecfg.highlight_threshold, ecfg.n_single_tokens
    )
    if ecfg.kind == "single_token":
        record["explanation"] = record["raw_explanation"] = token_expl
        if token_expl is None:
            record["status"] = "explain_failed"
            record["error"] = "single_token: no token of the explain examples is marked"
        return
    if cfg.interpret.baseline:
        w.baseline = token_expl
    negatives = getattr(ex, "explain_inactive", [])
    result = await explain(client, ex.explain, render, ecfg, cfg.llm.temperature, negatives)
    record["explanation"], record["raw_explanation"] = result.explanation, result.raw
    record["retries"] += result.attempts - 1
    if result.status != "ok":
        record["status"] = "explain_failed"
        record["error"] = (
            f"no usable explanation in {result.attempts} replies: {'; '.join(result.failures)}"
        )


# --------------------------------------------------------------------------- pass 2
def _controls(cfg: RunConfig, task: Task, explained: list[LatentWork]) -> dict[int, LatentWork]:
    """latent -> the latent whose explanation is its random control (none if disabled)."""
    if not cfg.interpret.control:
        return {}
    by_latent = {w.latent: w for w in explained}
    pairs = derangement(list(by_latent), (cfg.interpret.examples.seed, task.start))
    return {latent: by_latent[src] for latent, src in pairs.items()}


async def score_latent(
    w: LatentWork,
    *,
    cfg: RunConfig,
    render: TokenRenderer,
    client: LLMClient,
    resources: ScoreResources,
    sources: dict[int, LatentWork],
) -> None:
    """Score the explanation, then the control and the baseline; never raises."""
    try:
        await _bounded(_score(w, cfg, render, client, resources, sources), cfg, "score")
    except FATAL:
        raise
    except Exception as e:
        _fail(w.record, e)


async def _score(
    w: LatentWork,
    cfg: RunConfig,
    render: TokenRenderer,
    client: LLMClient,
    resources: ScoreResources,
    sources: dict[int, LatentWork],
) -> None:
    record = w.record
    score = partial(_score_explanation, w, cfg, render, resources=resources)
    scores, errors = await score(w.meter("score", client), record["explanation"])
    record["scores"] = scores
    if errors:
        record["status"] = "error"
        record["error"] = _scorer_errors(errors)
    else:
        record["status"] = "ok"
    if cfg.interpret.control:
        src = sources.get(w.latent)
        if src is None:
            record["control"] = _part(None, {}, {}, "no other latent of this range was explained")
        else:
            expl = src.record["explanation"]
            c_scores, c_errors = await score(w.meter("control", client), expl)
            record["control"] = _part(expl, c_scores, c_errors) | {"source_latent": src.latent}
    if cfg.interpret.baseline and cfg.interpret.explainer.kind != "single_token":
        if w.baseline is None:
            record["baseline"] = _part(None, {}, {}, "no token of the explain examples is marked")
        else:
            b_scores, b_errors = await score(w.meter("baseline", client), w.baseline)
            record["baseline"] = _part(w.baseline, b_scores, b_errors)


def _part(
    explanation: str | None, scores: dict, errors: dict, error: str | None = None
) -> dict[str, Any]:
    return {
        "explanation": explanation,
        "scores": scores,
        "error": error or (_scorer_errors(errors) if errors else None),
    }


async def _score_explanation(
    w: LatentWork,
    cfg: RunConfig,
    render: TokenRenderer,
    client: LLMClient,
    explanation: str,
    *,
    resources: ScoreResources,
) -> tuple[dict[str, Any], dict[str, BaseException]]:
    """Every configured scorer on one explanation: (metrics by scorer, errors by scorer).

    Each scorer gets its own random stream, seeded by (seed, latent, scorer): the real
    explanation, its control and the baseline see exactly the same examples and draws.
    """
    assert w.examples is not None
    names = list(cfg.scorer.names)

    def context(name: str) -> ScoreContext:
        seed = (cfg.interpret.examples.seed, w.latent, zlib.crc32(name.encode()))
        return ScoreContext(
            w.latent, client, w.examples, render, cfg.scorer,
            cfg.interpret.explainer.highlight_threshold, np.random.default_rng(seed), resources,
        )  # fmt: skip

    outs = await asyncio.gather(
        *(run_one_scorer(n, context(n), explanation) for n in names), return_exceptions=True
    )
    scores, errors = {}, {}
    for name, out in zip(names, outs):
        if isinstance(out, FATAL):
            raise out
        if isinstance(out, BaseException):
            errors[name] = out
        else:
            scores[name] = out.metrics()
    return scores, errors


async def run_one_scorer(name: str, ctx: ScoreContext, explanation: str) -> Any:
    """One scorer through the registry in ``interp.score``."""
    return (await run_scorers((name,), ctx, explanation))[name]


# --------------------------------------------------------------------------- failures
async def _bounded(coro: Awaitable[None], cfg: RunConfig, what: str) -> None:
    """Run one latent's pass under ``interpret.latent_timeout_s`` (0 = no limit)."""
    limit = cfg.interpret.latent_timeout_s
    if not limit:
        await coro
        return
    try:
        await asyncio.wait_for(coro, limit)
    except TimeoutError as e:
        raise TimeoutError(
            f"the {what} pass of this latent took over interpret.latent_timeout_s={limit} s"
        ) from e


def raw_text(e: BaseException) -> str | None:
    """The unusable response an LLM error carries (``raw``/``raw_text``), if any."""
    for attr in ("raw", "raw_text", "body"):
        value = getattr(e, attr, None)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value:
            return value[:RAW_LIMIT]
    return None


def _fail(record: dict[str, Any], e: BaseException, into: str | None = None) -> None:
    """Mark the record as an error with the traceback; the raw response also ``into``."""
    record["status"] = "error"
    record["error"] = error_summary(e)
    raw = raw_text(e)
    if raw is not None and into is not None:
        prev = record.get(into)
        record[into] = raw if not prev else f"{prev}\n---\n{raw}"


def _scorer_errors(errors: dict[str, BaseException]) -> str:
    return "\n".join(f"scorer {n} failed: {error_summary(e, 1500)}" for n, e in errors.items())


def error_summary(e: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(e))
    raw = raw_text(e)
    if raw is not None and raw not in text:
        text += f"raw response: {raw}\n"
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _finish(w: LatentWork) -> dict[str, Any]:
    """The final record: token counts (total and per part), wall time, no 'pending'."""
    record = w.record
    total = TokenUsage()
    parts = {}
    for part in PARTS:
        if part in w.meters:
            u = w.meters[part].usage
            total.add(u)
            parts[part] = {k: getattr(u, k) for k in ("prompt", "completion", "prompt_computed")}
    record["tokens"] = {k: v for k, v in total.as_dict().items() if k != "calls"}
    record["tokens"]["parts"] = parts
    record["wall_s"] = round(w.wall, 3)
    assert record["status"] != "pending", f"latent {w.latent} left pending"
    return record


def check_not_all_errors(records: list[dict[str, Any]], task: Task) -> None:
    """Every attempted latent raising means a broken setup: fail, so a rerun redoes it."""
    tried = [r for r in records if r["status"] not in ("too_rare", "skipped")]
    if len(tried) >= 2 and all(r["status"] == "error" for r in tried):
        raise RuntimeError(
            f"interpret range {task.index}: all {len(tried)} latents failed; first error:\n"
            + tried[0]["error"]
        )


# --------------------------------------------------------------------------- summary
def client_stats(client: Any) -> dict[str, Any]:
    """Counters of the client chain: response-cache hits/misses and the backend's
    ``stats`` (retries, failovers, timeouts, ... of the HTTP backend)."""
    out: dict[str, Any] = {}
    for _ in range(8):  # wrappers expose the wrapped client as ``inner``
        if client is None:
            break
        for name in ("hits", "misses"):
            if isinstance(getattr(client, name, None), int):
                out[f"cache_{name}"] = getattr(client, name)
        stats = getattr(client, "stats", None)
        if isinstance(stats, dict):
            out.update({k: v for k, v in stats.items() if isinstance(v, int | float)})
        client = getattr(client, "inner", None)
    return out


def status_counts(records: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def summarize(
    records: list[dict[str, Any]], wall: float, llm_stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest's summary: counts by outcome, tokens, real vs control score means."""
    total = TokenUsage()
    for r in records:
        total.add(TokenUsage(**{k: v for k, v in r["tokens"].items() if k != "parts"}))
    tokens = total.as_dict()
    tokens.pop("calls")
    counts = status_counts(records)
    return {
        "n_latents": len(records),
        "n_ok": counts.get("ok", 0),
        "n_scored": sum(bool(r["scores"]) for r in records),
        "n_failed": counts.get("explain_failed", 0) + counts.get("error", 0),
        "n_retried": sum(r["retries"] > 0 for r in records),
        "n_skipped": counts.get("too_rare", 0) + counts.get("skipped", 0),
        "n_control_failed": sum(bool(r["control"] and r["control"]["error"]) for r in records),
        "status_counts": counts,
        "scorer_failed_examples": scorer_failures(records),
        "scores": score_means(records),
        "tokens": tokens,
        "llm": llm_stats or {},
        "wall_s": round(wall, 3),
    }


def scorer_failures(records: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """scorer -> {real, control}: examples a scorer got no usable answer for (``n_failed``:
    unparsed or wrong-length answer lists, missing log-probs), summed over the range."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        for kind, scores in (
            ("real", r["scores"]),
            ("control", (r["control"] or {}).get("scores")),
        ):
            for scorer, metrics in (scores or {}).items():
                n = metrics.get("n_failed")
                if isinstance(n, int):
                    entry = out.setdefault(scorer, {"real": 0, "control": 0})
                    entry[kind] += n
    return out


def score_means(records: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """scorer -> metric -> {real, control[, baseline]: mean, n_*: count} over the range.

    Only scalar metrics; an undefined value (None/NaN) is left out of its mean. The
    real mean is over ``ok`` latents, the control's over those with a control score.
    """
    sources = {"real": lambda r: r["scores"] if r["status"] == "ok" else None}
    sources["control"] = lambda r: (r["control"] or {}).get("scores")
    sources["baseline"] = lambda r: (r["baseline"] or {}).get("scores")
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in records:
        for kind, get in sources.items():
            for scorer, metrics in (get(r) or {}).items():
                for metric, v in metrics.items():
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        continue
                    if metric == "n" or metric.startswith("n_") or math.isnan(v):
                        continue
                    values.setdefault(scorer, {}).setdefault(metric, {}).setdefault(
                        kind, []
                    ).append(float(v))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scorer, metrics in values.items():
        for metric, by_kind in metrics.items():
            entry: dict[str, Any] = {}
            for kind, vs in by_kind.items():
                entry[kind] = float(np.mean(vs))
                entry[f"n_{kind}"] = len(vs)
            out.setdefault(scorer, {})[metric] = entry
    return out


def _headline(scores: dict[str, dict[str, dict[str, Any]]]) -> str:
    parts = []
    for scorer, metrics in scores.items():
        headline = ("auroc", "balanced_accuracy", "correlation", "score", "accuracy")
        metric = next((m for m in headline if m in metrics), None)
        if metric is None:
            continue
        e = metrics[metric]
        real, ctrl = e.get("real"), e.get("control")
        parts.append(
            f"{scorer} {metric} {real if real is None else round(real, 3)} vs "
            f"{ctrl if ctrl is None else round(ctrl, 3)}"
        )
    return ", ".join(parts) or "no scores"
