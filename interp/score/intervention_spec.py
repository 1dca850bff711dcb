"""Spec and config of the intervention scorer (:mod:`interp.score.intervention`): its keys
are ``scorer.intervention_<field>``; it loads the subject model with the run's dictionary
once per interpret task (the ``subject`` resource)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.score.spec import ScorerSpec
from interp.typed import meta


@dataclass(frozen=True)
class InterventionConfig:
    """The intervention scorer's settings (read with ``ctx.cfg.part(InterventionConfig)``)."""

    kl: float = field(
        default=0.5,
        metadata=meta(
            (
                "intervention: target mean KL(clean || steered), nats, of the next-token "
                "distribution after the prompts; the steering strength is calibrated per latent "
                "to reach it (delphi's default; the paper sweeps 0.1, 0.33, 1, 3). On SmolLM2 "
                "0.5 changed every greedy continuation and kept it fluent; 1.0 made many "
                "repetitive or garbled."
            ),
            id="when_set",
        ),
    )
    prompts: int = field(
        default=8,
        metadata=meta(
            (
                "intervention: prompts per latent (held-out non-activating contexts); "
                "each gives one clean/steered pair for the judge (2 single-token calls)."
            ),
            id="when_set",
        ),
    )
    prompt_tokens: int = field(
        default=24,
        metadata=meta("intervention: tokens of each context used as the prompt.", id="when_set"),
    )
    new_tokens: int = field(
        default=16,
        metadata=meta("intervention: greedy tokens generated per continuation.", id="when_set"),
    )
    judge: Literal["each", "pair"] = field(
        default="each",
        metadata=meta(
            (
                "intervention: how the scorer LLM judges a clean/steered pair. each = "
                "P(Yes) that one continuation shows the explanation, asked per text (no position "
                "bias; the offline 1.5B judge separates only this way); pair = A or B, asked in "
                "both orders and averaged (needs a stronger judge)."
            ),
            id="when_set",
        ),
    )

    def __post_init__(self) -> None:
        if not self.kl > 0:
            raise ValueError(f"scorer.intervention_kl={self.kl} must be > 0 (nats, e.g. 0.5)")
        for name in ("prompts", "prompt_tokens"):
            if not 1 <= getattr(self, name) <= 256:
                raise ValueError(
                    f"scorer.intervention_{name}={getattr(self, name)} must be in 1..256"
                )
        if not 1 <= self.new_tokens <= 256:
            raise ValueError(
                f"scorer.intervention_new_tokens={self.new_tokens} must be in "
                "1..256 (a few dozen tokens are enough to see the steering)"
            )


INTERVENTION = ScorerSpec(
    "intervention",
    "interp.score.intervention:score_intervention",
    "score",
    config=InterventionConfig,
    prefix="intervention",
    resources={"subject": "interp.score.steering:load_subject"},
)
