"""ReLU with a decoder-norm-weighted L1 (Anthropic, April 2024; SAELens "standard"):
config part and spec. The class is :class:`interp.sae.relu.ReLUSAE`."""

from __future__ import annotations

from dataclasses import dataclass

from interp.sae.spec import ArchitectureSpec
from interp.sae.specs._shared import (
    check_non_negative,
    check_warmup,
    l1_field,
    l1_tag,
    warmup_field,
)


@dataclass(frozen=True)
class L1Config:
    """The L1 penalty of relu and gated."""

    l1_coefficient: float = l1_field()
    sparsity_warmup_steps: int = warmup_field()

    def __post_init__(self) -> None:
        check_non_negative(self, "l1_coefficient")
        check_warmup(self.sparsity_warmup_steps)


SPEC = ArchitectureSpec(
    name="relu",
    config=L1Config,
    cls="interp.sae.relu:ReLUSAE",
    sparsity_tag=l1_tag,
    saelens="standard",
    saelens_transcoder="transcoder",
)
