"""Held-out evaluation of a trained SAE, including the SAE spliced into the full LM.

Shapes: B windows, T = ctx_len, E = exclude_first, D = d_in, V = vocab size.

Reconstruction metrics use every position >= E: FVU = sum e^2 / sum (y - mean)^2 with the
mean over the whole evaluation set, L0 = mean count of non-zero latents. For the spliced
metrics the reconstruction replaces the activation at the dictionary's target hookpoint
(its input hookpoint unless a transcoder) at positions >= E, and next-token CE and
KL(clean || spliced) are averaged over the predictions made at positions E..T-2
(earlier ones cannot change: the model is causal).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

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


def _first_tensor(value: Any) -> torch.Tensor:
    return value[0] if isinstance(value, (tuple, list)) else value


def _hook(module: nn.Module, is_input: bool, fn: Callable[[torch.Tensor], Any]) -> Any:
    """Register ``fn`` on a module's input (pre-hook) or output; ``fn`` gets the tensor
    and returns a replacement, or None to leave it alone. Returns the handle."""
    if is_input:

        def pre(_m: nn.Module, args: tuple, kwargs: dict) -> Any:
            if args:
                new = fn(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)
            key = next(iter(kwargs))
            new = fn(kwargs[key])
            return None if new is None else (args, {**kwargs, key: new})

        return module.register_forward_pre_hook(pre, with_kwargs=True)

    def post(_m: nn.Module, _i: Any, output: Any) -> Any:
        new = fn(_first_tensor(output))
        return None if new is None else _replace_output(output, new)

    return module.register_forward_hook(post)


class Site:
    """A hookpoint of the full LM: its module and whether it is the module's input."""

    def __init__(self, lm: nn.Module, hookpoint: str) -> None:
        base = getattr(lm, lm.base_model_prefix, lm)
        self.is_input = hookpoint.endswith(":input")
        self.module = base.get_submodule(hookpoint.removesuffix(":input"))


def _logits(
    lm: nn.Module, ids_BT: torch.Tensor, hooks: list[tuple[Site, Callable]]
) -> torch.Tensor:
    """Logits [B, T, V] (float32) of one forward with ``hooks`` in place."""
    handles = [_hook(site.module, site.is_input, fn) for site, fn in hooks]
    try:
        return lm(input_ids=ids_BT, use_cache=False).logits.float()
    finally:
        for h in handles:
            h.remove()


def _eval_batch(
    sae: nn.Module,
    lm: nn.Module,
    x_site: Site,
    y_site: Site,
    ids_BT: torch.Tensor,
    e: int,
    sums: _Sums,
) -> None:
    captured: dict[str, torch.Tensor] = {}

    def keep(key: str) -> Callable[[torch.Tensor], None]:
        def store(t: torch.Tensor) -> None:
            captured.setdefault(key, t)

        return store

    logits_clean = _logits(lm, ids_BT, [(x_site, keep("x")), (y_site, keep("y"))])
    x_BTD, y_BTE = captured["x"], captured["y"]
    sae_device = _device_of(sae)  # the LM's layers may sit elsewhere (model.device_map)
    x_ND = x_BTD[:, e:].reshape(-1, x_BTD.shape[-1]).to(sae_device, torch.float32)
    y_NE = y_BTE[:, e:].reshape(-1, y_BTE.shape[-1]).to(sae_device, torch.float32)
    acts_NK, idx_NK = sae.encode(x_ND)
    y_hat_NE = sae.decode(acts_NK, idx_NK)
    sums.add_reconstruction(y_NE, y_hat_NE, acts_NK)
    spliced_BTE = y_BTE.clone()
    y_hat_BTE = y_hat_NE.reshape(y_BTE.shape[0], -1, y_BTE.shape[-1])
    spliced_BTE[:, e:] = y_hat_BTE.to(y_BTE.device, y_BTE.dtype)
    done = {"n": 0}

    def splice(_t: torch.Tensor) -> torch.Tensor | None:
        done["n"] += 1  # replace the first call only (a module may run more than once)
        return spliced_BTE if done["n"] == 1 else None

    logits_spliced = _logits(lm, ids_BT, [(y_site, splice)])
    _add_lm_metrics(logits_clean, logits_spliced, ids_BT, e, sums)


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(itertools.chain(module.parameters(), module.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


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
    sae: nn.Module,
    lm: nn.Module,
    windows: np.ndarray,
    exclude_first: int,
    *,
    hookpoint: str,
    target: str | None = None,
    batch_size: int = 8,
) -> dict[str, float]:
    """FVU, L0, CE clean/spliced/increase and KL on held-out ``windows`` [n, T].

    The dictionary reads ``hookpoint`` and its reconstruction replaces ``target``
    (default: the hookpoint itself; a transcoder's output hookpoint otherwise) in the
    full causal LM ``lm``.
    """
    if windows.shape[1] - exclude_first < 2:
        raise ValueError("evaluation needs ctx_len - exclude_first >= 2 positions per window")
    x_site, y_site = Site(lm, hookpoint), Site(lm, target or hookpoint)
    from interp.models.placement import input_device

    device = input_device(lm)  # a model spread over devices takes ids where it embeds them
    sums = _Sums()
    for start in range(0, len(windows), batch_size):
        ids = np.asarray(windows[start : start + batch_size], dtype=np.int64)
        ids_BT = torch.from_numpy(ids).to(device)
        _eval_batch(sae, lm, x_site, y_site, ids_BT, exclude_first, sums)
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
