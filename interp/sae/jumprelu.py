"""JumpReLU SAE (Rajamanoharan et al. 2024; the Gemma Scope recipe) trained with
straight-through estimators.

Shapes: N tokens, D = ``d_in``, E = ``d_out``, M = ``num_latents``.

    pre = (x - b_dec) @ encoder.weight.T + encoder.bias          [N, M]
    f   = pre * H(pre - threshold)                                [N, M]  (0 below threshold)
    x_hat = f @ W_dec + b_dec

Parameters: sparsify's four (``encoder.weight`` [M, D], ``encoder.bias`` [M], ``W_dec``
[M, E], ``b_dec`` [E]) plus ``threshold`` [M], an fp32 parameter stored directly (not as
exp(log threshold), which under Adam barely moves), kept >= 0.

The Heaviside step has no useful gradient, so the threshold learns through rectangle-
kernel pseudo-derivatives of bandwidth eps, rect(u) = 1[-1/2 < u < 1/2]:

    JumpReLU:  d f / d pre = H(pre - theta)     d f / d theta = -(theta / eps) rect((pre - theta) / eps)
    Step (L0): d H / d pre = 0                  d H / d theta = -(1 / eps) rect((pre - theta) / eps)

Loss = FVU + c(step) * sparsity, with L0 = mean over tokens of sum_i H(pre_i - theta_i):
``sparsity_loss="l0"`` is the paper's L0; ``"target_l0"`` is (L0 / target_l0 - 1)^2,
which holds L0 near a target instead of trading it off. c warms up linearly over
``sparsity_warmup_steps``.

Not subtracting b_dec from the input (Gemma Scope's convention) is the same function
with encoder.bias' = encoder.bias + encoder.weight @ b_dec: importers fold it.
"""

from __future__ import annotations

from typing import Any

import torch

from interp.sae.base import (
    EncoderOutput,
    SparseCoder,
    TrainOutput,
    dense_to_sparse,
    warmup_factor,
)
from interp.sae.specs.jumprelu import JumpReLUConfig, SparsityLoss


def _rect(u: torch.Tensor) -> torch.Tensor:
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLUFunction(torch.autograd.Function):
    """f = pre * H(pre - theta), with the bandwidth-eps pseudo-derivative for theta."""

    @staticmethod
    def forward(ctx: Any, pre_NM: torch.Tensor, theta_M: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre_NM, theta_M)
        ctx.eps = eps
        return jump(pre_NM, theta_M)

    @staticmethod
    def backward(ctx: Any, grad_NM: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pre_NM, theta_M = ctx.saved_tensors
        eps = ctx.eps
        grad_pre = grad_NM * (pre_NM > theta_M).to(grad_NM.dtype)
        pseudo_NM = -(theta_M / eps) * _rect((pre_NM - theta_M) / eps)
        grad_theta = (grad_NM * pseudo_NM).reshape(-1, theta_M.shape[-1]).sum(0)
        return grad_pre, grad_theta, None


class StepFunction(torch.autograd.Function):
    """H(pre - theta), with no gradient to pre and the pseudo-derivative for theta."""

    @staticmethod
    def forward(ctx: Any, pre_NM: torch.Tensor, theta_M: torch.Tensor, eps: float) -> torch.Tensor:
        ctx.save_for_backward(pre_NM, theta_M)
        ctx.eps = eps
        return (pre_NM > theta_M).to(pre_NM.dtype)

    @staticmethod
    def backward(ctx: Any, grad_NM: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        pre_NM, theta_M = ctx.saved_tensors
        eps = ctx.eps
        pseudo_NM = -(1.0 / eps) * _rect((pre_NM - theta_M) / eps)
        grad_theta = (grad_NM * pseudo_NM).reshape(-1, theta_M.shape[-1]).sum(0)
        return None, grad_theta, None


def jump(pre_NM: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """pre where pre > theta, else 0 (theta [M] or a scalar; theta >= 0 gives f >= 0)."""
    return torch.where(pre_NM > theta, pre_NM, torch.zeros((), dtype=pre_NM.dtype))


class JumpReLUSAE(SparseCoder):
    """JumpReLU SAE: per-latent learned threshold, unit-norm decoder, L0 penalty.

    ``bandwidth`` is eps, in pre-activation units. ``threshold_init`` > 0 starts every
    threshold there; 0 sets them, in :meth:`init_from_batch`, to the one value at which
    the first batch has L0 = ``target_l0``. Adam moves a threshold by about lr per
    step, slow next to pre-activations of order 1 in a short run:
    ``threshold_lr_scale`` multiplies its learning rate (through :meth:`param_groups`).
    """

    architecture = "jumprelu"
    Config = JumpReLUConfig
    bandwidth: float
    sparsity_loss: SparsityLoss
    l0_coefficient: float
    target_l0: float
    threshold_init: float
    sparsity_warmup_steps: int
    threshold_lr_scale: float

    def _init_architecture(self, device: torch.device) -> None:
        self.threshold = torch.nn.Parameter(
            torch.full((self.num_latents,), self.threshold_init, dtype=torch.float32, device=device)
        )

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        super().reset_parameters(generator)
        self.threshold.fill_(self.threshold_init)

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """b_dec (and a transcoder's b_enc) as the base class; then, if threshold_init
        is 0, one threshold for all latents at which this batch's L0 is target_l0."""
        super().init_from_batch(x, y)
        if self.threshold_init > 0:
            return
        x_ND, _ = self._flatten(x, y)
        pre = self.pre_acts(x_ND).flatten()
        n_keep = min(pre.numel(), max(1, round(self.target_l0 * x_ND.shape[0])))
        kth = pre.topk(n_keep, sorted=False).values.min()
        # Just below the n_keep-th value (so it is kept), never negative.
        self.threshold.fill_(max(0.0, float(kth) - 1e-6 * abs(float(kth))))

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        return dense_to_sparse(jump(self.pre_acts(x_ND), self.threshold))

    def _train_forward(
        self, x_ND: torch.Tensor, y_NE: torch.Tensor, dead_M: torch.Tensor | None, step: int
    ) -> TrainOutput:
        pre_NM = self.pre_acts(x_ND)
        acts_NM = JumpReLUFunction.apply(pre_NM, self.threshold, self.bandwidth)
        l0 = StepFunction.apply(pre_NM, self.threshold, self.bandwidth).sum(-1).mean()
        sparsity = l0 if self.sparsity_loss == "l0" else (l0 / self.target_l0 - 1).pow(2)
        coefficient = self.l0_coefficient * warmup_factor(step, self.sparsity_warmup_steps)
        return self._dense_output(acts_NM, y_NE, {"sparsity_loss": coefficient * sparsity})

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Renormalise decoder rows; keep thresholds >= 0 (so activations stay >= 0)."""
        super().after_optimizer_step()
        self.threshold.clamp_(min=0.0)

    def lr_scales(self) -> dict[str, float]:
        """The threshold learns at lr * threshold_lr_scale (see :meth:`param_groups`)."""
        return {"threshold": self.threshold_lr_scale}
