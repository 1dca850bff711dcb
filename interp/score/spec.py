"""What the rest of the pipeline needs to know about one scorer: its :class:`ScorerSpec`.

A scorer declares its spec in a light module next to its code (``<x>_spec.py``: no numpy,
no torch, nothing that imports :mod:`interp.config`, because the config imports the
specs to compose ``scorer.*``) and one line of :mod:`interp.score.registry` lists it.
Everything that used to keep a closed list of scorer names (the config's choices, the
summary's headline metric, the interpret stage's resources, the delphi export, the
report's reference scorer) reads the registry instead.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer, as the config, the interpret stage and the reports see it."""

    name: str
    """The name users list in ``scorer.names`` and records key scores by."""
    scorer: str
    """``"module:function"`` of ``async def f(ctx: ScoreContext, explanation) -> output``;
    the module is imported only when the scorer runs."""
    headline: str
    """The metric summaries, the brief and the Neuronpedia export show for it."""
    config: type | None = None
    """Its own frozen config dataclass (read with ``ctx.cfg.part(config)``), or None."""
    prefix: str | None = None
    """Prefix of the config's keys in ``scorer.*`` (``intruder`` -> ``scorer.intruder_k``)."""
    resources: Mapping[str, str] = field(default_factory=dict)
    """Task-wide resources it reads from ``ctx.resources``: name -> ``"module:function"``
    of a loader ``(inputs: interp.score.context.ResourceInputs) -> object``, built once
    per task."""
    delphi: str | None = None
    """Its delphi score folder (``fuzz``), for scorers whose metrics carry classifier
    ``per_quantile`` counts; None: no delphi score files."""
    reference: bool = False
    """The scorer the report correlates every other against (simulation, the paper's
    Table 1)."""

    def __post_init__(self) -> None:
        for what, ref in (("scorer", self.scorer), *self.resources.items()):
            if ref.count(":") != 1:
                raise ValueError(f"scorer {self.name!r}: {what}={ref!r} is not 'module:function'")
        if self.prefix is not None and self.config is None:
            raise ValueError(f"scorer {self.name!r}: prefix={self.prefix!r} without a config")


def load(ref: str, what: str) -> Any:
    """The object ``"module:function"`` names, imported now; one line naming ``what`` if not."""
    module, name = ref.split(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ImportError(
            f"{what} is registered as {ref} but cannot be loaded ({e}); "
            "drop it from scorer.names or install what it needs"
        ) from e
