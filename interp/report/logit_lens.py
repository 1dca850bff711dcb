"""Promoted / suppressed tokens of a decoder direction (the "logit lens" of a latent):
see :mod:`interp.report.dashboard` for the formula."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interp.report.sweepdata import Point


def decoder_logits(
    point: Point, latents: Sequence[int], k: int, model_cache: dict
) -> dict[int, Any]:
    """Latent -> (promoted [(token, logit)], suppressed [...]) from its decoder direction."""
    import torch

    from interp.sae import load_sae

    if not latents:
        return {}
    sae = load_sae(point.files.sae_dir)
    idx = torch.as_tensor(list(latents))
    with torch.no_grad():
        d_LD = sae.W_dec.detach()[idx].float()
        W_U, gain_H, center, to_residual = _unembedding(point, d_LD.shape[1], model_cache)
        d_LH = d_LD @ to_residual.T if to_residual is not None else d_LD
        if center:
            d_LH = d_LH - d_LH.mean(dim=1, keepdim=True)
        logits_LV = (d_LH * gain_H) @ W_U.T
        top = torch.topk(logits_LV, k, dim=1)
        bottom = torch.topk(-logits_LV, k, dim=1)
    tok = model_cache[point.info.model_name]["tokenizer"]
    out = {}
    for row, latent in enumerate(latents):
        out[latent] = (
            [(tok.decode([int(t)]), float(v)) for t, v in zip(top.indices[row], top.values[row])],
            [(tok.decode([int(t)]), -float(v)) for t, v in zip(bottom.indices[row], bottom.values[row])],
        )  # fmt: skip
    return out


def _unembedding(point: Point, width: int, cache: dict) -> tuple[Any, Any, bool, Any]:
    """(W_U [V, H], gain [H], centre?, map [H, width] or None) of the point's subject model."""
    import torch

    from interp.models.load import load_causal_lm, load_tokenizer

    name = point.info.model_name
    if name not in cache:
        model = load_causal_lm(name, "float32", "cpu")
        norm = _final_norm(model)
        W_U = model.get_output_embeddings().weight.detach()
        hidden = W_U.shape[1]
        gain = getattr(norm, "weight", None)
        cache[name] = {
            "model": model,
            "W_U": W_U,
            "gain": gain.detach() if gain is not None else torch.ones(hidden),
            "center": norm is not None and "rms" not in type(norm).__name__.lower(),
            "tokenizer": load_tokenizer(name),
        }
    c = cache[name]
    to_residual = None
    if width != c["W_U"].shape[1]:
        to_residual = _input_projection(c["model"], point.hookpoint, width, c["W_U"].shape[1])
    return c["W_U"], c["gain"], c["center"], to_residual


def _final_norm(model: Any) -> Any:
    for path in (
        "model.norm",
        "transformer.ln_f",
        "gpt_neox.final_layer_norm",
        "model.decoder.final_layer_norm",
    ):
        obj = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return obj
    return None


def _input_projection(model: Any, hookpoint: str, width: int, hidden: int) -> Any:
    """Weight [hidden, width] of the Linear whose input is the hookpoint, if it writes the
    residual stream (e.g. ``layers.3.mlp.down_proj:input``); else a clear error."""
    import torch

    module = None
    if hookpoint.endswith(":input"):
        base = model.base_model if hasattr(model, "base_model") else model
        try:
            module = base.get_submodule(hookpoint.removesuffix(":input"))
        except AttributeError:
            module = None
    if isinstance(module, torch.nn.Linear) and module.weight.shape == (hidden, width):
        return module.weight.detach().float()
    raise ValueError(
        f"decoder width {width} is not the residual width {hidden} and hookpoint "
        f"{hookpoint!r} is not the input of a Linear into the residual stream: no token lists"
    )
