"""SAELens checkpoints: load them as our dictionaries and export ours to them.

SAELens (6.x; 5.x configs translated) writes ``cfg.json`` + ``sae_weights.safetensors``
(``W_enc`` [D, M], ``b_enc`` [M], ``W_dec`` [M, E], ``b_dec`` [E]; jumprelu ``threshold``
[M]; gated ``b_gate``, ``b_mag``, ``r_mag`` [M] and no ``b_enc``). Which architecture
maps to which SAELens name is each spec's (``ArchitectureSpec.saelens``); the folds of
SAELens' switches into our weights are described in :mod:`interp.sae.formats`.

Shapes: D = ``d_in``, E = ``d_out`` (== D unless a transcoder), M = latents.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from interp.runs import atomic_dir
from interp.sae.base import SparseCoder
from interp.sae.build import architecture_class
from interp.sae.registry import architectures, spec_of

log = logging.getLogger(__name__)

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"
"""Config-format version we write as ``metadata.sae_lens_version``: SAELens reads a file
without one (or older than 6.0) through its pre-6.0 translation."""

# SAELens input normalisations that are per-token functions at inference: not expressible.
_RUNTIME_NORMS = ("constant_norm_rescale", "layer_norm", "covariance_whitening")


def _to_saelens(transcoder: bool = False) -> dict[str, str]:
    """Our architecture -> SAELens' name of its inference (or transcoder) form, from the
    registered specs (``ArchitectureSpec.saelens`` / ``saelens_transcoder``)."""
    specs = architectures().values()
    names = {s.name: s.saelens_transcoder if transcoder else s.saelens for s in specs}
    return {ours: theirs for ours, theirs in names.items() if theirs is not None}


def _from_saelens() -> dict[str, str]:
    """SAELens inference architecture -> ours; aliases too (a BatchTopK *training*
    checkpoint, whose inference save is jumprelu already, loads as that JumpReLU)."""
    table = {theirs: ours for ours, theirs in _to_saelens().items()}
    for spec in architectures().values():
        table.update({alias: spec.name for alias in spec.saelens_aliases})
    return table


def _transcoders() -> dict[str, str]:
    """SAELens transcoders (input at one hook, output at another; x never centred by b_dec)
    -> ours."""
    return {theirs: ours for ours, theirs in _to_saelens(transcoder=True).items()}


# ---------------------------------------------------------------------------- SAELens
def read_saelens_cfg(path: str | Path) -> dict[str, Any]:
    """The SAELens cfg.json of folder ``path``, pre-6.0 keys translated to 6.x ones."""
    file = Path(path) / SAELENS_CFG
    if not file.is_file():
        raise FileNotFoundError(
            f"{file} not found: pass a SAELens SAE folder (cfg.json + {SAELENS_WEIGHTS})"
        )
    cfg = json.loads(file.read_text())
    version = cfg.get("sae_lens_version") or cfg.get("metadata", {}).get("sae_lens_version")
    if not version or int(str(version).split(".")[0]) < 6:
        cfg = _translate_pre6(cfg)
    return cfg


def _translate_pre6(cfg: dict[str, Any]) -> dict[str, Any]:
    """SAELens < 6.0 config -> 6.x keys (what its ``handle_pre_6_0_config`` does)."""
    new = dict(cfg)
    if "hook_point" in new:
        new.setdefault("hook_name", new.pop("hook_point"))
    fn = new.get("activation_fn_str", new.get("activation_fn", "relu"))
    kwargs = new.get("activation_fn_kwargs") or {}
    if "architecture" not in new:
        new["architecture"] = "topk" if fn == "topk" and kwargs.get("k") else "standard"
    if new["architecture"] == "topk" and kwargs.get("k") is not None:
        new["k"] = kwargs["k"]
    norm = new.get("normalize_activations")
    if isinstance(norm, bool) or norm is None:
        new["normalize_activations"] = "expected_average_only_in" if norm else "none"
    new.setdefault("apply_b_dec_to_input", True)
    meta_keys = ("model_name", "hook_name", "hook_layer", "context_size", "prepend_bos")
    new.setdefault("metadata", {k: new[k] for k in meta_keys if k in new})
    return new


def load_saelens(path: str | Path, *, device: str | torch.device = "cpu") -> SparseCoder:
    """Load a SAELens SAE folder (``SAE.save_model`` / ``save_inference_model``) as our
    dictionary: topk, jumprelu, standard (-> relu), gated, BatchTopK (its inference save
    is jumprelu; a training checkpoint loads as that same jumprelu), and the ReLU/JumpReLU
    transcoders (-> relu/jumprelu with ``transcode=True``). The result gives SAELens's
    latent activations and reconstructions on the same inputs (up to float32 rounding);
    see the module docstring for the folds. Weights of any dtype load as float32."""
    folder = Path(path)
    cfg = read_saelens_cfg(folder)
    ours_arch, transcode = saelens_architecture(cfg, folder)
    norm = cfg.get("normalize_activations", "none")
    if norm == "expected_average_only_in":
        log.warning(
            "%s: normalize_activations=expected_average_only_in: SAELens applies no scaling "
            "at inference either, so inputs must be scaled as in training (fold the factor "
            "with SAELens' fold_activation_norm_scaling_factor before exporting)",
            folder,
        )
    if cfg.get("reshape_activations", "none") == "hook_z":
        log.info("%s: hook_z SAE: flatten [..., heads, d_head] to [..., D] before encode", folder)
    tensors = {k: v.to(torch.float32) for k, v in load_file(str(folder / SAELENS_WEIGHTS)).items()}
    ours = _saelens_to_ours(ours_arch, cfg, tensors, folder, transcode=transcode)
    hyper = {name: _plain(cfg[name]) for name in spec_of(ours_arch).saelens_hyper}
    return build_from_tensors(ours_arch, int(cfg["d_in"]), ours, hyper, device, transcode=transcode)


def saelens_architecture(cfg: dict[str, Any], folder: Path) -> tuple[str, bool]:
    """(our architecture, transcoder?) of a SAELens cfg (from :func:`read_saelens_cfg`);
    refuses what we cannot load: unknown architectures, per-token input normalisations."""
    arch = cfg.get("architecture", "standard")
    ours_arch = _from_saelens().get(arch) or _transcoders().get(arch)
    if ours_arch is None:
        raise ValueError(
            f"{folder}: SAELens architecture {arch!r} is not supported: use one of "
            f"{sorted([*_from_saelens(), *_transcoders()])}"
        )
    norm = cfg.get("normalize_activations", "none")
    if norm in _RUNTIME_NORMS:
        raise ValueError(
            f"{folder}: normalize_activations={norm!r} normalises every token at run time, "
            "which our dictionaries cannot express; fold it into the weights in SAELens first"
        )
    return ours_arch, arch in _transcoders()


def _plain(value: Any) -> Any:
    """A JSON number that is a whole float (k = 32.0) as an int."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _saelens_to_ours(
    arch: str, cfg: dict[str, Any], t: dict[str, torch.Tensor], folder: Path, *, transcode: bool
) -> dict[str, torch.Tensor]:
    """SAELens tensors -> ours (encoder.weight [M, D] ...), the folds applied."""
    W_enc_DM, W_dec_MD, b_dec_D = t["W_enc"], t["W_dec"], t["b_dec"]
    bias_M = t["b_gate"] if arch == "gated" else t["b_enc"]
    d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    d_out = int(cfg.get("d_out", d_in))
    if W_enc_DM.shape != (d_in, d_sae) or W_dec_MD.shape != (d_sae, d_out):
        raise ValueError(
            f"{folder}: W_enc {tuple(W_enc_DM.shape)} / W_dec {tuple(W_dec_MD.shape)} do not "
            f"match cfg d_in={d_in}, d_sae={d_sae}, d_out={d_out} (expected [{d_in}, {d_sae}] "
            f"/ [{d_sae}, {d_out}])"
        )
    out: dict[str, torch.Tensor] = {"W_dec": W_dec_MD, "b_dec": b_dec_D}
    if arch == "gated":
        out["r_mag"] = t["r_mag"]
        out["b_mag"] = t["b_mag"]
    if not transcode and not cfg.get("apply_b_dec_to_input", True):
        bias_M = bias_M + b_dec_D @ W_enc_DM
        if arch == "gated":
            out["b_mag"] = out["b_mag"] + b_dec_D @ (W_enc_DM * out["r_mag"].exp())
    if arch == "jumprelu":
        # BatchTopK keeps one global threshold (float64 buffer) in its training checkpoint.
        theta = t["threshold"] if "threshold" in t else t["topk_threshold"].expand(d_sae)
        # SAELens computes relu(pre) * (pre > threshold): a negative threshold acts as 0.
        out["threshold"] = theta.clamp_min(0.0).contiguous()
    if cfg.get("rescale_acts_by_decoder_norm", False):  # TopK and BatchTopK configs only
        norm_M = W_dec_MD.norm(dim=1).clamp_min(1e-8)  # SAELens' own clamp
        W_enc_DM, bias_M = W_enc_DM * norm_M, bias_M * norm_M
        out["W_dec"] = W_dec_MD / norm_M[:, None]
    out["encoder.weight"] = W_enc_DM.T.contiguous()
    out["encoder.bias"] = bias_M
    return out


