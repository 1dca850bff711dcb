"""Neurons as a dictionary: the hookpoint's own basis, sparsified with top-k.

"SAE latents vs neurons" is then one sweep through the same pipeline: a neuron dictionary
is a :class:`~interp.sae.topk.TopKSAE` that is built, never trained, with

    encoder.weight = R [M, D]   (identity, or a random orthogonal matrix for the control)
    encoder.bias   = 0,  b_dec = 0,  W_dec = R  (rows unit norm: R is orthogonal)

so latent m of a token is ``relu(<R[m], x>)`` when among the token's k largest, and the
reconstruction is the top-k part of ``x`` in that basis. With R = I, latent m is neuron m
of e.g. ``layers.N.mlp.down_proj:input`` (the MLP's hidden activations). The rotated
control (Paulo et al. compare against it) spreads each latent over every neuron, keeping
the geometry but destroying the privileged basis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from interp.sae.topk import TopKSAE
from interp_kernels.topk import Backend

if TYPE_CHECKING:
    from interp.sae.config import SAEConfig


def random_rotation(d: int, generator: torch.Generator) -> torch.Tensor:
    """[d, d] orthogonal matrix drawn uniformly (Haar): QR of a Gaussian matrix with the
    signs of R's diagonal folded into Q."""
    gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    return (q * torch.sign(torch.diagonal(r))).float()


def neuron_dictionary(
    d_in: int,
    k: int,
    *,
    rotate: bool = False,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    backend: Backend = "torch",
) -> TopKSAE:
    """The basis of a d_in-wide hookpoint (rotated when ``rotate``) as a top-k dictionary."""
    if not 0 < k < d_in:
        raise ValueError(f"neurons: k={k} must be in [1, {d_in}) (the hookpoint's width)")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    basis = random_rotation(d_in, generator) if rotate else torch.eye(d_in)
    sae = TopKSAE(d_in, d_in, k, backend=backend, generator=generator, device=device)
    with torch.no_grad():
        sae.encoder.weight.copy_(basis)
        sae.encoder.bias.zero_()
        sae.W_dec.copy_(basis)
        sae.b_dec.zero_()
    return sae


def build_neurons(
    cfg: SAEConfig,
    d_in: int,
    d_out: int | None = None,
    *,
    generator: torch.Generator | None = None,
    device: str | torch.device | None = None,
    backend: Backend = "torch",
) -> TopKSAE:
    """The neuron dictionary ``cfg`` asks for (the ``build`` of its architecture spec)."""
    if d_out not in (None, d_in):
        raise ValueError("sae.architecture=neurons cannot transcode (d_out != d_in)")
    return neuron_dictionary(
        d_in, cfg.k, rotate=cfg.rotate, generator=generator, device=device, backend=backend
    )
