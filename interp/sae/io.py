"""Save and load SAEs in sparsify's on-disk layout, which delphi loads directly.

A saved SAE is one folder::

    cfg.json          {"activation": "topk", "expansion_factor", "normalize_decoder": true,
                       "num_latents", "k", "multi_topk": false, "skip_connection": false,
                       "transcode": false, "d_in"}
    sae.safetensors   encoder.weight [M, D], encoder.bias [M], W_dec [M, D], b_dec [D]

We always write the explicit ``num_latents``; sparsify writes 0 for "d_in *
expansion_factor", which :func:`load_sae` also reads.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.runs import atomic_dir
from interp.sae.topk import TopKSAE

log = logging.getLogger(__name__)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
TENSOR_NAMES = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")


def sparsify_cfg(sae: TopKSAE) -> dict[str, Any]:
    """The cfg.json sparsify writes for this SAE (SparseCoderConfig fields + d_in)."""
    return {
        "activation": "topk",
        "expansion_factor": max(1, round(sae.num_latents / sae.d_in)),
        "normalize_decoder": True,
        "num_latents": sae.num_latents,
        "k": sae.k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": sae.d_in,
    }


def save_sae(sae: TopKSAE, path: str | Path) -> Path:
    """Write ``sae`` to folder ``path`` atomically (built under a temporary name, renamed).

    An existing folder is never replaced (a committed SAE is final): the new copy is
    then discarded with a warning. Returns ``path``.
    """
    final = Path(path)
    if final.exists():
        log.warning("%s already exists: keeping it, not overwriting", final)
    tensors = {name: t.detach().contiguous().cpu() for name, t in sae.state_dict().items()}
    assert set(tensors) == set(TENSOR_NAMES), sorted(tensors)
    with atomic_dir(final) as tmp:
        (tmp / CFG_FILE).write_text(json.dumps(sparsify_cfg(sae), indent=2) + "\n")
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    return final


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> TopKSAE:
    """Load a TopK SAE folder written by :func:`save_sae` or by sparsify (float32)."""
    folder = Path(path)
    cfg_file = folder / CFG_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"{cfg_file} not found: pass a folder holding cfg.json and sae.safetensors "
            "(for a sparsify run, the hookpoint folder such as <run>/layers.15)"
        )
    cfg = json.loads(cfg_file.read_text())
    _check_supported(cfg, folder)
    d_in = int(cfg["d_in"])
    num_latents = int(cfg.get("num_latents") or 0) or d_in * int(cfg["expansion_factor"])
    tensors = load_file(str(folder / WEIGHTS_FILE), device=str(device))
    sae = TopKSAE(d_in, num_latents, int(cfg["k"]), device=device)
    sae.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    return sae


def _check_supported(cfg: dict[str, Any], folder: Path) -> None:
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise ValueError(f"{folder}: activation={activation!r}; only 'topk' SAEs load here")
    for flag in ("skip_connection", "transcode", "signed"):
        if cfg.get(flag):
            raise ValueError(f"{folder}: {flag}=true is not supported (TopK SAEs only)")
    if not cfg.get("normalize_decoder", True):
        log.warning("%s: normalize_decoder=false; decoder rows are used as stored", folder)
