"""SAEBench's custom-SAE interface over our dictionaries (decoder norms folded first).

Shapes: D = ``d_in``, M = latents.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from interp.sae.base import SparseCoder
from interp.sae.registry import spec_of


# ---------------------------------------------------------------------------- SAEBench
@dataclass
class SAEBenchConfig:
    """The fields SAEBench's ``CustomSAEConfig`` carries (its evals read these)."""

    model_name: str
    d_in: int
    d_sae: int
    hook_layer: int
    hook_name: str
    context_size: int | None = None
    hook_head_index: int | None = None
    architecture: str = ""
    apply_b_dec_to_input: bool = True
    finetuning_scaling_factor: bool = False
    activation_fn_str: str = ""
    prepend_bos: bool = True
    normalize_activations: str = "none"
    dtype: str = "float32"
    device: str = "cpu"
    dataset_path: str = ""
    dataset_trust_remote_code: bool = True
    seqpos_slice: tuple = (None,)
    training_tokens: int = -100_000
    sae_lens_training_version: str | None = None
    neuronpedia_id: str | None = None
    # Class attributes in SAEBench too (not fields); its core eval reads them.
    activation_fn_kwargs: ClassVar[dict[str, Any]] = {}
    model_from_pretrained_kwargs: ClassVar[dict[str, Any]] = {}

    @property
    def architecture_str(self) -> str:
        """SAEBench's core eval reads the gated bias as ``b_mag`` when this is "gated"."""
        return self.architecture

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SAEBenchSAE(nn.Module):
    """SAEBench's custom-SAE interface over one of our dictionaries.

    ``W_enc`` [D, M], ``W_dec`` [M, D] (unit-norm rows, as ``check_decoder_norms`` wants),
    ``b_enc`` [M], ``b_dec`` [D]; ``encode(x [..., D]) -> [..., M]`` dense activations,
    ``decode(f [..., M]) -> [..., D]``, ``forward(x) = decode(encode(x))``. The tensors are
    views of the wrapped dictionary's (after folding decoder norms, see :func:`to_saebench`).
    """

    def __init__(self, sae: SparseCoder, cfg: SAEBenchConfig) -> None:
        super().__init__()
        self.sae = sae
        self.cfg = cfg
        self.device: torch.device = sae.W_dec.device
        self.dtype: torch.dtype = sae.W_dec.dtype

    def to(self, *args: Any, **kwargs: Any) -> SAEBenchSAE:
        """Move/cast like ``nn.Module.to``, keeping ``device``, ``dtype`` and the cfg's
        strings in step (SAEBench's evals call ``sae.to(device=..., dtype=...)``)."""
        super().to(*args, **kwargs)
        self.device, self.dtype = self.sae.W_dec.device, self.sae.W_dec.dtype
        self.cfg.device = str(self.device)
        self.cfg.dtype = str(self.dtype).removeprefix("torch.")
        return self

    @property
    def W_enc(self) -> torch.Tensor:
        """[D, M] encoder (SAELens/SAEBench layout)."""
        return self.sae.encoder.weight.T

    @property
    def W_dec(self) -> torch.Tensor:
        """[M, D] decoder rows."""
        return self.sae.W_dec

    @property
    def b_enc(self) -> torch.Tensor:
        """[M] encoder bias (Gated: the gate bias)."""
        return self.sae.encoder.bias

    @property
    def b_dec(self) -> torch.Tensor:
        """[D] decoder bias."""
        return self.sae.b_dec

    @property
    def b_mag(self) -> torch.Tensor:
        """[M] magnitude-path bias (Gated only; SAEBench reports it as the encoder bias)."""
        if not hasattr(self.sae, "b_mag"):
            raise AttributeError("b_mag: only Gated dictionaries have a magnitude bias")
        return self.sae.b_mag  # type: ignore[return-value]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] activations -> [..., M] dense latent activations."""
        acts, idx = self.sae.encode(x.to(self.dtype))
        dense = acts.new_zeros(*acts.shape[:-1], self.sae.num_latents)
        return dense.scatter(-1, idx, acts)

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """[..., M] dense latent activations -> [..., D] reconstruction."""
        return feature_acts.to(self.dtype) @ self.sae.W_dec + self.sae.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    @torch.no_grad()
    def check_decoder_norms(self) -> bool:
        """True when every decoder row has unit norm (SAEBench's check and tolerance)."""
        norms = self.W_dec.norm(dim=1)
        tol = 1e-2 if self.W_dec.dtype in (torch.bfloat16, torch.float16) else 1e-5
        return bool(torch.allclose(norms, torch.ones_like(norms), atol=tol))


@torch.no_grad()
def fold_decoder_norms(sae: SparseCoder) -> SparseCoder:
    """Scale every decoder row to unit norm and move its norm into the encoder, in place,
    so reconstructions are unchanged (latent activations scale by the norms).

    Exact for relu, jumprelu (threshold scaled too) and gated (gate sign unchanged); for
    TopK it would change which latents are selected unless the rows are unit-norm already,
    so that case raises.
    """
    norm_M = sae.W_dec.norm(dim=1)
    if torch.allclose(norm_M, torch.ones_like(norm_M), atol=1e-6):
        return sae
    spec = spec_of(sae.architecture)
    if spec.selects_by_rank:
        raise ValueError(
            f"{sae.architecture} dictionary has decoder rows off unit norm (max |norm-1| = "
            f"{(norm_M - 1).abs().max():.3g}): folding would change its top-k selection"
        )
    norm_M = norm_M.clamp_min(1e-8)
    sae.encoder.weight.mul_(norm_M[:, None])
    sae.encoder.bias.mul_(norm_M)
    sae.W_dec.div_(norm_M[:, None])
    for name in spec.norm_scaled:  # jumprelu threshold, gated b_mag
        getattr(sae, name).mul_(norm_M)
    return sae


def to_saebench(
    sae: SparseCoder,
    *,
    model_name: str,
    hook_layer: int,
    hook_name: str | None = None,
    context_size: int | None = None,
) -> SAEBenchSAE:
    """``sae`` (its inference form, decoder norms folded into a copy) behind SAEBench's
    custom-SAE interface. ``hook_name`` defaults to SAEBench's
    ``blocks.{hook_layer}.hook_resid_post``."""
    inf = sae.to_inference()
    inf = fold_decoder_norms(_copy(inf)) if not _unit_rows(inf) else inf
    cfg = SAEBenchConfig(
        model_name=model_name,
        d_in=inf.d_in,
        d_sae=inf.num_latents,
        hook_layer=hook_layer,
        hook_name=hook_name or f"blocks.{hook_layer}.hook_resid_post",
        context_size=context_size,
        architecture=inf.architecture,
        apply_b_dec_to_input=not inf.transcode,
        activation_fn_str=inf.architecture,
        dtype=str(inf.W_dec.dtype).removeprefix("torch."),
        device=str(inf.W_dec.device),
    )
    return SAEBenchSAE(inf, cfg)


def _unit_rows(sae: SparseCoder) -> bool:
    norm_M = sae.W_dec.detach().norm(dim=1)
    return bool(torch.allclose(norm_M, torch.ones_like(norm_M), atol=1e-6))


def _copy(sae: SparseCoder) -> SparseCoder:
    return copy.deepcopy(sae)
