"""Hookpoint names in other projects' checkpoints -> ours, in one table.

Ours (:mod:`interp.models.load`) name a module relative to the model's base: ``layers.N``
is the residual stream after decoder layer N, ``layers.N.mlp`` the MLP's output, and a
``:input`` suffix the module's first input (``layers.N.mlp:input``).

- **sparsify** names are already ours (``layers.6``, ``layers.6.mlp``); a leading
  ``model.`` (the base prefix) is dropped. A sparsify *transcoder* saved under
  ``layers.N.mlp`` reads that module's input and predicts its output, so its input
  hookpoint is ``layers.N.mlp:input`` and its target ``layers.N.mlp``.
- **SAELens / TransformerLens** hooks map by :data:`TRANSFORMER_LENS` below.
  ``blocks.0.hook_resid_pre`` (the embeddings as the first block sees them) maps to
  ``layers.0:input``, the first decoder layer's input, which HF models feed with the
  scaled embeddings exactly as TransformerLens does. Gemma 2/3 put a norm after the MLP
  and after attention, and TransformerLens' ``hook_mlp_out`` / ``hook_attn_out`` come after
  it: for those models they map to the norms' outputs.
- **Gemma Scope** folders are ``layer_<L>/width_<W>/average_l0_<N>/params.npz``; the site
  comes from the release name (``gemma-scope-2b-pt-res`` / ``-mlp`` / ``-att`` /
  ``-transcoders``) in the source path.

A name none of these covers raises :class:`UnmappableHookpoint`, naming it and the
``sae.hookpoint`` override.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Rule = tuple[re.Pattern[str], Callable[[int, bool], str]]


class UnmappableHookpoint(ValueError):
    """A checkpoint's hookpoint name with no counterpart in ours."""


def _resid_pre(n: int, _post_norm: bool) -> str:
    return f"layers.{n - 1}" if n > 0 else "layers.0:input"


# TransformerLens hook -> ours; the bool says the model has post-sublayer norms (Gemma 2/3).
TRANSFORMER_LENS: list[Rule] = [
    (re.compile(r"blocks\.(\d+)\.hook_resid_post"), lambda n, _: f"layers.{n}"),
    (re.compile(r"blocks\.(\d+)\.hook_resid_pre"), _resid_pre),
    (
        re.compile(r"blocks\.(\d+)\.hook_mlp_out"),
        lambda n, post: f"layers.{n}.post_feedforward_layernorm" if post else f"layers.{n}.mlp",
    ),
    (re.compile(r"blocks\.(\d+)\.ln2\.hook_normalized"), lambda n, _: f"layers.{n}.mlp:input"),
    (
        re.compile(r"blocks\.(\d+)\.hook_attn_out"),
        lambda n, post: f"layers.{n}.post_attention_layernorm" if post else f"layers.{n}.self_attn",
    ),
    (re.compile(r"blocks\.(\d+)\.attn\.hook_z"), lambda n, _: f"layers.{n}.self_attn.o_proj:input"),
    (re.compile(r"blocks\.(\d+)\.mlp\.hook_post"), lambda n, _: f"layers.{n}.mlp.down_proj:input"),
]
# Gemma Scope release site -> (input hookpoint, transcoder target or "") for layer L.
GEMMA_SCOPE_SITES: dict[str, tuple[str, str]] = {
    "res": ("layers.{L}", ""),
    "mlp": ("layers.{L}.post_feedforward_layernorm", ""),
    "att": ("layers.{L}.self_attn.o_proj:input", ""),
    "transcoders": ("layers.{L}.mlp:input", "layers.{L}.post_feedforward_layernorm"),
}
_OURS = re.compile(r"[A-Za-z_]\w*(\.\w+)*(:input)?")
# sparsify names that are ours as they stand: decoder-layer modules and the embeddings.
_SPARSIFY_OURS = re.compile(r"(layers\.\d+(\.\w+)*|embed_tokens)(:input)?")
_GEMMA_LAYER = re.compile(r"layer_(\d+)")
_GEMMA_SITE = re.compile(r"(?:^|[-_])(res|mlp|att|transcoders)(?:[-_]|$)")
_POST_NORM_MODELS = re.compile(r"gemma-?[23]", re.IGNORECASE)


def is_our_hookpoint(name: str) -> bool:
    """``name`` is syntactically one of our hookpoints (``layers.3.mlp:input``)."""
    return bool(_OURS.fullmatch(name))


def _unmappable(name: str, fmt: str, why: str = "") -> UnmappableHookpoint:
    return UnmappableHookpoint(
        f"{fmt} hookpoint {name!r} has no counterpart in our hookpoint names{why}: pass "
        "sae.hookpoint=<ours> (e.g. sae.hookpoint=layers.6 for the residual stream after "
        "decoder layer 6, layers.6.mlp:input for an MLP's input)"
    )


def map_hookpoint(name: str, fmt: str, *, model_name: str = "") -> str:
    """Our hookpoint for ``name`` as a ``fmt`` checkpoint ("sparsify", "saelens",
    "gemmascope") names it; ``model_name`` (SAELens' metadata) picks the Gemma 2/3 rows.
    Gemma Scope's ``name`` is the params.npz folder path, release name included."""
    if fmt == "sparsify":
        ours = name.removeprefix("model.")
        if not _SPARSIFY_OURS.fullmatch(ours):
            raise _unmappable(name, fmt, " (ours are layers.N[.module] relative to the base)")
        return ours
    if fmt == "saelens":
        post_norm = bool(_POST_NORM_MODELS.search(model_name))
        for pattern, ours_of in TRANSFORMER_LENS:
            if m := pattern.fullmatch(name):
                return ours_of(int(m.group(1)), post_norm)
        raise _unmappable(name, fmt)
    if fmt == "gemmascope":
        return gemma_scope_hookpoints(name)[0]
    raise ValueError(f"unknown format {fmt!r}: use sparsify, saelens or gemmascope")


def gemma_scope_hookpoints(path: str) -> tuple[str, str]:
    """(input hookpoint, transcoder target or "") of a Gemma Scope ``params.npz`` folder
    path such as ``google/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71``."""
    parts = path.replace("\\", "/").split("/")
    layers = [int(m.group(1)) for p in parts if (m := _GEMMA_LAYER.fullmatch(p))]
    sites = [m.group(1) for p in parts if (m := _GEMMA_SITE.search(p))]
    if not layers:
        raise _unmappable(path, "gemmascope", " (no layer_<L> folder in its path)")
    if not sites:
        raise _unmappable(
            path, "gemmascope", " (its path names no release site: -res, -mlp, -att, -transcoders)"
        )
    hook, target = GEMMA_SCOPE_SITES[sites[-1]]
    return hook.format(L=layers[-1]), target.format(L=layers[-1])


def transcoder_hookpoints(
    name: str, fmt: str, *, model_name: str = "", out_name: str = ""
) -> tuple[str, str]:
    """(input hookpoint, target hookpoint) of a transcoder: sparsify's ``layers.N.mlp``
    reads the module's input and predicts its output; SAELens names both hooks
    (``hook_name``, ``hook_name_out``)."""
    if fmt == "sparsify":
        ours = map_hookpoint(name, fmt)
        if ours.endswith(":input"):
            raise _unmappable(name, fmt, " (a transcoder is saved under its output module)")
        return f"{ours}:input", ours
    if fmt == "saelens":
        target = map_hookpoint(out_name, fmt, model_name=model_name) if out_name else ""
        return map_hookpoint(name, fmt, model_name=model_name), target
    return gemma_scope_hookpoints(name)
