"""Subject models and offline provisioning.

Names resolve lazily (PEP 562) so that planning, which needs only ``hidden_size``,
does not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SubjectModel": "interp.models.load",
    "decoder_layers": "interp.models.load",
    "load_causal_lm": "interp.models.load",
    "load_subject": "interp.models.load",
    "load_tokenizer": "interp.models.load",
    "resolve_device": "interp.models.load",
    "hidden_size": "interp.models.provision",
    "hookpoint_width": "interp.models.provision",
    "ModelNotFoundError": "interp.models.provision",
    "cache_dir": "interp.models.provision",
    "resolve_model": "interp.models.provision",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interp.models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
