"""Neurons as a dictionary (the hookpoint's own basis, optionally rotated, sparsified with
top-k; built, never trained): config part and spec. Built by
:func:`interp.sae.neurons.build_neurons`; saved as a topk dictionary."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interp.sae.spec import ArchitectureSpec, IdFlag
from interp.sae.specs._shared import check_positive, k_field, k_tag
from interp.typed import meta


@dataclass(frozen=True)
class NeuronsConfig:
    """k largest neurons per token, in the identity or a random orthogonal basis."""

    k: int = k_field()
    rotate: bool = field(
        default=False,
        metadata=meta(
            (
                "neurons: a random orthogonal rotation of the basis first (seeded by "
                "train.seed), the control for neurons in the paper."
            ),
            id="when_set",
        ),
    )

    def __post_init__(self) -> None:
        check_positive(self, "k")


def check(cfg: Any) -> None:
    if cfg.num_latents or cfg.expansion_factor != 1:
        raise ValueError(
            "sae.architecture=neurons is the hookpoint's own basis (one latent per "
            "dimension): set sae.expansion_factor=1 and sae.num_latents=0"
        )


def build(cfg: Any, d_in: int, d_out: int | None, **kwargs: Any) -> Any:
    from interp.sae.neurons import build_neurons

    return build_neurons(cfg, d_in, d_out, **kwargs)


SPEC = ArchitectureSpec(
    name="neurons",
    config=NeuronsConfig,
    cls=None,
    sparsity_tag=k_tag,
    id_flags=(IdFlag("rotate", lambda v: "rot", after_transcode=True),),
    trained=False,
    exclusive=("rotate",),
    check=check,
    build=build,
)
