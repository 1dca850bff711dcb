"""A dictionary someone else trained (``sae=pretrained``): config part and spec.

Its keys name the checkpoint (``sae.path``, ``sae.format``, ``sae.hookpoint``);
its architecture, width and weights are the checkpoint's own, read by
:mod:`interp.sae.pretrained`. ``sae.content_hash`` is filled in when the point is planned
(:mod:`interp.pretrained_point`): the run ids name the dictionary by its content, so a
changed file is a new point and a moved folder is the same one. The trained architectures
ignore these keys (a mixed sweep ``sae=topk,pretrained sae.path=...`` sets them on both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from interp.sae.spec import ArchitectureSpec
from interp.typed import meta

PretrainedFormat = Literal["auto", "sparsify", "saelens", "gemmascope"]


@dataclass(frozen=True)
class PretrainedConfig:
    """Where a pretrained dictionary is and how it is stored."""

    path: str = field(
        default="",
        metadata=meta(
            "pretrained: the checkpoint: a folder (a sparsify run folder or one of its "
            "hookpoint folders, a SAELens SAE folder, a Gemma Scope params.npz folder) or a "
            "hub id (org/repo[/sub/folder]). Not in run ids: the content hash is.",
            id=False,
        ),
    )
    format: PretrainedFormat = field(
        default="auto",
        metadata=meta(
            "pretrained: sparsify | saelens | gemmascope, or auto (detected from the files); "
            "set to the detected format when the point is planned.",
            id=False,
        ),
    )
    hookpoint: str = field(
        default="",
        metadata=meta(
            "pretrained: which dictionary of a multi-hookpoint source to read (its own name "
            "or ours, e.g. layers.6); empty = the point's hookpoint (layers.<layer> or hook).",
            id=False,
        ),
    )
    content_hash: str = field(
        default="",
        metadata=meta(
            "pretrained: sha256 of the checkpoint's weights and cfg, filled in when the point "
            "is planned (leave it empty; a value the file no longer has is refused).",
            id="when_set",
        ),
    )


def sae_id(cfg: Any) -> str:
    """``pretrained-<latents>-<hash8>``: the dictionary by its content, not its path."""
    return f"pretrained-{cfg.num_latents or 'x'}-{(cfg.content_hash or 'unresolved')[:8]}"


SPEC = ArchitectureSpec(
    name="pretrained",
    config=PretrainedConfig,
    cls=None,
    sparsity_tag=lambda cfg: ("", frozenset()),
    trained=False,
    pretrained=True,
    sae_id=sae_id,
)
