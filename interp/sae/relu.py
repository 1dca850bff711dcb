"""ReLU SAE with an L1 penalty weighted by decoder norms ("standard"; Anthropic's April
2024 update, SAELens ``StandardTrainingSAE``).

Shapes: N tokens, D = ``d_in``, E = ``d_out``, M = ``num_latents``.

    f = relu((x - b_dec) @ encoder.weight.T + encoder.bias)            [N, M]
    x_hat = f @ W_dec + b_dec
    loss = FVU + c(step) * mean_n sum_i f_ni * ||W_dec_i|| / rms(y)

Weighting by ||W_dec_i|| stops the L1 from being dodged by shrinking activations and
growing decoder rows, so the decoder need not be kept unit-norm (``normalize_decoder``
false, the default in ``conf/sae/relu.yaml``). rms(y) = sqrt(mean_n ||y_n - mean y||^2)
makes the penalty scale-free like the FVU. c warms up over ``sparsity_warmup_steps``.

Parameters: sparsify's four, ``encoder.weight`` [M, D], ``encoder.bias`` [M], ``W_dec``
[M, E], ``b_dec`` [E].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interp.sae.base import (
    EncoderOutput,
    SparseCoder,
    TrainOutput,
    dense_to_sparse,
    total_variance,
    warmup_factor,
)
from interp.sae.specs.relu import L1Config


def weighted_l1(acts_NM: torch.Tensor, W_dec_ME: torch.Tensor, y_NE: torch.Tensor) -> torch.Tensor:
    """mean_n sum_i acts_ni * ||W_dec_i||, divided by the RMS norm of the centred y."""
    rms = (total_variance(y_NE) / y_NE.shape[0]).sqrt().clamp_min(1e-12)
    return (acts_NM * W_dec_ME.norm(dim=1)).sum(-1).mean() / rms


class SparsityPenaltyMixin:
    """The warmed-up L1 coefficient shared by the L1-penalised architectures."""

    Config = L1Config
    l1_coefficient: float
    sparsity_warmup_steps: int

    def _coefficient(self, step: int) -> float:
        return self.l1_coefficient * warmup_factor(step, self.sparsity_warmup_steps)


class ReLUSAE(SparsityPenaltyMixin, SparseCoder):
    """ReLU SAE, tied init, L1 weighted by decoder row norms."""

    architecture = "relu"
    default_normalize_decoder = False

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        return dense_to_sparse(F.relu(self.pre_acts(x_ND)))

    def _train_forward(
        self, x_ND: torch.Tensor, y_NE: torch.Tensor, dead_M: torch.Tensor | None, step: int
    ) -> TrainOutput:
        acts_NM = F.relu(self.pre_acts(x_ND))
        l1 = self._coefficient(step) * weighted_l1(acts_NM, self.W_dec, y_NE)
        return self._dense_output(acts_NM, y_NE, {"sparsity_loss": l1})
