"""Build a dictionary from its :class:`~interp.sae.config.SAEConfig`, and look up classes
by architecture name (the ``"activation"`` of a saved cfg.json) in the registry."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from interp.sae.registry import architectures, get_architecture
from interp_kernels.topk import Backend

if TYPE_CHECKING:
    from interp.sae.base import SparseCoder
    from interp.sae.config import SAEConfig


def architecture_class(architecture: str) -> type[SparseCoder]:
    """The SparseCoder subclass of ``architecture`` (ValueError naming the valid ones)."""
    spec = architectures().get(architecture)
    if spec is None or spec.cls is None:
        valid = sorted(n for n, s in architectures().items() if s.cls is not None)
        raise ValueError(f"unknown architecture {architecture!r}: use one of {valid}")
    return spec.load()


def build_sae(
    cfg: SAEConfig,
    d_in: int,
    d_out: int | None = None,
    *,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    backend: Backend = "torch",
) -> SparseCoder:
    """A freshly initialised dictionary for inputs of width ``d_in`` (targets of width
    ``d_out``, transcoders only; default ``d_in``), seeded from ``generator`` only."""
    spec = get_architecture(cfg.architecture)
    num_latents = cfg.num_latents or d_in * cfg.expansion_factor
    if spec.fixed_width and cfg.k >= num_latents:
        raise ValueError(
            f"sae.k={cfg.k} must be smaller than the dictionary width {num_latents} "
            f"(d_in={d_in} x expansion_factor={cfg.expansion_factor}): lower k or widen it"
        )
    if d_out is not None and d_out != d_in and not cfg.transcode:
        raise ValueError(
            f"target width {d_out} differs from input width {d_in}: set sae.transcode=true"
        )
    if spec.build is not None:
        return spec.build(cfg, d_in, d_out, generator=generator, device=device, backend=backend)
    sae = spec.load()(
        d_in,
        num_latents,
        d_out=d_out,
        transcode=cfg.transcode,
        normalize_decoder=cfg.normalize_decoder,
        b_dec_init=cfg.b_dec_init,
        backend=backend,
        generator=generator,
        device=device,
        params=cfg.part(spec.config),
    )
    sae.lr_scale = cfg.lr_scale  # training-only: not saved with the weights
    return sae
