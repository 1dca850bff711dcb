"""Losses and statistics shared by the architectures: FVU, AuxK, b_dec's geometric
median, penalty warmup.

Shapes: N tokens, D = ``d_in``, E = ``d_out``, M = ``num_latents``, K active latents.
"""

from __future__ import annotations

from typing import Any

import torch

from interp_kernels.topk import Backend, topk_decode


def total_variance(y_NE: torch.Tensor) -> torch.Tensor:
    """sum((y - batch mean of y)^2), a scalar: the FVU denominator. (N times the per-column
    population variance, summed: no [N, E] temporaries.)"""
    return torch.var(y_NE, dim=0, correction=0).sum() * y_NE.shape[0]


class _SumSquaredError(torch.autograd.Function):
    """sum((a - b)^2) in one pass forward and one backward (autograd's sub, pow, sum
    chain makes four [N, E] temporaries and a negation)."""

    @staticmethod
    def forward(ctx: Any, a_NE: torch.Tensor, b_NE: torch.Tensor) -> torch.Tensor:
        d_NE = a_NE - b_NE
        ctx.save_for_backward(d_NE)
        return d_NE.pow(2).sum()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (d_NE,) = ctx.saved_tensors
        grad_a = d_NE * (2 * grad)
        grad_b = -grad_a if ctx.needs_input_grad[1] else None
        return grad_a if ctx.needs_input_grad[0] else None, grad_b


def sum_squared_error(a_NE: torch.Tensor, b_NE: torch.Tensor) -> torch.Tensor:
    """sum((a - b)^2), a scalar, differentiable in both."""
    return _SumSquaredError.apply(a_NE, b_NE)


def fraction_of_variance_unexplained(y_NE: torch.Tensor, y_hat_NE: torch.Tensor) -> torch.Tensor:
    """sum((y - y_hat)^2) / sum((y - mean(y))^2), a scalar."""
    return sum_squared_error(y_hat_NE, y_NE) / total_variance(y_NE)


def geometric_median(x_ND: torch.Tensor, *, max_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """[D] point minimising the sum of Euclidean distances to the rows of ``x_ND``
    (Weiszfeld's iteration from the mean, with distances floored to avoid 0/0)."""
    x_ND = x_ND.double()
    median_D = x_ND.mean(0)
    scale = x_ND.norm(dim=1).mean().clamp_min(1e-12)
    for _ in range(max_iter):
        dist_N = (x_ND - median_D).norm(dim=1).clamp_min(1e-8 * scale)
        weights_N = 1.0 / dist_N
        new_D = (weights_N[:, None] * x_ND).sum(0) / weights_N.sum()
        moved = (new_D - median_D).norm()
        median_D = new_D
        if moved <= tol * scale:
            break
    return median_D


def auxk_loss(
    pre_NM: torch.Tensor,
    dead_M: torch.Tensor,
    e_NE: torch.Tensor,
    total_var: torch.Tensor,
    W_dec_ME: torch.Tensor,
    *,
    backend: Backend = "torch",
) -> torch.Tensor:
    """AuxK (Gao et al.), in its correct form: the top-k_aux *dead* (ReLU'd)
    pre-activations decode the residual ``e`` of the main reconstruction.

    k_aux = E // 2, scale = min(num_dead / k_aux, 1); e_hat has no b_dec (the residual
    already excludes it) and the target e is detached, so only dead latents learn.
    Returns scale * sum((e_hat - e)^2) / total_var, or 0 when no latent is dead.
    """
    num_dead = int(dead_M.sum().item())
    if num_dead == 0:
        return pre_NM.new_zeros(())
    k_aux = e_NE.shape[-1] // 2
    scale = min(num_dead / k_aux, 1.0)
    k_aux = min(k_aux, num_dead)
    dead_pre_NM = torch.where(dead_M, pre_NM, -torch.inf)
    aux_acts_NK, aux_idx_NK = dead_pre_NM.topk(k_aux, dim=-1, sorted=False)
    e_hat_NE = topk_decode(aux_idx_NK, aux_acts_NK, W_dec_ME, backend=backend)
    return scale * (e_hat_NE - e_NE.detach()).pow(2).sum() / total_var


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup of a penalty coefficient: (step + 1) / warmup_steps, capped at 1."""
    return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)
