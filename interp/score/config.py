"""``scorer.*``: which scorers run, and how (the section :class:`ScorerConfig`).

The section is flat, as users type it: the common fields below plus every built-in
scorer's own config part under its prefix (``scorer.intruder_examples`` is
:class:`~interp.score.intruder_spec.IntruderConfig` ``.examples``), composed with
:func:`interp.compose.compose_section` from :data:`interp.score.registry.BUILTIN`. A
scorer reads its part with ``cfg.part(IntruderConfig)``. ``names`` is checked against
the registry when the config is built, so a plugin registered first is a valid name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.compose import Part, compose_section
from interp.score.registry import BUILTIN, scorer_names
from interp.typed import meta


@dataclass(frozen=True)
class ScorerCommon:
    """Which scorers run, and how."""

    names: tuple[str, ...] = field(
        default=("detection", "fuzzing"), metadata=meta("Scorers to run on each explanation.")
    )
    examples_per_prompt: int = field(
        default=1,
        metadata=meta(
            (
                "detection/fuzzing: examples per prompt. 1 = one prompt each, P(Yes) "
                "from next-token log-probs after a shared prefix; n > 1 = n numbered examples, "
                "a generated 'i: Yes|No' list parsed strictly (failures recorded)."
            ),
            id="when_set",
        ),
    )
    batch_read: Literal["forced", "generate", "generate_logprobs"] = field(
        default="generate_logprobs",
        metadata=meta(
            (
                "examples_per_prompt > 1: how answers are read. generate = the generated "
                "list as 0/1; generate_logprobs = then teacher-force it to read P(Yes) per "
                "example (one more, prefix-cached call); forced = one teacher-forced call, "
                "P(Yes) read at each answer line (nothing generated, nothing parsed)."
            ),
            id="when_set",
        ),
    )
    bootstrap_resamples: int = field(
        default=1000,
        metadata=meta(
            "Bootstrap resamples for per-latent confidence intervals; 0 = none.", id=False
        ),
    )
    confidence: float = field(
        default=0.95, metadata=meta("Confidence level of the intervals.", id=False)
    )

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("scorer.names is empty: list at least one scorer")
        known = scorer_names()
        for i, name in enumerate(self.names):
            if name not in known:
                raise ValueError(f"scorer.names[{i}]={name!r} is not one of {known}")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"scorer.names={list(self.names)} repeats a scorer: list each once")
        if not 1 <= self.examples_per_prompt <= 20:
            raise ValueError(
                f"scorer.examples_per_prompt={self.examples_per_prompt} must be in 1..20 "
                "(1 = one example per prompt; delphi uses 5)"
            )
        if self.bootstrap_resamples < 0:
            raise ValueError("scorer.bootstrap_resamples must be >= 0 (0 = no intervals)")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"scorer.confidence={self.confidence} must be in (0, 1), e.g. 0.95")


ScorerConfig = compose_section(
    "ScorerConfig",
    __name__,
    ScorerCommon,
    [Part(s.config, s.prefix) for s in BUILTIN if s.config is not None],
)
