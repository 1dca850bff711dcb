"""JumpReLU (Rajamanoharan et al. 2024; the Gemma Scope recipe): config part and spec.
The class is :class:`interp.sae.jumprelu.JumpReLUSAE`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from interp.sae.spec import ArchitectureSpec
from interp.sae.specs._shared import check_non_negative, check_positive, check_warmup, warmup_field
from interp.typed import meta

SparsityLoss = Literal["l0", "target_l0"]


@dataclass(frozen=True)
class JumpReLUConfig:
    """Per-latent thresholds learned through straight-through estimators; L0 penalty."""

    bandwidth: float = field(
        default=0.05,
        metadata=meta(
            "jumprelu: STE kernel width epsilon, in pre-activation units (SAELens 0.05; "
            "Gemma Scope's 0.001 assumes unit-scale inputs and needs billions of tokens)."
        ),
    )
    sparsity_loss: SparsityLoss = field(
        default="target_l0",
        metadata=meta(
            "jumprelu: 'l0' = coefficient * mean L0 (Gemma Scope); 'target_l0' = "
            "coefficient * (mean L0 / target_l0 - 1)^2 (dictionary_learning)."
        ),
    )
    l0_coefficient: float = field(
        default=1.0,
        metadata=meta("jumprelu: weight of the L0 penalty (plain L0 or the target form)."),
    )
    target_l0: float = field(
        default=32.0,
        metadata=meta(
            "jumprelu: the L0 aimed at by 'target_l0', and the L0 the threshold starts at "
            "when threshold_init = 0."
        ),
    )
    threshold_init: float = field(
        default=0.0,
        metadata=meta(
            "jumprelu: initial threshold; 0 = from the first batch, so that its L0 is "
            "target_l0 (SAELens 0.01, dictionary_learning 0.001)."
        ),
    )
    sparsity_warmup_steps: int = warmup_field()
    threshold_lr_scale: float = field(
        default=1.0,
        metadata=meta(
            "jumprelu: the thresholds' learning rate is train lr times this (Adam moves a "
            "threshold by about lr per step; short runs need it larger)."
        ),
    )

    def __post_init__(self) -> None:
        check_positive(self, "target_l0", "bandwidth")
        if self.sparsity_loss not in ("l0", "target_l0"):
            raise ValueError(
                f"sae.sparsity_loss={self.sparsity_loss!r} is not one of ['l0', 'target_l0']"
            )
        check_non_negative(self, "l0_coefficient", "threshold_init")
        check_warmup(self.sparsity_warmup_steps)
        if self.threshold_lr_scale <= 0:
            raise ValueError(f"sae.threshold_lr_scale={self.threshold_lr_scale} must be > 0")


def sparsity_tag(cfg: Any) -> tuple[str, frozenset[str]]:
    if cfg.sparsity_loss == "target_l0":
        return f"t{cfg.target_l0:g}", frozenset({"sparsity_loss", "target_l0"})
    return f"l0c{cfg.l0_coefficient:g}", frozenset({"sparsity_loss", "l0_coefficient"})


SPEC = ArchitectureSpec(
    name="jumprelu",
    config=JumpReLUConfig,
    cls="interp.sae.jumprelu:JumpReLUSAE",
    sparsity_tag=sparsity_tag,
    saelens="jumprelu",
    saelens_transcoder="jumprelu_transcoder",
    saelens_aliases=("batchtopk",),
    saelens_tensors=("threshold",),
    norm_scaled=("threshold",),
)
