"""Running scorers by name, through the registry (:mod:`interp.score.registry`).

A scorer is ``async def score_x(ctx: ScoreContext, explanation: str) -> ScorerOutput``;
its module is imported only when it runs (the embedding and intervention scorers pull
heavy dependencies that a detection-only run never needs).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from interp.score.context import ScoreContext, ScorerOutput
from interp.score.registry import scorer_names, scorer_spec
from interp.score.spec import load

Scorer = Callable[[ScoreContext, str], Awaitable[ScorerOutput]]


def get_scorer(name: str) -> Scorer:
    """The scorer function registered as ``name`` (its module imported now)."""
    return load(scorer_spec(name).scorer, f"scorer {name!r}")


async def run_scorers(
    names: Sequence[str], ctx: ScoreContext, explanation: str
) -> dict[str, ScorerOutput]:
    """Every requested scorer on one latent, concurrently (the backend bounds the load).

    Unknown names fail before any scorer starts. Each scorer gets its own random stream
    spawned from ``ctx.rng`` (in the order of ``names``), so one scorer's draws never
    shift another's.
    """
    known = scorer_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; choose from {sorted(known)}")
    if len(set(names)) != len(names):
        raise ValueError(f"scorer names {list(names)} repeat a scorer; list each once")
    scorers = [get_scorer(n) for n in names]
    rngs = ctx.rng.spawn(len(names))
    outputs = await asyncio.gather(
        *(f(replace(ctx, rng=r), explanation) for f, r in zip(scorers, rngs))
    )
    return dict(zip(names, outputs))


def resource_factories(names: Sequence[str], *args: Any) -> dict[str, Callable[[], Any]]:
    """Resource name -> zero-argument factory, for every resource the scorers ``names``
    declare: calls the spec's loader with ``args`` (the stage passes its
    :class:`~interp.score.context.ResourceInputs`),
    importing it only then (the first scorer to ask for it)."""
    out: dict[str, Callable[[], Any]] = {}
    for spec in (scorer_spec(n) for n in names):
        for resource, ref in spec.resources.items():
            what = f"scorer {spec.name!r} resource {resource!r}"
            out.setdefault(resource, partial(_build, ref, what, args))
    return out


def _build(ref: str, what: str, args: tuple[Any, ...]) -> Any:
    return load(ref, what)(*args)
