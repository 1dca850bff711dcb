"""The TopK sparse autoencoder (Gao et al. 2024; sparsify's ``SparseCoder``, activation
"topk"), with Multi-TopK and AuxK.

Shapes: N tokens, D = ``d_in``, E = ``d_out``, M = ``num_latents``, K = ``k``.

    top_acts, top_idx = topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias), K)
    x_hat = sum_j top_acts[:, j] * W_dec[top_idx[:, j]] + b_dec

Parameters (sparsify's names and layouts, so saved files load in sparsify and delphi):
``encoder.weight`` [M, D], ``encoder.bias`` [M], ``W_dec`` [M, E], ``b_dec`` [E].

Loss = FVU + ``auxk_alpha`` * AuxK + Multi-TopK FVU / 8 (sparsify's weights):
- Multi-TopK decodes the same pre-activations with the top 4K latents, so a dictionary
  trained at K also works at larger K and fewer latents die.
- AuxK (:func:`interp.sae.base.auxk_loss`) lets the latents the trainer marks dead
  reconstruct the residual; off by default (sparsify's default since 2024-06).
Without either, the encoder runs through the sparse kernel of ``interp_kernels.topk`` (its
backward touches only the K selected entries); with them, the dense [N, M] ReLU
pre-activations are kept for the extra top-k's. Both paths give the same values.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interp.sae.base import (
    EncoderOutput,
    ForwardOutput,
    SparseCoder,
    TrainOutput,
    auxk_loss,
    fraction_of_variance_unexplained,
    sum_squared_error,
    total_variance,
)
from interp.sae.specs.topk import TopKConfig
from interp_kernels.topk import topk_encode

__all__ = ["EncoderOutput", "ForwardOutput", "TopKSAE", "fraction_of_variance_unexplained"]

MULTI_TOPK_FACTOR = 4
MULTI_TOPK_WEIGHT = 1 / 8


class TopKSAE(SparseCoder):
    """TopK SAE with tied init, unit-norm decoder rows and b_dec subtracted on input.

    ``k`` active latents per token; ``multi_topk`` adds the top-4k reconstruction term;
    ``auxk_alpha`` > 0 turns on AuxK for the latents in ``forward``'s ``dead_mask``.
    """

    architecture = "topk"
    Config = TopKConfig
    k: int
    multi_topk: bool
    auxk_alpha: float

    def _init_architecture(self, device: torch.device) -> None:
        if not self.k <= self.num_latents:
            raise ValueError(f"k={self.k} must be in [1, num_latents={self.num_latents}]")

    @property
    def max_active(self) -> int:
        return self.k

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        b_dec_D = torch.zeros_like(x_ND[0]) if self.transcode else self.b_dec
        top_acts_NK, top_idx_NK = topk_encode(
            x_ND, self.encoder.weight, self.encoder.bias, b_dec_D, self.k, backend=self.backend
        )
        return EncoderOutput(top_acts_NK, top_idx_NK)

    def _train_forward(
        self, x_ND: torch.Tensor, y_NE: torch.Tensor, dead_M: torch.Tensor | None, step: int
    ) -> TrainOutput:
        use_auxk = self.auxk_alpha > 0 and dead_M is not None
        pre_NM = None
        if self.multi_topk or use_auxk:
            pre_NM = F.relu(self.pre_acts(x_ND))  # kept for the extra top-k's
            top_acts_NK, top_idx_NK = pre_NM.topk(self.k, dim=-1, sorted=False)
        else:
            top_acts_NK, top_idx_NK = self._encode_flat(x_ND)
        sae_out_NE = self.decode(top_acts_NK, top_idx_NK)
        total_var = total_variance(y_NE)
        fvu = sum_squared_error(sae_out_NE, y_NE) / total_var
        loss, metrics = fvu, {}
        if self.multi_topk:
            assert pre_NM is not None
            k4 = min(MULTI_TOPK_FACTOR * self.k, self.num_latents)
            acts4_NK, idx4_NK = pre_NM.topk(k4, dim=-1, sorted=False)
            multi_fvu = sum_squared_error(self.decode(acts4_NK, idx4_NK), y_NE) / total_var
            loss = loss + MULTI_TOPK_WEIGHT * multi_fvu
            metrics["multi_topk_fvu"] = multi_fvu.detach()
        if use_auxk:
            assert pre_NM is not None and dead_M is not None
            e_NE = y_NE - sae_out_NE
            auxk = auxk_loss(pre_NM, dead_M, e_NE, total_var, self.W_dec, backend=self.backend)
            loss = loss + self.auxk_alpha * auxk
            metrics["auxk"] = auxk.detach()
        active_NK = top_acts_NK > 0
        # Inactive slots write to a spare last entry: no boolean-mask gather (nonzero).
        fired_M = torch.zeros(self.num_latents + 1, dtype=torch.bool, device=x_ND.device)
        fired_M[top_idx_NK.masked_fill(~active_NK, self.num_latents)] = True
        fired_M = fired_M[: self.num_latents]
        return TrainOutput(
            sae_out=sae_out_NE,
            loss=loss,
            fvu=fvu,
            l0=active_NK.sum(-1).float().mean(),
            fired_M=fired_M,
            metrics=metrics,
            code=EncoderOutput(top_acts_NK, top_idx_NK),
        )
