"""BatchTopK (Bussmann et al. 2024; saved as its inference JumpReLU): config part and
spec. The class is :class:`interp.sae.batchtopk.BatchTopKSAE`."""

from __future__ import annotations

from dataclasses import dataclass, field

from interp.sae.spec import ArchitectureSpec, IdFlag
from interp.sae.specs._shared import (
    auxk_field,
    auxk_flag_format,
    check_k_below_width,
    check_non_negative,
    check_positive,
    k_field,
    k_tag,
)
from interp.typed import meta


@dataclass(frozen=True)
class BatchTopKConfig:
    """k * batch size activations kept per batch; a global threshold at inference."""

    k: int = k_field()
    auxk_alpha: float = auxk_field()
    threshold_ema: float = field(
        default=0.01,
        metadata=meta(
            "batchtopk: EMA rate of the inference threshold (the smallest kept activation "
            "of each batch), in (0, 1] (SAELens 0.01)."
        ),
    )

    def __post_init__(self) -> None:
        check_positive(self, "k")
        check_non_negative(self, "auxk_alpha")
        if not 0 < self.threshold_ema <= 1:
            raise ValueError(f"sae.threshold_ema={self.threshold_ema} must be in (0, 1]")


SPEC = ArchitectureSpec(
    name="batchtopk",
    config=BatchTopKConfig,
    cls="interp.sae.batchtopk:BatchTopKSAE",
    sparsity_tag=k_tag,
    id_flags=(IdFlag("auxk_alpha", auxk_flag_format),),
    exclusive=("auxk_alpha",),
    check=check_k_below_width,
    fixed_width=True,
    selects_by_rank=True,
)
