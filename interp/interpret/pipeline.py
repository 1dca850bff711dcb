"""One latent range -> one :class:`~interp.records.LatentRecord` per latent, in two passes.

1. explain every latent (or build its single-token explanation, no LLM);
2. score every explained latent's explanation, then its random-explanation control
   (another latent's explanation: drawn from the whole dictionary, never a co-firer, and
   explained for the control when outside the range; or, with control_source=range, a
   fixed derangement of this range; :mod:`interp.interpret.controls`), scored with the
   same examples and the same random draws, then the single-token baseline if asked.

Every latent gets exactly one record, whatever happened to it: ``ok``, ``too_rare``
(the reason in ``error``), ``explain_failed`` (every raw reply kept, nothing scored)
or ``error`` (traceback, and the raw reply when the LLM sent an unusable one). An LLM
that is *unavailable* (:data:`~interp.interpret.work.FATAL`) is not a property of the
latent: it propagates, and the caller leaves the range uncommitted.

It takes its own settings (:class:`RangeConfig`) and plain values; the interpret stage
builds them from the run's config and folder.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
from tqdm import tqdm

from interp.explain import TokenRenderer, derangement, explain, single_token_explanation
from interp.interpret.config import InterpretConfig
from interp.interpret.controls import ControlSource, DictionaryPool, draw_sources, resolve_sources
from interp.interpret.work import FATAL, Draft, LatentWork, fail, prepare, scorer_errors
from interp.latents import CooccurrenceIndex, SimilarPool
from interp.llm import LLMClient
from interp.records import Alternative, LatentRecord
from interp.score.config import ScorerConfig
from interp.score.context import ScoreContext, ScoreResources
from interp.score.run import run_scorers


@dataclass(frozen=True)
class RangeConfig:
    """What one range's explain and score passes read: the ``interpret`` and ``scorer``
    sections, the explainer's sampling temperature and the windows' length."""

    interpret: InterpretConfig
    scorer: ScorerConfig
    temperature: float = 0.0  # llm.temperature
    ctx_len: int = 256  # data.ctx_len: the token ids are windows of this length


@dataclass(frozen=True)
class LatentRange:
    """Interpret task ``index``: positions ``[start, stop)`` of the selection, the latents
    ``latents`` (None: the selection is ``num_latents``, positions are latent ids)."""

    index: int
    start: int
    stop: int
    latents: tuple[int, ...] | None = None

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.stop)) if self.latents is None else self.latents


async def interpret_range(
    cfg: RangeConfig,
    task: LatentRange,
    csr: Any,
    token_ids: np.ndarray,
    render: TokenRenderer,
    client: LLMClient,
    should_stop: Callable[[], bool],
    resources: ScoreResources | None = None,
    *,
    cooccurrence: CooccurrenceIndex | None = None,
    similar: SimilarPool | None = None,
    reused: Mapping[int, LatentRecord] | None = None,
    pool: DictionaryPool | None = None,
) -> list[LatentRecord] | None:
    """Records of the latents ``task.ids`` in order; None if asked to stop.

    ``csr`` holds the latents of ``task.ids`` not in ``reused``, in order.
    ``cooccurrence`` / ``similar``: the sources of hard negatives that
    ``examples.negatives`` asks for (built once per task by the stage). ``reused``:
    committed records of other selections (:mod:`interp.stages.selected`), returned as
    they are; their explanations can still be the controls of the latents computed here.
    ``pool``: the whole dictionary, for ``interpret.control_source=dictionary``
    (:mod:`interp.interpret.controls`); without it the control comes from the range.
    """
    resources = resources if resources is not None else ScoreResources()
    reused = reused or {}
    prepare_one = partial(
        prepare, cfg.interpret.examples, cfg.ctx_len,
        csr=csr, token_ids=token_ids, negatives=(cooccurrence, similar),
    )  # fmt: skip
    fresh = [latent for latent in task.ids if latent not in reused]
    work = [prepare_one(latent, i) for i, latent in enumerate(fresh)]
    todo = [w for w in work if w.record.status == "pending"]
    explain_one = partial(explain_latent, cfg=cfg, render=render, client=client)
    if not await _each(todo, explain_one, cfg, should_stop, f"explain r{task.index:05d}"):
        return None
    explained = [w for w in todo if w.record.explanation is not None]
    known = {w.latent: w for w in work + _as_sources(reused)}
    if cfg.interpret.control and cfg.interpret.control_source == "dictionary" and pool:
        at = {latent: i for i, latent in enumerate(fresh)}
        tok_of = lambda latent: csr.tok[csr.offsets[at[latent]] : csr.offsets[at[latent] + 1]]  # noqa: E731
        drawn, extra_ids = draw_sources(explained, known, pool, tok_of)
        payer = {src: w for w in explained for src in [drawn[w.latent]] if src in extra_ids}
        extra = [_prepare_source(cfg, src, pool, token_ids, similar) for src in payer]
        explain_src = partial(_explain_source, payer=payer, cfg=cfg, render=render, client=client)
        pending = [sw for sw in extra if sw.record.status == "pending"]
        if not await _each(pending, explain_src, cfg, should_stop, f"control r{task.index:05d}"):
            return None
        sources = resolve_sources(drawn, known, {sw.latent: sw for sw in extra})
    else:
        sources = _controls(cfg.interpret, task, explained + _as_sources(reused))
    score_one = partial(
        score_latent, cfg=cfg, render=render, client=client, resources=resources, sources=sources
    )
    if not await _each(explained, score_one, cfg, should_stop, f"score r{task.index:05d}"):
        return None
    done = {w.latent: w.finish() for w in work}
    return [reused[latent] if latent in reused else done[latent] for latent in task.ids]


def _as_sources(reused: Mapping[int, LatentRecord]) -> list[LatentWork]:
    """Reused records with an explanation, as control sources (never scored here)."""
    return [
        LatentWork(r.latent, None, Draft(r.latent, status=r.status, explanation=r.explanation))
        for r in reused.values()
        if r.explanation is not None
    ]


async def _each(
    items: Sequence[LatentWork],
    fn: Callable[[LatentWork], Awaitable[None]],
    cfg: RangeConfig,
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
            bar.set_postfix(status=w.record.status, refresh=False)
            bar.update()

    with bar:
        await asyncio.gather(*(one(w) for w in items))
    return not stopped


# --------------------------------------------------------------------------- pass 1
def _prepare_source(
    cfg: RangeConfig, src: int, pool: DictionaryPool, token_ids: np.ndarray, similar: Any
) -> LatentWork:
    """A control source outside the range, from its own examples like a real latent (the
    task's co-occurrence index does not cover it: 'neighbours' negatives become random)."""
    ecfg = cfg.interpret.examples
    if ecfg.negatives == "neighbours":
        ecfg = replace(ecfg, negatives="random")
    csr = pool.fetch(src)
    return prepare(
        ecfg, cfg.ctx_len, src, 0, csr=csr, token_ids=token_ids, negatives=(None, similar)
    )


async def _explain_source(
    sw: LatentWork, *, payer: dict, cfg: RangeConfig, render: TokenRenderer, client: LLMClient
) -> None:
    """Explain a control source outside the range; its tokens are the ``control`` part
    of the first scored latent that drew it."""
    metered = payer[sw.latent].meter("control", client)
    await explain_latent(sw, cfg=cfg, render=render, client=metered)


async def explain_latent(
    w: LatentWork, *, cfg: RangeConfig, render: TokenRenderer, client: LLMClient
) -> None:
    """Fill the explanation (or explain_failed / error) of one latent; never raises."""
    try:
        await _bounded(_explain(w, cfg, render, w.meter("explain", client)), cfg, "explain")
    except FATAL:
        raise
    except Exception as e:
        fail(w.record, e, into="raw_explanation")


async def _explain(
    w: LatentWork, cfg: RangeConfig, render: TokenRenderer, client: LLMClient
) -> None:
    ecfg, record, ex = cfg.interpret.explainer, w.record, w.examples
    assert ex is not None
    token_expl = single_token_explanation(
        ex.explain, render, ecfg.highlight_threshold, ecfg.n_single_tokens
    )
    if ecfg.kind == "single_token":
        record.explanation = record.raw_explanation = token_expl
        if token_expl is None:
            record.status = "explain_failed"
            record.error = "single_token: no token of the explain examples is marked"
        return
    if cfg.interpret.baseline:
        w.baseline = token_expl
    negatives = getattr(ex, "explain_inactive", [])
    result = await explain(client, ex.explain, render, ecfg, cfg.temperature, negatives)
    record.explanation, record.raw_explanation = result.explanation, result.raw
    record.retries += result.attempts - 1
    if result.status != "ok":
        record.status = "explain_failed"
        record.error = (
            f"no usable explanation in {result.attempts} replies: {'; '.join(result.failures)}"
        )


# --------------------------------------------------------------------------- pass 2
def _controls(
    icfg: InterpretConfig, task: LatentRange, explained: list[LatentWork]
) -> dict[int, ControlSource]:
    """control_source=range: latent -> its control's source in the range (a fixed
    derangement); none if disabled."""
    if not icfg.control:
        return {}
    by_latent = {w.latent: w for w in sorted(explained, key=lambda w: w.latent)}
    first = task.ids[0] if task.ids else task.start  # task.start under num_latents, as ever
    pairs = derangement(list(by_latent), (icfg.examples.seed, first))
    none = ControlSource(error="no other latent of this range was explained")
    out = {latent: ControlSource(by_latent[src]) for latent, src in pairs.items()}
    return {w.latent: out.get(w.latent, none) for w in explained}


async def score_latent(
    w: LatentWork,
    *,
    cfg: RangeConfig,
    render: TokenRenderer,
    client: LLMClient,
    resources: ScoreResources,
    sources: dict[int, ControlSource],
) -> None:
    """Score the explanation, then the control and the baseline; never raises."""
    try:
        await _bounded(_score(w, cfg, render, client, resources, sources), cfg, "score")
    except FATAL:
        raise
    except Exception as e:
        fail(w.record, e)


async def _score(
    w: LatentWork,
    cfg: RangeConfig,
    render: TokenRenderer,
    client: LLMClient,
    resources: ScoreResources,
    sources: dict[int, ControlSource],
) -> None:
    record, icfg = w.record, cfg.interpret
    score = partial(_score_explanation, w, cfg, render, resources=resources)
    scores, errors = await score(w.meter("score", client), record.explanation)
    record.scores = scores
    if errors:
        record.status = "error"
        record.error = scorer_errors(errors)
    else:
        record.status = "ok"
    if icfg.control:
        src = sources.get(w.latent) or ControlSource(error="no control source")
        if src.work is None:
            record.control = _part(None, {}, {}, src.error)
        else:
            expl = src.work.record.explanation
            c_scores, c_errors = await score(w.meter("control", client), expl)
            record.control = _part(
                expl, c_scores, c_errors, source_latent=src.work.latent,
                explained_for_control=src.explained_for_control,
            )  # fmt: skip
    if icfg.baseline and icfg.explainer.kind != "single_token":
        if w.baseline is None:
            record.baseline = _part(None, {}, {}, "no token of the explain examples is marked")
        else:
            b_scores, b_errors = await score(w.meter("baseline", client), w.baseline)
            record.baseline = _part(w.baseline, b_scores, b_errors)


def _part(
    explanation: str | None,
    scores: dict,
    errors: dict,
    error: str | None = None,
    source_latent: int | None = None,
    explained_for_control: bool = False,
) -> Alternative:
    error = error or (scorer_errors(errors) if errors else None)
    return Alternative(explanation, scores, error, source_latent, explained_for_control)


async def _score_explanation(
    w: LatentWork,
    cfg: RangeConfig,
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
    """One scorer through the registry (:mod:`interp.score.registry`)."""
    return (await run_scorers((name,), ctx, explanation))[name]


async def _bounded(coro: Awaitable[None], cfg: RangeConfig, what: str) -> None:
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
