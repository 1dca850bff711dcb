"""Fields several architectures declare (same name, type, default and doc, so
``SAEConfig`` merges them into one key), and their checks."""

from __future__ import annotations

from typing import Any

from interp.sae.spec import shared_field
from interp.typed import positive


def k_field() -> Any:
    return shared_field(32, "topk: active latents per token; batchtopk: mean active per token.")


def auxk_field() -> Any:
    return shared_field(
        0.0,
        "topk/batchtopk: weight of the AuxK loss on dead latents (0 = off, sparsify's "
        "default; OpenAI used 1/32).",
    )


def l1_field() -> Any:
    return shared_field(
        1.0,
        "relu/gated: weight of sum_i f_i * ||W_dec_i||, averaged over tokens and "
        "divided by the RMS norm of the centred target (scale-free like FVU).",
    )


def warmup_field() -> Any:
    return shared_field(
        0, "jumprelu/relu/gated: steps of linear warmup of the sparsity coefficient."
    )


def check_positive(obj: Any, *names: str) -> None:
    """``sae.<name>=<value> must be > 0`` for the first non-positive field."""
    positive(obj, *names, section="sae")


def check_non_negative(obj: Any, *names: str) -> None:
    """``sae.<name>=<value> must be >= 0`` for the first negative field."""
    for name in names:
        if getattr(obj, name) < 0:
            raise ValueError(f"sae.{name}={getattr(obj, name)} must be >= 0")


def check_warmup(steps: int) -> None:
    if steps < 0:
        raise ValueError("sae.dead_tokens and sae.sparsity_warmup_steps must be >= 0")


def check_k_below_width(cfg: Any) -> None:
    """TopK family: k below an explicit num_latents (the width from d_in is checked when
    the dictionary is built)."""
    if cfg.num_latents and cfg.k >= cfg.num_latents:
        raise ValueError(
            f"sae.k={cfg.k} must be smaller than sae.num_latents={cfg.num_latents}: "
            "lower k or widen the dictionary"
        )


def k_tag(cfg: Any) -> tuple[str, frozenset[str]]:
    return f"k{cfg.k}", frozenset({"k"})


def l1_tag(cfg: Any) -> tuple[str, frozenset[str]]:
    return f"l1c{cfg.l1_coefficient:g}", frozenset({"l1_coefficient"})


def auxk_flag_format(value: float) -> str:
    return f"auxk{value:g}"
