"""What every scorer receives: one latent's examples, the LLM, and shared resources.

A scorer is ``async def score_x(ctx: ScoreContext, explanation: str) -> ScorerOutput``
registered by name in :mod:`interp.score.registry`. Heavy things a few scorers need (the
sentence embedder, the subject model with the dictionary for steering) live on
``ctx.resources``: loaded lazily, once per interpret task, shared by every latent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from interp.explain.prompts import TokenRenderer
from interp.latents.examples import LatentExamples
from interp.llm.base import LLMClient
from interp.models.config import ModelConfig
from interp.score.config import ScorerConfig


class ScorerOutput(Protocol):
    """Per-latent result of one scorer; ``metrics()`` is what the record keeps (JSON)."""

    name: str

    def metrics(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ResourceInputs:
    """What a resource loader (a :class:`~interp.score.spec.ScorerSpec`'s ``resources``)
    may read of the task: plain values the interpret stage builds from the run."""

    model: ModelConfig
    """The subject model (``model.*``)."""
    target: str
    """The hookpoint the dictionary writes to (where steering adds its vector)."""
    prepend_bos: bool
    """Whether the subject's windows start with BOS (``data.prepend_bos``)."""
    sae_dir: Path
    """The point's trained (or built) dictionary."""
    point: str = ""
    """The sweep point's id (for logs and caches)."""


@dataclass
class ScoreResources:
    """Lazily built, task-wide resources; each factory runs at most once.

    ``factories`` maps a resource name ("embedder", "subject", ...) to a zero-argument
    builder supplied by the interpret stage (which knows the run's paths and configs).
    """

    factories: dict[str, Callable[[], Any]] = field(default_factory=dict)
    _built: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name not in self._built:
            if name not in self.factories:
                raise KeyError(
                    f"scorer resource {name!r} is not available in this task; "
                    f"known: {sorted(self.factories)}"
                )
            self._built[name] = self.factories[name]()
        return self._built[name]

    def close(self) -> None:
        for obj in self._built.values():
            close = getattr(obj, "close", None)
            if callable(close):
                close()
        self._built.clear()


@dataclass
class ScoreContext:
    """One latent as the scorers see it."""

    latent: int
    client: LLMClient
    examples: LatentExamples
    render: TokenRenderer
    cfg: ScorerConfig
    highlight_threshold: float  # the explainer's: a token is marked at act >= t * example max
    rng: np.random.Generator  # deterministic per (seed, latent, scorer call)
    resources: ScoreResources = field(default_factory=ScoreResources)
