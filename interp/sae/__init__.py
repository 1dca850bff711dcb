"""Sparse dictionaries: architectures, encode/decode, save/load (sparsify layout).

Every architecture is a :class:`SparseCoder` (``interp.sae.base``): TopK, BatchTopK,
JumpReLU, ReLU and Gated, each optionally a transcoder. Names are imported lazily, so
importing the package loads nothing beyond torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "EncoderOutput": "interp.sae.base",
    "ForwardOutput": "interp.sae.base",
    "SparseCoder": "interp.sae.base",
    "TrainOutput": "interp.sae.base",
    "TopKSAE": "interp.sae.topk",
    "BatchTopKSAE": "interp.sae.batchtopk",
    "JumpReLUSAE": "interp.sae.jumprelu",
    "ReLUSAE": "interp.sae.relu",
    "GatedSAE": "interp.sae.gated",
    "ARCHITECTURES": "interp.sae.build",
    "architecture_class": "interp.sae.build",
    "build_sae": "interp.sae.build",
    "load_sae": "interp.sae.io",
    "save_sae": "interp.sae.io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interp.sae' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
