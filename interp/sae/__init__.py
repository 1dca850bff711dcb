"""Sparse dictionaries: architectures, encode/decode, save/load (sparsify layout).

Every architecture is a :class:`SparseCoder` (``interp.sae.base``): TopK, BatchTopK,
JumpReLU, ReLU and Gated, each optionally a transcoder, plus neurons (built, not trained).
Each is described by an :class:`ArchitectureSpec` (``interp.sae.spec``: its class, its
config dataclass, its sparsity tag, its export names) held by ``interp.sae.registry``.

Adding an architecture: write its SparseCoder subclass (``Config`` = its hyperparameter
dataclass; implement ``_encode_flat`` and ``_train_forward``) and its spec, then add the
spec to ``registry.BUILTIN`` (its fields become ``sae.<field>`` keys) or call
:func:`register_architecture` at run time (its hyperparameters keep their defaults).
Built-ins keep spec and config in ``interp.sae.specs.<name>`` because ``interp.config``
imports them without torch. ``tests/unit/test_sae_plugin.py`` is a complete example.

Dictionaries others trained (sparsify, SAELens, Gemma Scope; folders or hub ids):
:func:`inspect_pretrained` / :func:`load_pretrained` (``interp.sae.pretrained``).

Names are imported lazily, so importing the package loads nothing beyond torch.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

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
    "ArchitectureSpec": "interp.sae.spec",
    "architectures": "interp.sae.registry",
    "get_architecture": "interp.sae.registry",
    "register_architecture": "interp.sae.registry",
    "architecture_class": "interp.sae.build",
    "build_sae": "interp.sae.build",
    "load_sae": "interp.sae.io",
    "save_sae": "interp.sae.io",
    "PretrainedInfo": "interp.sae.pretrained",
    "inspect_pretrained": "interp.sae.pretrained",
    "load_pretrained": "interp.sae.pretrained",
}

__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
