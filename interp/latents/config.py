"""How a latent's activating and non-activating example contexts are chosen
(``interpret.examples``): :class:`ExamplesConfig`, read by :mod:`interp.latents`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.typed import meta, positive


@dataclass(frozen=True)
class ExamplesConfig:
    """How activating and non-activating contexts are chosen for a latent."""

    window: int = field(default=24, metadata=meta("Tokens per example shown to the LLM."))
    n_quantiles: int = field(default=4, metadata=meta("Equal-count activation quantiles."))
    n_explain: int = field(default=12, metadata=meta("Activating examples for the explainer."))
    n_score_active: int = field(
        default=8, metadata=meta("Activating examples per scorer (held out from explain).")
    )
    n_score_inactive: int = field(default=8, metadata=meta("Non-activating examples per scorer."))
    min_examples: int = field(
        default=12,
        metadata=meta(
            "Latents with fewer activating windows get a 'too_rare' record, never dropped."
        ),
    )
    seed: int = field(default=0, metadata=meta("Sampling seed (per latent: seed + latent)."))
    sampling: Literal["quantile", "top", "random", "mixed"] = field(
        default="quantile",
        metadata=meta(
            "Explainer's activating contexts: 'quantile' (spread over n_quantiles), 'top' "
            "(strongest), 'random' (uniform), 'mixed' (mixed_top_fraction strongest, the "
            "rest quantile-spread)."
        ),
    )
    mixed_top_fraction: float = field(
        default=0.5, metadata=meta("Share of the explainer's examples 'mixed' takes from the top.")
    )
    score_sampling: Literal["quantile", "random"] = field(
        default="quantile",
        metadata=meta(
            "Scorers' held-out activating contexts: 'quantile' (per-quantile metrics need it) "
            "or 'random'."
        ),
    )
    center: float = field(
        default=0.75,
        metadata=meta("Fraction of an example window before its strongest token (0 to 1)."),
    )
    negatives: Literal["random", "neighbours", "similar"] = field(
        default="random",
        metadata=meta(
            "Non-activating contexts: 'random', 'neighbours' (where co-firing latents fire), "
            "'similar' (MiniLM-nearest to the activating examples); shortfalls filled from random."
        ),
    )
    n_explain_inactive: int = field(
        default=0,
        metadata=meta(
            "Non-activating examples for the contrastive explainer (disjoint from score)."
        ),
    )
    n_neighbours: int = field(
        default=8, metadata=meta("Co-firing latents whose contexts give 'neighbours' negatives.")
    )
    neighbour_tokens: int = field(
        default=256,
        metadata=meta("Active tokens per latent (evenly spaced) counted for co-occurrence."),
    )
    similar_pool: int = field(
        default=1024,
        metadata=meta("Random candidate windows embedded once per task for 'similar' negatives."),
    )

    def __post_init__(self) -> None:
        positive(self, "window", "n_quantiles", "n_explain", "n_score_active", "min_examples")
        positive(self, "n_neighbours", "neighbour_tokens", "similar_pool")
        if self.n_score_inactive < 0:
            raise ValueError("interpret.examples.n_score_inactive must be >= 0")
        if self.n_explain_inactive < 0:
            raise ValueError("interpret.examples.n_explain_inactive must be >= 0")
        if self.seed < 0:
            raise ValueError(f"interpret.examples.seed={self.seed} must be >= 0")
        for name in ("center", "mixed_top_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(
                    f"interpret.examples.{name}={getattr(self, name)} must be within [0, 1]"
                )
        for name, choices in (
            ("sampling", ("quantile", "top", "random", "mixed")),
            ("score_sampling", ("quantile", "random")),
            ("negatives", ("random", "neighbours", "similar")),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"interpret.examples.{name}={getattr(self, name)!r} is not one of "
                    f"{list(choices)}"
                )
