"""Other projects' SAE formats: load EleutherAI sparsify and SAELens checkpoints, export
to SAELens, and wrap a dictionary for SAEBench's custom-SAE evaluations.

Shapes: N tokens, D = ``d_in``, E = ``d_out`` (== D unless a transcoder), M = latents.
Our layout is sparsify's (``encoder.weight`` [M, D]); SAELens stores ``W_enc`` [D, M].

sparsify (PyPI ``eai-sparsify`` 1.3.x) writes a run folder::

    <run>/config.json                 TrainConfig (optional; training runs only)
    <run>/<hookpoint>/cfg.json        {"activation", "expansion_factor", "num_latents" (0 =
                                       d_in * expansion_factor), "k", "transcode", "d_in", ...}
    <run>/<hookpoint>/sae.safetensors encoder.weight, encoder.bias, W_dec, b_dec (any dtype)

and, with several seeds, ``<run>/<hookpoint>/seed<N>/``. That is our native layout, so
:func:`load_sparsify` finds the folder and hands it to :func:`interp.sae.io.load_sae`.

SAELens (6.x; 5.x configs translated) writes ``cfg.json`` + ``sae_weights.safetensors``
(``W_enc`` [D, M], ``b_enc`` [M], ``W_dec`` [M, E], ``b_dec`` [E]; jumprelu ``threshold``
[M]; gated ``b_gate``, ``b_mag``, ``r_mag`` [M] and no ``b_enc``). Its ReLU and JumpReLU
transcoders ("transcoder", "jumprelu_transcoder", ``d_out`` = E) are our relu/jumprelu with
``transcode=True``: neither centres x by b_dec. Two of its switches have no counterpart
in our classes and are folded into the weights, exactly:

- ``apply_b_dec_to_input: false`` (Gemma Scope): x @ W_enc + b = (x - b_dec) @ W_enc +
  (b + b_dec @ W_enc), so the encoder biases absorb b_dec @ W_enc.
- ``rescale_acts_by_decoder_norm: true`` (TopK, BatchTopK): top-k (or the BatchTopK
  threshold) runs on pre * ||W_dec_i|| and decode divides it back out, i.e. W_enc[:, i],
  b_enc[i] scaled by ||W_dec_i|| and W_dec[i] divided by it; the latent activations stay
  the ones SAELens reports.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from interp.runs import atomic_dir
from interp.sae.base import SparseCoder
from interp.sae.build import architecture_class
from interp.sae.io import CFG_FILE, load_sae

log = logging.getLogger(__name__)

SAELENS_CFG = "cfg.json"
SAELENS_WEIGHTS = "sae_weights.safetensors"
SAELENS_FORMAT_VERSION = "6.0.0"
"""Config-format version we write as ``metadata.sae_lens_version``: SAELens reads a file
without one (or older than 6.0) through its pre-6.0 translation."""

# SAELens inference architecture <-> ours.
_TO_SAELENS = {"topk": "topk", "jumprelu": "jumprelu", "relu": "standard", "gated": "gated"}
_FROM_SAELENS = {theirs: ours for ours, theirs in _TO_SAELENS.items()}
# A BatchTopK *training* checkpoint (SAE.save_model; its inference save is jumprelu
# already) loads as the JumpReLU that SAELens' save_inference_model would write.
_FROM_SAELENS["batchtopk"] = "jumprelu"
# SAELens transcoders (input at one hook, output at another; x is never centred by b_dec).
_TRANSCODERS = {"transcoder": "relu", "jumprelu_transcoder": "jumprelu"}
_TO_SAELENS_TRANSCODER = {ours: theirs for theirs, ours in _TRANSCODERS.items()}
# SAELens input normalisations that are per-token functions at inference: not expressible.
_RUNTIME_NORMS = ("constant_norm_rescale", "layer_norm", "covariance_whitening")


# ---------------------------------------------------------------------------- sparsify
def sparsify_hookpoints(run: str | Path) -> list[str]:
    """Hookpoint folders of a sparsify run folder (every subfolder holding cfg.json, seed
    subfolders as ``<hook>/seed<N>``), in natural order (``layers.2`` before ``layers.10``)."""
    root = Path(run)
    found = [p.parent.relative_to(root).as_posix() for p in root.glob(f"*/{CFG_FILE}")]
    found += [p.parent.relative_to(root).as_posix() for p in root.glob(f"*/seed*/{CFG_FILE}")]
    return sorted(found, key=_natural_key)


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def sparsify_folder(path: str | Path, hookpoint: str | None = None) -> Path:
    """The folder holding cfg.json + sae.safetensors for ``hookpoint`` in a sparsify run
    folder ``path`` (or ``path`` itself when it is such a folder)."""
    root = Path(path)
    if hookpoint is not None:
        folder = root / hookpoint
        if not (folder / CFG_FILE).is_file():
            raise FileNotFoundError(
                f"no {CFG_FILE} in {folder}: {root} has hookpoints {sparsify_hookpoints(root)}"
            )
        return folder
    if (root / CFG_FILE).is_file():
        return root
    hooks = sparsify_hookpoints(root)
    if len(hooks) == 1:
        return root / hooks[0]
    if not hooks:
        raise FileNotFoundError(
            f"{root} holds no sparsify checkpoint: expected cfg.json + sae.safetensors, "
            "or a run folder with one such folder per hookpoint"
        )
    raise ValueError(f"{root} holds several hookpoints {hooks}: pass hookpoint=<one of them>")


def load_sparsify(
    path: str | Path, hookpoint: str | None = None, *, device: str | torch.device = "cpu"
) -> SparseCoder:
    """Load a checkpoint written by EleutherAI sparsify (``SparseCoder.save_to_disk`` or a
    training run folder): ``path`` is the hookpoint folder, or the run folder plus
    ``hookpoint`` (not needed when the run has one). Weights of any dtype load as float32.
    """
    folder = sparsify_folder(path, hookpoint)
    cfg = json.loads((folder / CFG_FILE).read_text())
    activation = cfg.get("activation", "topk")
    if activation != "topk":
        raise ValueError(
            f"{folder}: sparsify activation={activation!r} is not supported (TopK only; "
            "'groupmax' has no counterpart here)"
        )
    if cfg.get("skip_connection"):
        raise ValueError(f"{folder}: skip_connection=true (W_skip) is not supported")
    if cfg.get("signed"):
        raise ValueError(f"{folder}: signed=true (pre-1.0 sparsify) is not supported")
    return load_sae(folder, device=device)


def load_sparsify_many(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> dict[str, SparseCoder]:
    """Every hookpoint of a sparsify run folder, ``{hookpoint: dictionary}`` in natural
    order (what sparsify's ``SparseCoder.load_many(local=True)`` returns)."""
    return {h: load_sparsify(path, h, device=device) for h in sparsify_hookpoints(path)}


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
    arch = cfg.get("architecture", "standard")
    ours_arch = _FROM_SAELENS.get(arch) or _TRANSCODERS.get(arch)
    if ours_arch is None:
        raise ValueError(
            f"{folder}: SAELens architecture {arch!r} is not supported: use one of "
            f"{sorted([*_FROM_SAELENS, *_TRANSCODERS])}"
        )
    norm = cfg.get("normalize_activations", "none")
    if norm in _RUNTIME_NORMS:
        raise ValueError(
            f"{folder}: normalize_activations={norm!r} normalises every token at run time, "
            "which our dictionaries cannot express; fold it into the weights in SAELens first"
        )
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
    transcode = arch in _TRANSCODERS
    ours = _saelens_to_ours(ours_arch, cfg, tensors, folder, transcode=transcode)
    hyper = {"k": int(cfg["k"])} if arch == "topk" else {}
    return _build(ours_arch, int(cfg["d_in"]), ours, hyper, device, transcode=transcode)


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


def _build(
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
    if inf.architecture not in _TO_SAELENS:
        raise ValueError(
            f"cannot export a {inf.architecture!r} dictionary: SAELens has "
            f"{sorted(_TO_SAELENS)} (batchtopk exports via its jumprelu form)"
        )
    if inf.transcode and inf.architecture not in _TO_SAELENS_TRANSCODER:
        raise ValueError(
            f"cannot export a {inf.architecture} transcoder: SAELens' transcoders are "
            f"{sorted(_TO_SAELENS_TRANSCODER)} only"
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
    table = _TO_SAELENS_TRANSCODER if sae.transcode else _TO_SAELENS
    arch = table[sae.architecture]
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
    if arch == "topk":
        cfg.update(k=int(sae.k), rescale_acts_by_decoder_norm=False)  # type: ignore[attr-defined]
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
    bias = state.pop("encoder.bias")
    if sae.architecture == "gated":
        out.update(b_gate=bias, b_mag=state.pop("b_mag"), r_mag=state.pop("r_mag"))
    else:
        out["b_enc"] = bias
    if sae.architecture == "jumprelu":
        out["threshold"] = state.pop("threshold").expand(sae.num_latents).contiguous()
    assert not state, f"unexported tensors {sorted(state)}"
    return out


# ---------------------------------------------------------------------------- either
def detect_format(path: str | Path) -> Literal["sparsify", "saelens"]:
    """Which layout folder ``path`` holds: SAELens (sae_weights.safetensors) or sparsify /
    ours (cfg.json + sae.safetensors, or a run folder of hookpoint folders)."""
    root = Path(path)
    if (root / SAELENS_WEIGHTS).is_file():
        return "saelens"
    if (root / "sae.safetensors").is_file() or sparsify_hookpoints(root):
        return "sparsify"
    raise FileNotFoundError(
        f"{root} is neither a SAELens SAE folder (cfg.json + {SAELENS_WEIGHTS}) nor a sparsify "
        "one (cfg.json + sae.safetensors, or a run folder with one such folder per hookpoint)"
    )


def load_dictionary(
    path: str | Path, hookpoint: str | None = None, *, device: str | torch.device = "cpu"
) -> SparseCoder:
    """Load a dictionary written by sparsify, by us, or by SAELens, whichever ``path``
    holds (``hookpoint`` picks one folder of a sparsify run)."""
    if detect_format(path) == "saelens":
        if hookpoint is not None:
            raise ValueError(f"{path} is one SAELens SAE: drop hookpoint={hookpoint!r}")
        return load_saelens(path, device=device)
    return load_sparsify(path, hookpoint, device=device)


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
        if self.sae.architecture != "gated":
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
    if sae.architecture in ("topk", "batchtopk"):
        raise ValueError(
            f"{sae.architecture} dictionary has decoder rows off unit norm (max |norm-1| = "
            f"{(norm_M - 1).abs().max():.3g}): folding would change its top-k selection"
        )
    norm_M = norm_M.clamp_min(1e-8)
    sae.encoder.weight.mul_(norm_M[:, None])
    sae.encoder.bias.mul_(norm_M)
    sae.W_dec.div_(norm_M[:, None])
    if sae.architecture == "jumprelu":
        sae.threshold.mul_(norm_M)  # type: ignore[operator]
    if sae.architecture == "gated":
        sae.b_mag.mul_(norm_M)  # type: ignore[operator]
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
