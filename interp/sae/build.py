"""Build a dictionary from its :class:`~interp.config.SAEConfig`, and look up classes by
architecture name (the ``"activation"`` of a saved cfg.json)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import torch

from interp_kernels.topk import Backend

if TYPE_CHECKING:
    from interp.config import SAEConfig
    from interp.sae.base import SparseCoder

# architecture -> (module, class); imported on first use.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "topk": ("interp.sae.topk", "TopKSAE"),
    "batchtopk": ("interp.sae.batchtopk", "BatchTopKSAE"),
    "jumprelu": ("interp.sae.jumprelu", "JumpReLUSAE"),
    "relu": ("interp.sae.relu", "ReLUSAE"),
    "gated": ("interp.sae.gated", "GatedSAE"),
}


def architecture_class(architecture: str) -> type[SparseCoder]:
    """The SparseCoder subclass of ``architecture`` (ValueError naming the valid ones)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(
            f"unknown architecture {architecture!r}: use one of {sorted(ARCHITECTURES)}"
        )
    module, name = ARCHITECTURES[architecture]
    return getattr(importlib.import_module(module), name)


def _architecture_args(cfg: SAEConfig) -> dict[str, Any]:
    """The config fields the architecture's constructor takes."""
    arch = cfg.architecture
    if arch == "topk":
        return {"k": cfg.k, "multi_topk": cfg.multi_topk, "auxk_alpha": cfg.auxk_alpha}
    if arch == "batchtopk":
        return {"k": cfg.k, "auxk_alpha": cfg.auxk_alpha, "threshold_ema": cfg.threshold_ema}
    if arch == "jumprelu":
        return {
            "bandwidth": cfg.bandwidth,
            "sparsity_loss": cfg.sparsity_loss,
            "l0_coefficient": cfg.l0_coefficient,
            "target_l0": cfg.target_l0,
            "threshold_init": cfg.threshold_init,
            "sparsity_warmup_steps": cfg.sparsity_warmup_steps,
            "threshold_lr_scale": cfg.threshold_lr_scale,
        }
    return {
        "l1_coefficient": cfg.l1_coefficient,
        "sparsity_warmup_steps": cfg.sparsity_warmup_steps,
    }


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
    num_latents = cfg.num_latents or d_in * cfg.expansion_factor
    if cfg.architecture in ("topk", "batchtopk") and cfg.k >= num_latents:
        raise ValueError(
            f"sae.k={cfg.k} must be smaller than the dictionary width {num_latents} "
            f"(d_in={d_in} x expansion_factor={cfg.expansion_factor}): lower k or widen it"
        )
    if d_out is not None and d_out != d_in and not cfg.transcode:
        raise ValueError(
            f"target width {d_out} differs from input width {d_in}: set sae.transcode=true"
        )
    if cfg.architecture == "neurons":
        from interp.sae.neurons import neuron_dictionary

        if d_out not in (None, d_in):
            raise ValueError("sae.architecture=neurons cannot transcode (d_out != d_in)")
        return neuron_dictionary(
            d_in, cfg.k, rotate=cfg.rotate, generator=generator, device=device, backend=backend
        )
    cls = architecture_class(cfg.architecture)
    sae = cls(
        d_in,
        num_latents,
        d_out=d_out,
        transcode=cfg.transcode,
        normalize_decoder=cfg.normalize_decoder,
        b_dec_init=cfg.b_dec_init,
        backend=backend,
        generator=generator,
        device=device,
        **_architecture_args(cfg),
    )
    sae.lr_scale = cfg.lr_scale  # training-only: not saved with the weights
    return sae
