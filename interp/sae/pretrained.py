"""Dictionaries someone else trained: inspect a checkpoint cheaply, then load it.

MINIMAL STAND-IN (branch i16-pipe) for the library module of branch i16-lib, with the
same API: sparsify and SAELens folders only, through :mod:`interp.sae.formats`; no hub, no
Gemma Scope. Replaced wholesale by i16-lib's module when it lands on main.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from interp.sae.base import SparseCoder

FORMATS = ("auto", "sparsify", "saelens", "gemmascope")


@dataclass(frozen=True)
class PretrainedInfo:
    """One dictionary of a pretrained source, read from its headers."""

    source: str
    path: Path
    format: str
    hookpoint: str
    file_hookpoint: str
    d_in: int
    d_out: int
    num_latents: int
    architecture: str
    transcode: bool
    content_hash: str


def inspect_pretrained(
    source: str, fmt: str = "auto", hookpoint: str | None = None, *, cache_dir: Path | None = None
) -> PretrainedInfo:
    """What ``source`` holds (one dictionary; ``hookpoint`` picks one of several)."""
    from interp.sae.formats import detect_format, sparsify_folder

    root = Path(source).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"sae.path={source!r} does not exist: pass a checkpoint folder")
    if fmt not in FORMATS:
        raise ValueError(f"sae.format={fmt!r} is not one of {list(FORMATS)}")
    found = detect_format(root)
    if fmt not in ("auto", found):
        raise ValueError(f"sae.format={fmt!r} but {root} holds a {found} checkpoint")
    if found == "saelens":
        return _saelens_info(source, root)
    folder = root if (root / "cfg.json").is_file() else sparsify_folder(root, hookpoint)
    cfg = json.loads((folder / "cfg.json").read_text())
    d_in = int(cfg["d_in"])
    num = int(cfg.get("num_latents") or 0) or d_in * int(cfg["expansion_factor"])
    name = folder.relative_to(root).as_posix() if folder != root else root.name
    ours = name if re.fullmatch(r"layers\.\d+(\..+)?", name) else ""
    return PretrainedInfo(
        source, folder, "sparsify", ours, name,
        d_in, int(cfg.get("d_out") or d_in), num, cfg.get("activation", "topk"),
        bool(cfg.get("transcode")), _hash(folder, "sae.safetensors"),
    )  # fmt: skip


def _saelens_info(source: str, root: Path) -> PretrainedInfo:
    from interp.sae.saelens import read_saelens_cfg

    cfg = read_saelens_cfg(root)
    file_hook = str(cfg.get("metadata", {}).get("hook_name") or cfg.get("hook_name") or "")
    ours = _map_hook(file_hook)
    arch = {"standard": "relu", "transcoder": "relu"}.get(cfg.get("architecture"), "jumprelu")
    arch = "topk" if cfg.get("architecture") == "topk" else arch
    return PretrainedInfo(
        source, root, "saelens", ours, file_hook, int(cfg["d_in"]),
        int(cfg.get("d_out") or cfg["d_in"]), int(cfg["d_sae"]), arch,
        "transcoder" in str(cfg.get("architecture")), _hash(root, "sae_weights.safetensors"),
    )  # fmt: skip


def _map_hook(name: str) -> str:
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", name)
    if m:
        return f"layers.{m.group(1)}"
    m = re.fullmatch(r"blocks\.(\d+)\.hook_mlp_out", name)
    return f"layers.{m.group(1)}.mlp" if m else name


def _hash(folder: Path, weights: str) -> str:
    h = hashlib.sha256()
    for name in (weights, "cfg.json"):
        with open(folder / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def load_pretrained(info: PretrainedInfo, *, device: Any = "cpu") -> SparseCoder:
    """The dictionary ``info`` describes, as one of our SparseCoders."""
    from interp.sae.formats import load_saelens, load_sparsify

    if info.format == "saelens":
        return load_saelens(info.path, device=device)
    return load_sparsify(info.path, device=device)
