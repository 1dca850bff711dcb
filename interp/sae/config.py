"""``SAEConfig``: the ``sae`` section of the run config, composed from the fields every
dictionary has and each registered architecture's own part (flat, unprefixed keys:
``sae.k`` is declared by topk, batchtopk and neurons alike; see :mod:`interp.compose`).

Light to import (no torch): ``interp.config`` re-exports it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from interp.compose import Part, compose_section
from interp.sae.registry import BUILTIN, architectures, get_architecture
from interp.sae.spec import ArchitectureSpec
from interp.typed import meta

__all__ = ["SAECommon", "SAEConfig"]

# Common fields every trained architecture reads (a neuron dictionary reads none).
COMMON_READ = frozenset({"b_dec_init", "normalize_decoder", "dead_tokens", "lr_scale"})


@dataclass(frozen=True)
class SAECommon:
    """One sparse dictionary: its architecture and the hyperparameters of its loss.

    Each field says which architectures read it; the others ignore it. Reconstruction is
    always measured as FVU (scale-free), so coefficients do not depend on the input scale.
    """

    architecture: str = field(
        default="topk",
        metadata=meta(
            "Dictionary type: topk (Gao et al.), batchtopk (Bussmann et al.; saved as "
            "jumprelu), jumprelu (Gemma Scope STE), relu (L1, Anthropic April 2024), gated; "
            "neurons = the hookpoint's own basis sparsified with top-k (not trained; e.g. "
            "hook=layers.N.mlp.down_proj:input for MLP neurons); pretrained = read from "
            "sae.path (no training)."
        ),
    )
    expansion_factor: int = field(default=8, metadata=meta("num_latents = d_in * this."))
    num_latents: int = field(
        default=0, metadata=meta("Explicit dictionary width; 0 = d_in * expansion_factor.")
    )
    dead_tokens: int = field(
        default=0,
        metadata=meta(
            "Tokens without firing after which a latent counts as dead (AuxK, dead %); "
            "0 = the trainer's default, min(10M, training tokens / 4)."
        ),
    )
    b_dec_init: Literal["mean", "geometric_median", "zeros"] = field(
        default="mean",
        metadata=meta(
            "b_dec from the first batch: its mean (sparsify), geometric median (OpenAI, "
            "dictionary_learning) or zeros (SAELens)."
        ),
    )
    normalize_decoder: bool = field(
        default=True,
        metadata=meta(
            "Keep decoder rows unit-norm (parallel gradient removed, rows renormalised "
            "after each step). relu/gated weight their penalty by decoder norms instead."
        ),
    )
    transcode: bool = field(
        default=False,
        metadata=meta(
            "Transcoder: encode one hookpoint, reconstruct another (output width may "
            "differ; no b_dec subtracted from the input; decoder starts at zero)."
        ),
    )
    lr_scale: float = field(
        default=1.0,
        metadata=meta(
            "This dictionary trains at train.lr times this (so one sweep can mix "
            "architectures: L1 penalties need ~10x the TopK rate to sparsify in 200k tokens)."
        ),
    )

    def __post_init__(self) -> None:
        spec = get_architecture(self.architecture)
        if self.expansion_factor <= 0:
            raise ValueError(f"sae.expansion_factor={self.expansion_factor} must be > 0")
        if self.num_latents < 0:
            raise ValueError("sae.num_latents must be >= 0 (0 = d_in * expansion_factor)")
        if self.dead_tokens < 0:
            raise ValueError("sae.dead_tokens and sae.sparsity_warmup_steps must be >= 0")
        if self.lr_scale <= 0:
            raise ValueError(f"sae.lr_scale={self.lr_scale} must be > 0")
        self._check_exclusive()
        if spec.check is not None:
            spec.check(self)

    @property
    def spec(self) -> ArchitectureSpec:
        """The registered spec of ``architecture``."""
        return get_architecture(self.architecture)

    @property
    def params(self) -> Any:
        """The architecture's own config (its part of this section)."""
        return self.part(self.spec.config)  # type: ignore[attr-defined]

    def _check_exclusive(self) -> None:
        """A field only some architectures read, set off its default under another one."""
        owners: dict[str, list[str]] = {}
        for spec in architectures().values():
            for name in spec.exclusive:
                owners.setdefault(name, []).append(spec.name)
        defaults = {f.name: _default(f) for f in dataclasses.fields(self)}
        for name, archs in owners.items():
            value = getattr(self, name, defaults.get(name))
            if self.architecture in archs or value == defaults.get(name):
                continue
            shown = "=true" if value is True else (" > 0" if defaults[name] == 0 else f"={value}")
            raise ValueError(f"sae.{name}{shown} needs sae.architecture={' or '.join(archs)}")

    @property
    def sae_id(self) -> str:
        """Folder name of the dictionary, from what it computes: architecture, width, the
        sparsity knob, flags, and a short hash of any other non-default hyperparameter."""
        spec = self.spec
        if spec.sae_id is not None:
            return spec.sae_id(self)
        width = self.num_latents or f"x{self.expansion_factor}"
        parts = [self.architecture, str(width), spec.sparsity_tag(self)[0]]
        flags = [f for f in spec.id_flags if getattr(self, f.field, None)]
        parts += [f.format(getattr(self, f.field)) for f in flags if not f.after_transcode]
        if self.transcode:
            parts.append("tc")
        parts += [f.format(getattr(self, f.field)) for f in flags if f.after_transcode]
        rest = self._other_hyperparameters()
        if rest:
            digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()
            parts.append(digest[:6])
        return "-".join(parts)

    def _other_hyperparameters(self) -> dict[str, Any]:
        """Non-default fields this architecture reads that the readable tag omits."""
        spec = self.spec
        shown = spec.sparsity_tag(self)[1] | {f.field for f in spec.id_flags}
        reads = spec.fields() | (COMMON_READ if spec.trained else frozenset())
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in reads and f.name not in shown and getattr(self, f.name) != _default(f)
        }


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _parts(specs: tuple[ArchitectureSpec, ...]) -> list[Part]:
    seen: dict[type, Part] = {}
    for spec in specs:
        seen.setdefault(spec.config, Part(spec.config))
    return list(seen.values())


SAEConfig = compose_section("SAEConfig", __name__, SAECommon, _parts(BUILTIN))
