"""The subject model's config (``model.*`` keys of the run config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.typed import meta as _meta

Dtype = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class ModelConfig:
    """The subject model whose activations are studied."""

    name: str = field(
        default="smollm2-135m",
        metadata=_meta(
            "Bundled offline name (smollm2-135m, smollm2-135m-instruct, "
            "qwen2.5-coder-1.5b-instruct, tiny-random-llama), a local HF model folder, "
            "or a Hugging Face hub id."
        ),
    )
    dtype: Dtype = field(
        default="bfloat16",
        metadata=_meta("Weights and forward dtype. SAEs always train in float32."),
    )
    device: str = field(
        default="auto",
        metadata=_meta("'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1'."),
    )
