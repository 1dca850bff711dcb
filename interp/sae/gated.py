"""Gated SAE (Rajamanoharan et al. 2024): a gate decides which latents fire, a
magnitude path how strongly; both share one encoder weight.

Shapes: N tokens, D = ``d_in``, E = ``d_out``, M = ``num_latents``.

    z      = (x - b_dec) @ encoder.weight.T                      [N, M]
    pi_gate = z + encoder.bias              (encoder.bias = b_gate)
    pi_mag  = z * exp(r_mag) + b_mag        (= x' (W_enc * exp(r_mag)) + b_mag)
    f = H(pi_gate) * relu(pi_mag)
    x_hat = f @ W_dec + b_dec

    loss = FVU(x_hat) + c(step) * mean_n sum_i relu(pi_gate)_ni ||W_dec_i|| / rms(y)
         + FVU(relu(pi_gate) @ sg(W_dec) + sg(b_dec))

sg = stop-gradient: the auxiliary reconstruction trains the gate only, as in the paper
and dictionary_learning (SAELens does not detach). The gate gets no gradient from the
main FVU (H has none); the L1 and the auxiliary term train it. c warms up over
``sparsity_warmup_steps``; rms(y) as in :mod:`interp.sae.relu`.

Parameters: ``encoder.weight`` [M, D], ``encoder.bias`` [M] (the gate bias b_gate),
``r_mag`` [M], ``b_mag`` [M], ``W_dec`` [M, E], ``b_dec`` [E]. SAELens names:
W_enc = encoder.weight.T, b_gate = encoder.bias, r_mag, b_mag, W_dec, b_dec.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from interp.sae.base import (
    EncoderOutput,
    SparseCoder,
    TrainOutput,
    dense_to_sparse,
    fraction_of_variance_unexplained,
)
from interp.sae.relu import SparsityPenaltyMixin, weighted_l1


class GatedSAE(SparsityPenaltyMixin, SparseCoder):
    """Gated SAE with tied init and unit-norm decoder rows."""

    architecture = "gated"

    def _init_architecture(self, device: torch.device) -> None:
        self.r_mag = nn.Parameter(torch.zeros(self.num_latents, device=device))
        self.b_mag = nn.Parameter(torch.zeros(self.num_latents, device=device))

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Tied init as the base; r_mag = b_mag = 0, so both paths start equal."""
        super().reset_parameters(generator)
        self.r_mag.zero_()
        self.b_mag.zero_()

    def gate_and_magnitude(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pi_gate [N, M], pi_mag [N, M]) pre-activations."""
        z_NM = F.linear(self._center(x_ND), self.encoder.weight)
        return z_NM + self.encoder.bias, z_NM * self.r_mag.exp() + self.b_mag

    def _acts(self, pi_gate_NM: torch.Tensor, pi_mag_NM: torch.Tensor) -> torch.Tensor:
        return torch.where(pi_gate_NM > 0, F.relu(pi_mag_NM), torch.zeros_like(pi_mag_NM))

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        return dense_to_sparse(self._acts(*self.gate_and_magnitude(x_ND)))

    def _train_forward(
        self, x_ND: torch.Tensor, y_NE: torch.Tensor, dead_M: torch.Tensor | None, step: int
    ) -> TrainOutput:
        pi_gate_NM, pi_mag_NM = self.gate_and_magnitude(x_ND)
        acts_NM = self._acts(pi_gate_NM, pi_mag_NM)
        via_gate_NM = F.relu(pi_gate_NM)
        l1 = self._coefficient(step) * weighted_l1(via_gate_NM, self.W_dec, y_NE)
        aux_out_NE = via_gate_NM @ self.W_dec.detach() + self.b_dec.detach()
        aux = fraction_of_variance_unexplained(y_NE, aux_out_NE)
        return self._dense_output(acts_NM, y_NE, {"sparsity_loss": l1, "aux_fvu": aux})
