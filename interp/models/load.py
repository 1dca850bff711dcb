"""Subject-model loading and hookpoints.

A hookpoint ``layers.N`` is the residual stream after decoder layer N (sparsify's
naming, relative to the model's base). The subject model keeps only layers 0..N: the
rest would be computed and thrown away (sparsify and delphi both run all layers).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from interp.config import ModelConfig
from interp.models.provision import resolve_model

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def load_causal_lm(name: str, dtype: str, device: str) -> nn.Module:
    """A full causal LM in eval mode (for LLM backends and spliced evaluation)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(resolve_model(name), dtype=getattr(torch, dtype))
    return model.to(resolve_device(device)).eval()


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama/Qwen/Gemma, GPT-2, GPT-NeoX)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


class SubjectModel:
    """The subject LM cut after one layer; ``hidden`` returns that layer's output."""

    def __init__(self, model: nn.Module, layer: int) -> None:
        layers = decoder_layers(model)
        if not 0 <= layer < len(layers):
            raise ValueError(f"layer={layer} but the model has layers 0..{len(layers) - 1}")
        del layers[layer + 1 :]  # stop at the deepest hookpoint
        self.model = model
        self.layer = layer
        self.device = next(model.parameters()).device
        self.d_in = int(model.config.hidden_size)
        self._captured: torch.Tensor | None = None
        layers[layer].register_forward_hook(self._capture)

    def _capture(self, _module: nn.Module, _inputs: Any, output: Any) -> None:
        self._captured = output[0] if isinstance(output, tuple) else output

    @torch.inference_mode()
    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Residual stream after ``layer``: [B, T] token ids -> [B, T, D] float32."""
        self._captured = None
        base = getattr(self.model, self.model.base_model_prefix, self.model)
        base(input_ids=input_ids.to(self.device), use_cache=False)
        assert self._captured is not None, "hook did not fire"
        return self._captured.float()


def load_subject(cfg: ModelConfig, layer: int) -> SubjectModel:
    model = load_causal_lm(cfg.name, cfg.dtype, cfg.device)
    log.info("subject model %s (%s) cut after layer %d", cfg.name, cfg.dtype, layer)
    return SubjectModel(model, layer)
