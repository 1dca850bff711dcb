"""Spec and config of the intruder scorer (:mod:`interp.score.intruder`): its keys are
``scorer.intruder_<field>`` (``scorer.intruder_examples`` is ``IntruderConfig.examples``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.score.spec import ScorerSpec
from interp.typed import meta


@dataclass(frozen=True)
class IntruderConfig:
    """The intruder scorer's settings (read with ``ctx.cfg.part(IntruderConfig)``)."""

    examples: int = field(
        default=4,
        metadata=meta("intruder: activating examples per prompt (+1 intruder).", id="when_set"),
    )
    prompts: int = field(default=8, metadata=meta("intruder: prompts per latent.", id="when_set"))
    source: Literal["inactive", "other_quantile"] = field(
        default="inactive",
        metadata=meta(
            (
                "intruder: a non-activating example (random marks) or an activating "
                "example of another quantile."
            ),
            id="when_set",
        ),
    )

    def __post_init__(self) -> None:
        if not 1 <= self.examples <= 8:
            raise ValueError(
                f"scorer.intruder_examples={self.examples} must be in 1..8 "
                "(the choices 1..k+1 must be single-digit answers)"
            )
        if self.prompts < 1:
            raise ValueError("scorer.intruder_prompts must be >= 1")


INTRUDER = ScorerSpec(
    "intruder",
    "interp.score.intruder:score_intruder",
    "accuracy",
    config=IntruderConfig,
    prefix="intruder",
)
