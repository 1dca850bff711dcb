"""Other projects' SAE formats: load EleutherAI sparsify and SAELens checkpoints, export
to SAELens, and wrap a dictionary for SAEBench's custom-SAE evaluations. This module holds
sparsify's and the format detection; :mod:`interp.sae.saelens` and
:mod:`interp.sae.saebench` the others (their names are re-exported here).

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

import json
import re
from pathlib import Path
from typing import Any, Literal

import torch

from interp.sae.base import SparseCoder
from interp.sae.io import CFG_FILE, load_sae
from interp.sae.saebench import SAEBenchConfig as SAEBenchConfig
from interp.sae.saebench import SAEBenchSAE as SAEBenchSAE
from interp.sae.saebench import fold_decoder_norms as fold_decoder_norms
from interp.sae.saebench import to_saebench as to_saebench
from interp.sae.saelens import SAELENS_CFG as SAELENS_CFG
from interp.sae.saelens import SAELENS_FORMAT_VERSION as SAELENS_FORMAT_VERSION
from interp.sae.saelens import SAELENS_WEIGHTS, load_saelens
from interp.sae.saelens import export_saelens as export_saelens
from interp.sae.saelens import read_saelens_cfg as read_saelens_cfg
from interp.sae.saelens import saelens_cfg as saelens_cfg


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