def build_from_tensors(
    arch: str,
    d_in: int,
    tensors: dict[str, torch.Tensor],
    hyper: dict[str, Any],
    device: str | torch.device,
    *,
    transcode: bool = False,
) -> SparseCoder:
    """Our ``arch`` dictionary holding ``tensors`` (our names), decoder constraint on only
    when the stored rows are unit-norm (so further training keeps what was loaded)."""
    num_latents, d_out = tensors["W_dec"].shape
    unit = bool(torch.allclose(tensors["W_dec"].norm(dim=1), torch.ones(num_latents), atol=1e-4))
    cls = architecture_class(arch)
    sae = cls(
        d_in,
        num_latents,
        d_out=d_out,
        transcode=transcode,
        normalize_decoder=unit,
        device=device,
        **hyper,
    )
    mismatched = set(sae.state_dict()) ^ set(tensors)
    if mismatched:
        raise ValueError(f"tensors {sorted(mismatched)} do not match our {arch} dictionary")
    sae.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=True)
    return sae


def export_saelens(
    sae: SparseCoder,
    path: str | Path,
    *,
    hook_name: str,
    model_name: str,
    context_size: int | None = None,
    hook_layer: int | None = None,
) -> Path:
    """Write ``sae`` as a SAELens inference SAE in folder ``path`` (atomically), which
    SAELens' ``SAE.load_from_disk`` loads to the same outputs on the same inputs.

    ``hook_name`` is the TransformerLens hook SAELens will attach it to (e.g.
    ``blocks.6.hook_resid_post``) and ``model_name`` the TransformerLens model name.
    BatchTopK is exported as its inference JumpReLU (as SAELens itself saves it); ReLU
    and JumpReLU transcoders as SAELens' "transcoder" / "jumprelu_transcoder".
    """
    inf = sae.to_inference()
    if inf.architecture not in _to_saelens():
        raise ValueError(
            f"cannot export a {inf.architecture!r} dictionary: SAELens has "
            f"{sorted(_to_saelens())} (batchtopk exports via its jumprelu form)"
        )
    if inf.transcode and inf.architecture not in _to_saelens(transcoder=True):
        raise ValueError(
            f"cannot export a {inf.architecture} transcoder: SAELens' transcoders are "
            f"{sorted(_to_saelens(transcoder=True))} only"
        )
    if Path(path).exists():
        raise FileExistsError(f"{path} exists: remove it or export to another folder")
    cfg = saelens_cfg(inf, hook_name=hook_name, model_name=model_name, context_size=context_size)
    if hook_layer is not None:
        cfg["metadata"]["hook_layer"] = hook_layer
    tensors = _ours_to_saelens(inf)
    with atomic_dir(Path(path)) as tmp:
        (tmp / SAELENS_CFG).write_text(json.dumps(cfg, indent=2) + "\n")
        save_file(tensors, str(tmp / SAELENS_WEIGHTS))
    log.info("exported %s dictionary to SAELens format at %s", inf.architecture, path)
    return Path(path)


