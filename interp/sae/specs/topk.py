"""TopK (Gao et al. 2024; sparsify's activation "topk"): its config part and spec.
The class is :class:`interp.sae.topk.TopKSAE`."""

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
class TopKConfig:
    """k active latents per token; Multi-TopK and AuxK optional."""

    k: int = k_field()
    multi_topk: bool = field(
        default=False,
        metadata=meta("topk: add the FVU of the top-4k decode / 8 to the loss (sparsify)."),
    )
    auxk_alpha: float = auxk_field()

    def __post_init__(self) -> None:
        check_positive(self, "k")
        check_non_negative(self, "auxk_alpha")


SPEC = ArchitectureSpec(
    name="topk",
    config=TopKConfig,
    cls="interp.sae.topk:TopKSAE",
    sparsity_tag=k_tag,
    id_flags=(IdFlag("multi_topk", lambda v: "mtopk"), IdFlag("auxk_alpha", auxk_flag_format)),
    exclusive=("multi_topk", "auxk_alpha"),
    check=check_k_below_width,
    sparsify_native=True,
    saelens="topk",
    saelens_hyper=("k",),
    saelens_cfg=(("rescale_acts_by_decoder_norm", False),),
    fixed_width=True,
    selects_by_rank=True,
)
