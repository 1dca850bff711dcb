"""What the pipeline needs to know about one SAE architecture: :class:`ArchitectureSpec`.

A spec names everything that used to be spread over closed lists: the dictionary class
(imported only when a dictionary is built), the config dataclass that becomes its part of
``SAEConfig`` (flat keys, see :mod:`interp.compose`), the readable sparsity tag and flags
of its ``sae_id``, cross-field checks, and its names in other projects' formats. Specs
are light (no torch), so the config can consult them; :mod:`interp.sae.registry` holds
them by name.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from interp.typed import meta

if TYPE_CHECKING:
    from interp.sae.base import SparseCoder


@dataclass(frozen=True)
class IdFlag:
    """A field shown in ``sae_id`` when it differs from its default (``multi_topk`` ->
    "mtopk", ``auxk_alpha`` -> "auxk0.5"); ``after_transcode`` places it after "tc"."""

    field: str
    format: Callable[[Any], str]
    after_transcode: bool = False


@dataclass(frozen=True)
class ArchitectureSpec:
    """One architecture, registered by name (``sae.architecture=<name>``)."""

    name: str
    config: type
    """Frozen dataclass of the architecture's own hyperparameters: its part of SAEConfig
    (unprefixed keys) and the hyperparameters its class is built with."""
    cls: str | type | None
    """The SparseCoder subclass, or "module:Class" to import it on first use; None for a
    dictionary that is built, not trained (``build`` then makes it)."""
    sparsity_tag: Callable[[Any], tuple[str, frozenset[str]]]
    """SAEConfig -> (readable sparsity part of sae_id, e.g. "k32", and the fields it shows)."""
    id_flags: tuple[IdFlag, ...] = ()
    trained: bool = True
    """False for a dictionary that is built, never trained (neurons): it reads no common
    training field (b_dec_init, normalize_decoder, dead_tokens, lr_scale)."""
    exclusive: tuple[str, ...] = ()
    """Fields of its config that are an error, set off their default, under an
    architecture that does not list them here too (``multi_topk`` needs topk)."""
    check: Callable[[Any], None] | None = None
    """Cross-field validation of a SAEConfig with this architecture (ValueError)."""
    build: Callable[..., SparseCoder] | None = None
    """Custom builder ``(cfg, d_in, d_out, *, generator, device, backend)`` replacing
    ``cls(...)`` (neurons); None = construct ``cls`` from the config."""
    sparsify_native: bool = False
    """Its cfg.json is exactly sparsify's ``SparseCoderConfig`` (TopK): no extra keys."""
    saelens: str | None = None
    """SAELens architecture name of its inference form; None = not exportable."""
    saelens_bias: str = "b_enc"
    """SAELens' name of ``encoder.bias`` (Gated: ``b_gate``)."""
    saelens_tensors: tuple[str, ...] = ()
    """Its own [M] tensors, under the same names in SAELens (jumprelu ``threshold``)."""
    saelens_hyper: tuple[str, ...] = ()
    """Hyperparameters SAELens' cfg.json carries under the same names (topk ``k``)."""
    saelens_cfg: tuple[tuple[str, Any], ...] = ()
    """Fixed (key, value) pairs of the SAELens cfg.json it exports."""
    saelens_transcoder: str | None = None
    """SAELens name of its transcoder form; None = no SAELens transcoder."""
    saelens_aliases: tuple[str, ...] = ()
    """Other SAELens architecture names that load as this one (batchtopk -> jumprelu)."""
    fixed_width: bool = False
    """True when ``k`` must stay below the width (TopK family)."""
    norm_scaled: tuple[str, ...] = ()
    """Per-latent tensors that scale with the encoder output, so folding decoder norms
    into the encoder scales them too (jumprelu ``threshold``, gated ``b_mag``)."""
    selects_by_rank: bool = False
    """Latents are chosen by rank (top-k): folding decoder norms would change the code."""
    pretrained: bool = False
    """Read from a checkpoint someone else wrote (``sae=pretrained``): no train stage; its
    architecture is the checkpoint's own."""
    sae_id: Callable[[Any], str] | None = None
    """SAEConfig -> its ``sae_id`` when the default (architecture, width, sparsity tag,
    flags) does not describe it (a pretrained checkpoint: its content hash)."""

    def load(self) -> type[SparseCoder]:
        """The SparseCoder subclass (ValueError when the architecture has none)."""
        if self.cls is None:
            raise ValueError(f"architecture {self.name!r} is built, not loaded from a class")
        if isinstance(self.cls, str):
            module, name = self.cls.split(":")
            return getattr(importlib.import_module(module), name)
        return self.cls

    def fields(self) -> frozenset[str]:
        """Names of the architecture's own config fields."""
        return frozenset(f.name for f in dataclasses.fields(self.config))


def shared_field(default: Any, doc: str, **kw: Any) -> Any:
    """A dataclass field with ``meta(doc)``, for fields several architectures declare."""
    return field(default=default, metadata=meta(doc, **kw))
