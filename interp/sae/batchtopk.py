"""BatchTopK SAE (Bussmann et al. 2024): a TopK whose k is an average over the batch.

Shapes: N tokens, D = ``d_in``, E = ``d_out``, M = ``num_latents``.

Training keeps the k * N largest of the flattened [N, M] ReLU pre-activations, so some
tokens use more latents than others:

    pre = relu((x - b_dec) @ encoder.weight.T + encoder.bias)            [N, M]
    f   = pre where pre is among the top k*N of pre.flatten(), else 0    [N, M]
    x_hat = f @ W_dec + b_dec

Inference cannot depend on the batch, so it uses one global ``threshold``: an EMA (rate
``threshold_ema``) of the smallest activation kept in each training batch, updated in
:meth:`after_optimizer_step` from this process's batch (under data parallelism, average
the ``threshold`` buffer across ranks after it, as for any buffer). :meth:`encode` is
``f = pre * H(pre - threshold)``, and :meth:`to_inference` returns the
:class:`JumpReLUSAE` computing exactly that.

Parameters: sparsify's four (``encoder.weight`` [M, D], ``encoder.bias`` [M], ``W_dec``
[M, E], ``b_dec`` [E]) plus the buffer ``threshold`` [] (0 until the first estimate).
Loss = FVU (+ ``auxk_alpha`` * AuxK on dead latents, as TopK).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from interp.sae.base import (
    EncoderOutput,
    SparseCoder,
    TrainOutput,
    auxk_loss,
    dense_to_sparse,
    total_variance,
)
from interp.sae.jumprelu import JumpReLUSAE, jump
from interp.sae.specs.batchtopk import BatchTopKConfig


class BatchTopKSAE(SparseCoder):
    """BatchTopK SAE with tied init, unit-norm decoder and a learned global threshold."""

    architecture = "batchtopk"
    Config = BatchTopKConfig
    k: int
    auxk_alpha: float
    threshold_ema: float

    def _init_architecture(self, device: torch.device) -> None:
        if not self.k < self.num_latents:
            raise ValueError(f"k={self.k} must be in [1, num_latents={self.num_latents})")
        self.register_buffer("threshold", torch.zeros((), dtype=torch.float32, device=device))
        self._pending_min_kept: torch.Tensor | None = None

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        self.threshold.zero_()

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        """Inference code: the global threshold, not the batch (JumpReLU's formula)."""
        return dense_to_sparse(jump(self.pre_acts(x_ND), self.threshold))

    def _train_forward(
        self, x_ND: torch.Tensor, y_NE: torch.Tensor, dead_M: torch.Tensor | None, step: int
    ) -> TrainOutput:
        pre_NM = F.relu(self.pre_acts(x_ND))
        n_keep = min(self.k * pre_NM.shape[0], pre_NM.numel())
        kept_vals, kept_flat = pre_NM.flatten().topk(n_keep, sorted=False)
        keep_NM = torch.zeros_like(pre_NM, dtype=torch.bool).flatten()
        keep_NM[kept_flat] = True
        acts_NM = pre_NM * keep_NM.view_as(pre_NM)
        # inf when nothing positive was kept (then the threshold stays); no host sync.
        positive = torch.where(kept_vals > 0, kept_vals, torch.inf)
        self._pending_min_kept = positive.detach().min()
        terms: dict[str, torch.Tensor] = {}
        sae_out_NE = self.decode_dense(acts_NM)
        if self.auxk_alpha > 0 and dead_M is not None:
            e_NE = y_NE - sae_out_NE
            aux = auxk_loss(pre_NM, dead_M, e_NE, total_variance(y_NE), self.W_dec)
            terms["auxk"] = self.auxk_alpha * aux
        return self._dense_output(acts_NM, y_NE, terms, sae_out_NE)

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Renormalise decoder rows, and move the threshold towards the smallest
        activation the last training batch kept (set to it on the first update)."""
        super().after_optimizer_step()
        if self._pending_min_kept is None:
            return
        new = self._pending_min_kept.to(self.threshold.dtype)
        moved = torch.where(self.threshold > 0, self.threshold.lerp(new, self.threshold_ema), new)
        self.threshold.copy_(torch.where(torch.isfinite(new), moved, self.threshold))
        self._pending_min_kept = None

    def to_inference(self) -> JumpReLUSAE:
        """The JumpReLU with every threshold at the learned global one: equal outputs."""
        out = JumpReLUSAE(
            self.d_in,
            self.num_latents,
            d_out=self.d_out,
            transcode=self.transcode,
            normalize_decoder=self.normalize_decoder,
            b_dec_init=self.b_dec_init,
            backend=self.backend,
            device=self.W_dec.device,
        )
        state = {k: v for k, v in self.state_dict().items() if k != "threshold"}
        state["threshold"] = self.threshold.expand(self.num_latents).clone()
        out.load_state_dict(state, strict=True)
        return out
