"""The explainer's settings (``interpret.explainer``): :class:`ExplainerConfig`."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from interp.typed import meta, positive


@dataclass(frozen=True)
class ExplainerConfig:
    """The explainer: which kind, its prompt, and how hard to try for a parseable reply."""

    kind: Literal["default", "contrastive", "single_token"] = field(
        default="default",
        metadata=meta(
            "default: highlighted activating examples; contrastive: also non-activating ones "
            "(interpret.examples.n_explain_inactive); single_token: no LLM, the most frequent "
            "strongly activating token(s) (a baseline)."
        ),
    )
    highlight_threshold: float = field(
        default=0.3, metadata=meta("Highlight tokens with act >= this x the example's max.")
    )
    show_activations: bool = field(
        default=False, metadata=meta("List highlighted tokens with 0-10 activation values.")
    )
    max_new_tokens: int = field(default=48, metadata=meta("Explanation length cap."))
    cot: bool = field(
        default=False,
        metadata=meta("Chain of thought: brief reasoning first, then the Explanation: line."),
    )
    cot_max_new_tokens: int = field(
        default=256, metadata=meta("Length cap of a chain-of-thought reply (cot=true).")
    )
    max_retries: int = field(
        default=1,
        metadata=meta(
            "Re-asks after an unparseable or truncated reply; then the latent is explain_failed."
        ),
    )
    n_single_tokens: int = field(
        default=3, metadata=meta("single_token: at most this many tokens in the explanation.")
    )

    def __post_init__(self) -> None:
        positive(self, "max_new_tokens", "cot_max_new_tokens", "n_single_tokens")
        if not 0.0 < self.highlight_threshold <= 1.0:
            raise ValueError("interpret.explainer.highlight_threshold must be in (0, 1]")
        if self.max_retries < 0:
            raise ValueError("interpret.explainer.max_retries must be >= 0 (0 = ask once)")
        if self.cot and self.kind == "single_token":
            warnings.warn(
                "interpret.explainer.cot has no effect with kind=single_token (no LLM)",
                stacklevel=2,
            )
