"""Held-out evaluation of a trained SAE, including the SAE spliced into the full LM.

Shapes: B windows, T = ctx_len, E = exclude_first, D = d_in, V = vocab size.

Reconstruction metrics use every position >= E: FVU = sum e^2 / sum (y - mean)^2 with the
mean over the whole evaluation set, L0 = mean count of non-zero latents. For the spliced
metrics the SAE reconstruction replaces the residual stream after layer ``layer`` at
positions >= E, and next-token CE and KL(clean || spliced) are averaged over the
predictions made at positions E..T-2 (earlier ones cannot change: the model is causal).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from interp.models import decoder_layers
from interp.sae import TopKSAE

EVAL_WINDOWS = 32


class _Sums:
    """Running sums of the evaluation, kept in float64."""

    def __init__(self) -> None:
        self.sq_err = self.sum_sq = 0.0
        self.sum_y: torch.Tensor | None = None
        self.vectors = self.active = 0
        self.ce_clean = self.ce_spliced = self.kl = 0.0
        self.predictions = 0

    def add_reconstruction(
        self, y_ND: torch.Tensor, y_hat_ND: torch.Tensor, acts_NK: torch.Tensor
    ) -> None:
        y64 = y_ND.double()
        self.sq_err += (y64 - y_hat_ND.double()).pow(2).sum().item()
        self.sum_sq += y64.pow(2).sum().item()
        s = y64.sum(0)
        self.sum_y = s if self.sum_y is None else self.sum_y + s
        self.vectors += y_ND.shape[0]
        self.active += int((acts_NK > 0).sum())

    def fvu(self) -> float:
        # sum ||y - mean||^2 = sum ||y||^2 - n ||mean||^2
        assert self.sum_y is not None
        total_variance = self.sum_sq - self.sum_y.pow(2).sum().item() / self.vectors
        return self.sq_err / total_variance


def _replace_output(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


def _hidden_of(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _run_with_hook(
    lm: nn.Module, layer: nn.Module, hook: Callable, ids_BT: torch.Tensor
) -> torch.Tensor:
    """Logits [B, T, V] (float32) of one forward with ``hook`` on ``layer``."""
    handle = layer.register_forward_hook(hook)
    try:
        return lm(input_ids=ids_BT, use_cache=False).logits.float()
    finally:
        handle.remove()


def _eval_batch(
    sae: TopKSAE, lm: nn.Module, layer: nn.Module, ids_BT: torch.Tensor, e: int, sums: _Sums
) -> None:
    captured: dict[str, torch.Tensor] = {}

    def capture(_m: nn.Module, _i: Any, output: Any) -> None:
        captured["h"] = _hidden_of(output)

    logits_clean = _run_with_hook(lm, layer, capture, ids_BT)
    h_BTD = captured["h"]
    y_ND = h_BTD[:, e:].reshape(-1, h_BTD.shape[-1]).float()
    out = sae(y_ND)
    sums.add_reconstruction(y_ND, out.sae_out, out.top_acts)
    spliced_BTD = h_BTD.clone()
    spliced_BTD[:, e:] = out.sae_out.reshape(h_BTD.shape[0], -1, h_BTD.shape[-1]).to(h_BTD.dtype)

    def splice(_m: nn.Module, _i: Any, output: Any) -> Any:
        return _replace_output(output, spliced_BTD)

    logits_spliced = _run_with_hook(lm, layer, splice, ids_BT)
    _add_lm_metrics(logits_clean, logits_spliced, ids_BT, e, sums)


def _add_lm_metrics(
    logits_clean: torch.Tensor,
    logits_spliced: torch.Tensor,
    ids_BT: torch.Tensor,
    e: int,
    sums: _Sums,
) -> None:
    targets = ids_BT[:, e + 1 :].reshape(-1)
    logp_clean = F.log_softmax(logits_clean[:, e:-1].reshape(targets.numel(), -1), dim=-1)
    logp_spliced = F.log_softmax(logits_spliced[:, e:-1].reshape(targets.numel(), -1), dim=-1)
    sums.ce_clean += F.nll_loss(logp_clean, targets, reduction="sum").item()
    sums.ce_spliced += F.nll_loss(logp_spliced, targets, reduction="sum").item()
    sums.kl += F.kl_div(logp_spliced, logp_clean, log_target=True, reduction="sum").item()
    sums.predictions += targets.numel()


@torch.no_grad()
def evaluate_spliced(
    sae: TopKSAE,
    lm: nn.Module,
    layer: int,
    windows: np.ndarray,
    exclude_first: int,
    batch_size: int = 8,
) -> dict[str, float]:
    """FVU, L0, CE clean/spliced/increase and KL on ``windows`` [n, T] (held-out)."""
    if windows.shape[1] - exclude_first < 2:
        raise ValueError("evaluation needs ctx_len - exclude_first >= 2 positions per window")
    block = decoder_layers(lm)[layer]
    device = next(lm.parameters()).device
    sums = _Sums()
    for start in range(0, len(windows), batch_size):
        ids = np.asarray(windows[start : start + batch_size], dtype=np.int64)
        _eval_batch(sae, lm, block, torch.from_numpy(ids).to(device), exclude_first, sums)
    ce_clean = sums.ce_clean / sums.predictions
    ce_spliced = sums.ce_spliced / sums.predictions
    result = {
        "fvu": sums.fvu(),
        "l0": sums.active / sums.vectors,
        "ce_clean": ce_clean,
        "ce_spliced": ce_spliced,
        "ce_increase": ce_spliced - ce_clean,
        "kl": sums.kl / sums.predictions,
        "eval_tokens": sums.vectors,
    }
    assert all(math.isfinite(v) for v in result.values()), result
    return result
