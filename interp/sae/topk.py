"""The TopK sparse autoencoder (sparsify's ``SparseCoder`` with activation="topk").

Shapes: N tokens, D = ``d_in``, M = ``num_latents``, K = ``k``.

    top_acts, top_idx = topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias), K)
    x_hat = sum_j top_acts[:, j] * W_dec[top_idx[:, j]] + b_dec

Parameter names and layouts match sparsify (``encoder.weight`` [M, D], ``encoder.bias``
[M], ``W_dec`` [M, D], ``b_dec`` [D]) so the saved files load in sparsify and delphi.
The SAE always computes in float32; the kernels are chosen by an explicit ``backend``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

from kernels.topk import Backend, topk_decode, topk_encode


class EncoderOutput(NamedTuple):
    """The sparse code of a batch of activations."""

    top_acts: torch.Tensor
    """[..., K] float32 activations of the selected latents (>= 0, unsorted)."""

    top_idx: torch.Tensor
    """[..., K] int64 indices of the selected latents, in [0, num_latents)."""


class ForwardOutput(NamedTuple):
    """Reconstruction, code and loss of one batch."""

    sae_out: torch.Tensor
    """[N, D] reconstruction of the input."""

    top_acts: torch.Tensor
    """[N, K] activations of the selected latents."""

    top_idx: torch.Tensor
    """[N, K] indices of the selected latents."""

    fvu: torch.Tensor
    """Scalar fraction of variance unexplained, sum(e^2) / sum((y - mean(y))^2) over the
    batch (sparsify's definition): scale-free, so no input normalisation is needed."""


def fraction_of_variance_unexplained(y_ND: torch.Tensor, y_hat_ND: torch.Tensor) -> torch.Tensor:
    """sum((y - y_hat)^2) / sum((y - batch mean of y)^2), a scalar."""
    total_variance = (y_ND - y_ND.mean(0)).pow(2).sum()
    return (y_ND - y_hat_ND).pow(2).sum() / total_variance


class TopKSAE(nn.Module):
    """TopK SAE with tied init, unit-norm decoder rows and b_dec subtracted on input."""

    def __init__(
        self,
        d_in: int,
        num_latents: int,
        k: int,
        *,
        backend: Backend = "torch",
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        super().__init__()
        if d_in <= 0 or num_latents <= 0:
            raise ValueError(f"d_in={d_in} and num_latents={num_latents} must be > 0")
        if not 0 < k <= num_latents:
            raise ValueError(f"k={k} must be in [1, num_latents={num_latents}]")
        self.d_in = d_in
        self.num_latents = num_latents
        self.k = k
        self.backend: Backend = backend
        # skip_init: initialise from `generator` only, never from the global RNG.
        device = torch.device("cpu") if device is None else torch.device(device)
        self.encoder = nn.utils.skip_init(nn.Linear, d_in, num_latents, device=device)
        self.W_dec = nn.Parameter(torch.empty(num_latents, d_in, device=device))
        self.b_dec = nn.Parameter(torch.zeros(d_in, device=device))
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default init for the encoder, zero biases, and the decoder tied to
        the encoder (W_dec = encoder.weight, rows renormalised): sparsify's init, which
        keeps most latents alive without AuxK."""
        nn.init.kaiming_uniform_(self.encoder.weight, a=math.sqrt(5), generator=generator)
        self.encoder.bias.zero_()
        self.W_dec.copy_(self.encoder.weight)
        self.b_dec.zero_()
        self.set_decoder_norm_to_unit_norm()

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """Sparse code of activations ``x`` [..., D] (cast to float32): [..., K] each."""
        if x.shape[-1] != self.d_in:
            raise ValueError(f"x has width {x.shape[-1]} but this SAE has d_in={self.d_in}")
        x_ND = x.reshape(-1, self.d_in).to(self.W_dec.dtype)
        top_acts_NK, top_idx_NK = topk_encode(
            x_ND, self.encoder.weight, self.encoder.bias, self.b_dec, self.k, backend=self.backend
        )
        lead = x.shape[:-1]
        return EncoderOutput(top_acts_NK.reshape(*lead, self.k), top_idx_NK.reshape(*lead, self.k))

    def decode(self, top_acts: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """Reconstruction [..., D] from a sparse code [..., K]."""
        lead = top_acts.shape[:-1]
        x_hat_ND = topk_decode(
            top_idx.reshape(-1, top_idx.shape[-1]),
            top_acts.reshape(-1, top_acts.shape[-1]),
            self.W_dec,
            backend=self.backend,
        )
        return (x_hat_ND + self.b_dec).reshape(*lead, self.d_in)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> ForwardOutput:
        """Encode and decode ``x`` [N, D]; FVU against ``y`` (default: ``x`` itself).

        Leading dimensions are flattened first (every output is [N, ...]), so the FVU
        denominator is always the variance around the mean over all N vectors.
        """
        x_ND = x.reshape(-1, self.d_in)
        top_acts_NK, top_idx_NK = self.encode(x_ND)
        sae_out_ND = self.decode(top_acts_NK, top_idx_NK)
        y_ND = x_ND if y is None else y.reshape(-1, self.d_in)
        fvu = fraction_of_variance_unexplained(y_ND.to(sae_out_ND.dtype), sae_out_ND)
        return ForwardOutput(sae_out_ND, top_acts_NK, top_idx_NK, fvu)

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Renormalise every decoder row to unit L2 norm (call before each forward in
        training) so activation magnitudes, not decoder norms, carry the scale."""
        eps = torch.finfo(self.W_dec.dtype).eps
        norm_M1 = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec /= norm_M1 + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out of W_dec.grad its component along each (unit-norm) decoder row,
        so Adam does not spend its step growing norms that renormalisation undoes."""
        if self.W_dec.grad is None:
            return
        parallel_M1 = (self.W_dec.grad * self.W_dec).sum(dim=1, keepdim=True)
        self.W_dec.grad -= parallel_M1 * self.W_dec

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, num_latents={self.num_latents}, k={self.k}"