def saelens_cfg(
    sae: SparseCoder, *, hook_name: str, model_name: str, context_size: int | None = None
) -> dict[str, Any]:
    """The SAELens 6.x cfg.json of our (inference) dictionary ``sae``."""
    arch = _to_saelens(transcoder=sae.transcode)[sae.architecture]
    cfg: dict[str, Any] = {
        "architecture": arch,
        "d_in": sae.d_in,
        "d_sae": sae.num_latents,
        "dtype": "float32",
        "device": "cpu",
        # our encoders see x - b_dec, except a transcoder's (b_dec is in the output space)
        "apply_b_dec_to_input": not sae.transcode,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "model_name": model_name,
            "hook_name": hook_name,
            "context_size": context_size,
            "exported_by": "interp",
        },
    }
    spec = spec_of(sae.architecture)
    cfg.update({name: getattr(sae, name) for name in spec.saelens_hyper})
    cfg.update(spec.saelens_cfg)
    if sae.transcode:
        cfg["d_out"] = sae.d_out
    return cfg


def _ours_to_saelens(sae: SparseCoder) -> dict[str, torch.Tensor]:
    state = {k: v.detach().to("cpu", torch.float32) for k, v in sae.state_dict().items()}
    out = {
        "W_enc": state.pop("encoder.weight").T.contiguous(),
        "W_dec": state.pop("W_dec").contiguous(),
        "b_dec": state.pop("b_dec"),
    }
    spec = spec_of(sae.architecture)
    out[spec.saelens_bias] = state.pop("encoder.bias")
    for name in spec.saelens_tensors:  # [M] each (a scalar threshold is expanded)
        out[name] = state.pop(name).expand(sae.num_latents).contiguous()
    assert not state, f"unexported tensors {sorted(state)}"
    return out
