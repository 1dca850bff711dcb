"""Save and load dictionaries in sparsify's on-disk layout, which delphi loads directly.

A saved dictionary is one folder::

    cfg.json          {"activation": "topk", "expansion_factor", "normalize_decoder",
                       "num_latents", "k", "multi_topk", "skip_connection": false,
                       "transcode", "d_in"}
    sae.safetensors   encoder.weight [M, D], encoder.bias [M], W_dec [M, E], b_dec [E]

TopK is written exactly as sparsify writes it (sparsify and delphi load it). The other
architectures keep the folder layout, name themselves in ``"activation"`` ("batchtopk",
"jumprelu", "relu", "gated") and add their hyperparameters to cfg.json and their own
tensors to sae.safetensors (``threshold`` [M] for jumprelu, ``threshold`` [] for
batchtopk, ``r_mag`` [M] and ``b_mag`` [M] for gated). A transcoder whose output width
differs from its input width also writes ``"d_out"``.

We always write the explicit ``num_latents``; sparsify writes 0 for "d_in *
expansion_factor", which :func:`load_sae` also reads.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.runs import atomic_dir
from interp.sae.base import SparseCoder
from interp.sae.build import architecture_class
from interp.sae.registry import spec_of

log = logging.getLogger(__name__)

CFG_FILE = "cfg.json"
WEIGHTS_FILE = "sae.safetensors"
TENSOR_NAMES = ("encoder.weight", "encoder.bias", "W_dec", "b_dec")
# cfg.json keys of sparsify's SparseCoderConfig that are not constructor arguments here.
_SPARSIFY_ONLY = ("activation", "expansion_factor", "skip_connection", "signed")
# Constructor arguments every architecture takes (the others are its Config's fields).
SHAPE_ARGS = ("d_in", "num_latents", "d_out", "transcode", "normalize_decoder", "b_dec_init")


def sparsify_cfg(sae: SparseCoder) -> dict[str, Any]:
    """The cfg.json for ``sae``: sparsify's SparseCoderConfig fields + d_in (exactly
    sparsify's for TopK), plus the architecture's own fields for the others."""
    cfg: dict[str, Any] = {
        "activation": sae.architecture,
        "expansion_factor": max(1, round(sae.num_latents / sae.d_in)),
        "normalize_decoder": sae.normalize_decoder,
        "num_latents": sae.num_latents,
    }
    native = spec_of(sae.architecture).sparsify_native
    if native:
        cfg.update(k=sae.k, multi_topk=sae.multi_topk)  # type: ignore[attr-defined]
    else:
        cfg["multi_topk"] = False
    cfg.update(skip_connection=False, transcode=sae.transcode, d_in=sae.d_in)
    if sae.d_out != sae.d_in:
        cfg["d_out"] = sae.d_out
    if not native:
        extra = sae.config_dict()
        for key in (
            "architecture",
            "d_in",
            "d_out",
            "num_latents",
            "transcode",
            "normalize_decoder",
        ):
            extra.pop(key)
        cfg.update(extra)
    return cfg


def save_sae(sae: SparseCoder, path: str | Path) -> Path:
    """Write ``sae`` to folder ``path`` atomically (built under a temporary name, renamed).

    An existing folder is never replaced (a committed SAE is final): the new copy is
    then discarded with a warning. Returns ``path``.
    """
    final = Path(path)
    if final.exists():
        log.warning("%s already exists: keeping it, not overwriting", final)
    tensors = {name: t.detach().contiguous().cpu() for name, t in sae.state_dict().items()}
    missing = set(TENSOR_NAMES) - set(tensors)
    assert not missing, f"{type(sae).__name__} lacks {sorted(missing)}"
    with atomic_dir(final) as tmp:
        (tmp / CFG_FILE).write_text(json.dumps(sparsify_cfg(sae), indent=2) + "\n")
        save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
    return final


def load_sae(path: str | Path, device: str | torch.device = "cpu") -> SparseCoder:
    """Load a dictionary folder written by :func:`save_sae` or by sparsify (float32)."""
    folder = Path(path)
    cfg_file = folder / CFG_FILE
    if not cfg_file.is_file():
        raise FileNotFoundError(
            f"{cfg_file} not found: pass a folder holding cfg.json and sae.safetensors "
            "(for a sparsify run, the hookpoint folder such as <run>/layers.15)"
        )
    cfg = json.loads(cfg_file.read_text())
    cls = _check_supported(cfg, folder)
    tensors = load_file(str(folder / WEIGHTS_FILE), device=str(device))
    sae = cls(**_constructor_args(cls, cfg), device=device)
    sae.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True)
    return sae


def _constructor_args(cls: type[SparseCoder], cfg: dict[str, Any]) -> dict[str, Any]:
    d_in = int(cfg["d_in"])
    args = dict(cfg)
    args["num_latents"] = int(cfg.get("num_latents") or 0) or d_in * int(cfg["expansion_factor"])
    accepted = set(SHAPE_ARGS) | {f.name for f in dataclasses.fields(cls.Config)}
    unknown = sorted(set(args) - set(accepted) - set(_SPARSIFY_ONLY))
    if unknown:
        log.warning("cfg.json keys %s are not %s arguments: ignored", unknown, cls.__name__)
    return {k: v for k, v in args.items() if k in accepted}


def _check_supported(cfg: dict[str, Any], folder: Path) -> type[SparseCoder]:
    activation = cfg.get("activation", "topk")
    try:
        cls = architecture_class(activation)
    except ValueError as err:
        raise ValueError(f"{folder}: activation={activation!r} cannot be loaded: {err}") from None
    for flag in ("skip_connection", "signed"):
        if cfg.get(flag):
            raise ValueError(f"{folder}: {flag}=true is not supported")
    if not cfg.get("normalize_decoder", True):
        log.warning("%s: normalize_decoder=false; decoder rows are used as stored", folder)
    return cls
