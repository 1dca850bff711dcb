"""The interpret stage's section (``interpret``): which latents, how they are split into
ranges, the control and baseline, concurrency and time limits; its ``examples`` and
``explainer`` parts are owned by :mod:`interp.latents` and :mod:`interp.explain`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields

from interp.explain.config import ExplainerConfig
from interp.interpret.selection import Selection, parse
from interp.latents.config import ExamplesConfig
from interp.typed import meta, positive

CONTROL_SOURCES = ("dictionary", "range")


@dataclass(frozen=True)
class InterpretConfig:
    """Explain and score latents (latent-range array)."""

    num_latents: int = field(
        default=0,
        metadata=meta(
            "Interpret latents [0, num_latents); 0 = every latent. The same as "
            "latents=0:N; a set interpret.latents wins."
        ),
    )
    latents: str = field(
        default="",
        metadata=meta(
            "Which latents (interp/interpret/selection.py): all, A:B, '3,17,42', "
            "file:<path>, sample:N (seeded, alive only) or stratified:N (by firing "
            "frequency); '' = num_latents. A:B from 0 and all are stored as num_latents.",
            id="when_set",
        ),
    )
    latents_seed: int = field(
        default=0,
        metadata=meta("Seed of latents=sample:N / stratified:N.", id="when_set"),
    )
    range_latents: int = field(
        default=256, metadata=meta("Selected latents per interpret array task.")
    )
    examples: ExamplesConfig = field(default_factory=ExamplesConfig)
    explainer: ExplainerConfig = field(default_factory=ExplainerConfig)
    control: bool = field(
        default=True,
        metadata=meta(
            "Random-explanation control: score another latent's explanation exactly like "
            "the real one (where it comes from: control_source)."
        ),
    )
    control_source: str = field(
        default="dictionary",
        metadata=meta(
            "Where the control explanation comes from: dictionary = a seeded draw from the "
            "whole dictionary's alive latents that do not co-fire with the scored one "
            "(interp/interpret/controls.py; explained for the control when not in the "
            "range); range = another latent of the same range (a fixed derangement; the "
            "behaviour and run ids from before this key).",
            id="when_set",
            legacy="range",
        ),
    )
    control_max_overlap: float = field(
        default=0.1,
        metadata=meta(
            "control_source=dictionary: a latent is never the control source when the "
            "active tokens it shares with the scored latent exceed this share of the "
            "smaller of the two latents' active-token counts.",
            id="when_set",
        ),
    )
    baseline: bool = field(
        default=False,
        metadata=meta("Also score the single-token baseline explanation of every latent."),
    )
    max_concurrent_latents: int = field(
        default=1,
        metadata=meta(
            "Latents in flight at once. Raise it for served/HTTP backends (the server batches "
            "across latents); the in-process backend runs one model call at a time anyway.",
            id=False,
        ),
    )
    latent_timeout_s: float = field(
        default=1800.0,
        metadata=meta(
            "Wall-clock limit per latent and pass (explain, score); over it the latent is "
            "recorded as an error (`rerun --retry-errors` redoes it). The default is ~30x "
            "the 55 s a latent's two passes took in-process on CPU (Qwen2.5-Coder-1.5B, "
            "bench/RESULTS.md) and above one HTTP request's worst case at the llm defaults "
            "(5 attempts x 120 s + backoff): a wedged latent costs 30 min of the "
            "allocation, not all of it. 0 = none.",
            id=False,
        ),
    )

    def __post_init__(self) -> None:
        positive(self, "range_latents", "max_concurrent_latents")
        if self.num_latents < 0:
            raise ValueError("interpret.num_latents must be >= 0 (0 = all)")
        self._canonical_selection()
        if self.control_source not in CONTROL_SOURCES:
            raise ValueError(
                f"interpret.control_source={self.control_source!r}: use one of "
                f"{', '.join(CONTROL_SOURCES)}"
            )
        if not 0.0 <= self.control_max_overlap <= 1.0:
            raise ValueError(
                f"interpret.control_max_overlap={self.control_max_overlap} must be in [0, 1]"
            )
        if not self.control or self.control_source != "dictionary":  # no effect: old ids
            object.__setattr__(self, "control_source", "range")
            object.__setattr__(self, "control_max_overlap", _default_overlap())
        if self.latent_timeout_s < 0:
            raise ValueError("interpret.latent_timeout_s must be >= 0 (0 = no limit)")
        if self.baseline and self.explainer.kind == "single_token":
            warnings.warn(
                "interpret.baseline=true has no effect with explainer.kind=single_token "
                "(the explanation already is the single-token baseline)",
                stacklevel=2,
            )
        if self.explainer.kind == "contrastive" and not getattr(
            self.examples, "n_explain_inactive", 0
        ):
            warnings.warn(
                "interpret.explainer.kind=contrastive without non-activating explain examples: "
                "set interpret.examples.n_explain_inactive > 0, or the prompt has no negatives",
                stacklevel=2,
            )

    def _canonical_selection(self) -> None:
        """One spelling per selection, so equal selections get equal run ids: ``all`` and
        ``0:N`` become ``num_latents`` (the ids they always had); any other ``latents``
        wins over ``num_latents`` (set to 0)."""
        if not self.latents:
            sel = Selection("range", 0, self.num_latents) if self.num_latents else Selection("all")
        else:
            sel = parse(self.latents)
            n = sel.stop if sel.mode == "range" and sel.start == 0 else 0
            native = sel.mode == "all" or n > 0
            object.__setattr__(self, "latents", "" if native else sel.canonical)
            object.__setattr__(self, "num_latents", n)
        object.__setattr__(self, "_selection", sel)
        if self.latents_seed and not sel.needs_store:
            warnings.warn(
                f"interpret.latents_seed={self.latents_seed} has no effect with "
                f"interpret.latents={sel.canonical!r} (only sample:N / stratified:N draw)",
                stacklevel=3,
            )

    @property
    def selection(self) -> Selection:
        """The parsed selection (:mod:`interp.interpret.selection`)."""
        return self._selection  # type: ignore[attr-defined]


def _default_overlap() -> float:
    return next(f.default for f in fields(InterpretConfig) if f.name == "control_max_overlap")  # type: ignore[return-value]
