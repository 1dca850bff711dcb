"""Subject models and offline provisioning.

Names resolve lazily (PEP 562) so that planning, which needs only ``hidden_size``,
does not pay for importing torch and transformers.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

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


__getattr__ = lazy_getattr(__name__, _EXPORTS)
