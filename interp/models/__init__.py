"""Subject models and offline provisioning."""

from interp.models.load import (
    SubjectModel,
    decoder_layers,
    hidden_size,
    load_causal_lm,
    load_subject,
    load_tokenizer,
    resolve_device,
)
from interp.models.provision import ModelNotFoundError, cache_dir, resolve_model

__all__ = [
    "ModelNotFoundError",
    "SubjectModel",
    "cache_dir",
    "decoder_layers",
    "hidden_size",
    "load_causal_lm",
    "load_subject",
    "load_tokenizer",
    "resolve_device",
    "resolve_model",
]
