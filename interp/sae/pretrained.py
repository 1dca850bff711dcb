"""Pretrained dictionaries: find one in a folder or hub id, describe it from its headers,
load it as our :class:`SparseCoder`.

A *source* is a local folder (or file) or a hub id ``org/repo[/sub/folder]`` (fetched by
:mod:`interp.sae.hub`). It may hold one dictionary or many: a sparsify run folder (one
sub-folder per hookpoint, ``seed<N>`` sub-folders), a SAELens release tree, a Gemma
Scope tree (``layer_<L>/width_<W>/average_l0_<N>/params.npz``). ``hookpoint`` picks one,
in our naming (``layers.6``) or the file's (``blocks.6.hook_resid_post``, ``layer_6``, a
folder path below the source).

:func:`inspect_pretrained` reads configs and headers only (safetensors headers, the npz
members' npy headers) and hashes the bytes; :func:`load_pretrained` loads the weights and
checks that the bytes are still the ones inspected. Formats and folds:
sparsify -> :mod:`interp.sae.formats`, SAELens -> :mod:`interp.sae.saelens`, Gemma Scope
-> :mod:`interp.sae.gemmascope`; hookpoint names -> :mod:`interp.sae.hookpoints`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from interp.sae.base import SparseCoder
from interp.sae.gemmascope import GEMMA_SCOPE_FILE, check_gemma_scope_shapes, npz_shapes
from interp.sae.hookpoints import (
    UnmappableHookpoint,
    gemma_scope_hookpoints,
    is_our_hookpoint,
    map_hookpoint,
    transcoder_hookpoints,
)
from interp.sae.hub import fetch, looks_like_hub_id

FORMATS = ("sparsify", "saelens", "gemmascope")
SPARSIFY_WEIGHTS = "sae.safetensors"
SAELENS_WEIGHTS = "sae_weights.safetensors"
CFG = "cfg.json"


@dataclass(frozen=True)
class PretrainedInfo:
    """One pretrained dictionary, as its files describe it (nothing loaded)."""

    source: str  # what the user wrote (folder or hub id)
    path: Path  # the local folder (or file) holding the one dictionary used
    format: str  # "sparsify" | "saelens" | "gemmascope"
    hookpoint: str  # OUR hookpoint name where it reads its input: "layers.N", "...:input"
    file_hookpoint: str  # the name the checkpoint uses ("blocks.6.hook_resid_post", ...)
    d_in: int
    d_out: int
    num_latents: int
    architecture: str  # our registry name: topk, batchtopk, jumprelu, relu, gated ...
    transcode: bool
    content_hash: str  # sha256 hex of the weights file(s) bytes + the cfg file bytes
    target_hookpoint: str = ""  # transcoders: OUR name of what it predicts ("" = unknown)


@dataclass(frozen=True)
class _Found:
    """One dictionary inside a source, its names read from its config."""

    format: str
    path: Path
    key: str  # its folder below the source ("" = the source itself)
    file_hookpoint: str
    hookpoint: str | None  # ours; None when the file's name has no counterpart
    target: str
    transcode: bool

    def label(self) -> str:
        ours = self.hookpoint or "unmapped"
        where = f" at {self.key}" if self.key and self.key != self.file_hookpoint else ""
        return f"{self.file_hookpoint} (ours: {ours}){where}"


# ---------------------------------------------------------------------------- public
def inspect_pretrained(
    source: str, fmt: str = "auto", hookpoint: str | None = None, *, cache_dir: Path | None = None
) -> PretrainedInfo:
    """Describe the one dictionary ``hookpoint`` picks in ``source`` (any, when it holds
    one) from configs and headers; ``fmt`` = "auto" detects sparsify / saelens /
    gemmascope. Raises ValueError / FileNotFoundError with one line naming the fix."""
    if fmt != "auto" and fmt not in FORMATS:
        raise ValueError(f"sae.format={fmt!r}: use auto or one of {list(FORMATS)}")
    root = _resolve(source, cache_dir, hookpoint)
    found = _select(source, _discover(source, root, fmt), hookpoint)
    return _describe(source, found)


def load_pretrained(info: PretrainedInfo, *, device: str | torch.device = "cpu") -> SparseCoder:
    """Load the dictionary ``info`` describes (float32), refusing files whose bytes
    changed since they were inspected (the run id was computed from the old ones)."""
    from interp.sae.gemmascope import load_gemma_scope
    from interp.sae.io import load_sae
    from interp.sae.saelens import load_saelens

    now = content_hash(_hashed_files(info.format, info.path))
    if now != info.content_hash:
        raise ValueError(
            f"{info.path} changed since it was inspected (sha256 {info.content_hash[:12]} -> "
            f"{now[:12]}): plan the sweep again so the new weights get their own run id"
        )
    if info.format == "gemmascope":
        sae = load_gemma_scope(info.path, transcode=info.transcode, device=device)
    elif info.format == "saelens":
        sae = load_saelens(info.path, device=device)
    else:
        sae = load_sae(info.path, device=device)  # sparsify's layout, any of our architectures
    got = (sae.d_in, sae.d_out, sae.num_latents, sae.transcode)
    assert got == (info.d_in, info.d_out, info.num_latents, info.transcode), (got, info)
    return sae


def content_hash(files: list[Path]) -> str:
    """sha256 hex of the files' bytes, in order (weights first, then the config). Read
    once per process while the files' sizes and mtimes stay the same (GB-sized weights
    are inspected by planning, preflight and the stage)."""
    stats = tuple((str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _hash_files(stats)


@functools.lru_cache(maxsize=256)
def _hash_files(stats: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for file, _size, _mtime in stats:
        with open(file, "rb") as fh:
            while chunk := fh.read(1 << 22):
                digest.update(chunk)
    return digest.hexdigest()


def safetensors_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """{tensor name: shape} from a safetensors file's JSON header (no data read)."""
    with open(file, "rb") as fh:
        (size,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(size))
    return {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}


# ---------------------------------------------------------------------------- finding
def _resolve(source: str, cache_dir: Path | None, hookpoint: str | None) -> Path:
    path = Path(source).expanduser()
    if path.exists():
        return path
    if looks_like_hub_id(source):
        return fetch(source, cache_dir, hookpoint)
    raise FileNotFoundError(
        f"sae.path={source!r} is no existing file or folder and no hub id (org/repo[/sub]): "
        "pass a local checkpoint folder or a hub id"
    )


def _format_of(folder: Path) -> str | None:
    if (folder / SAELENS_WEIGHTS).is_file():
        return "saelens"
    if (folder / SPARSIFY_WEIGHTS).is_file() and (folder / CFG).is_file():
        return "sparsify"
    if (folder / GEMMA_SCOPE_FILE).is_file():
        return "gemmascope"
    return None


def _discover(source: str, root: Path, fmt: str) -> list[_Found]:
    """Every dictionary below ``root`` (a file names its folder), ``fmt`` ones only."""
    base = root.parent if root.is_file() else root
    folders = [base, *sorted(p for p in base.rglob("*") if p.is_dir())]
    hits = []
    for folder in folders:
        rel = folder.relative_to(base).as_posix()
        if any(part.startswith(".") for part in Path(rel).parts):
            continue  # the hub client's own metadata folders
        kind = _format_of(folder)
        if kind is not None and fmt in ("auto", kind):
            hits.append((kind, folder, "" if rel == "." else rel))
    if not hits:
        what = "a" if fmt == "auto" else f"a {fmt}"
        raise FileNotFoundError(
            f"sae.path={source!r} holds no {what} dictionary (sparsify: cfg.json + "
            f"{SPARSIFY_WEIGHTS}; SAELens: cfg.json + {SAELENS_WEIGHTS}; Gemma Scope: "
            f"{GEMMA_SCOPE_FILE}): pass the folder that holds one"
        )
    kinds = sorted({kind for kind, _, _ in hits})
    if len(kinds) > 1:
        raise ValueError(
            f"sae.path={source!r} holds dictionaries of several formats {kinds}: pass "
            "sae.format=<one of them>"
        )
    return [_found(source, *hit) for hit in hits]


def _found(source: str, kind: str, folder: Path, key: str) -> _Found:
    if kind == "gemmascope":
        file_hook = _from_layer_folder(folder)
        try:  # the release name (-res, -mlp ...) is in the source: a hub id or its copy
            hook, target = gemma_scope_hookpoints(f"{source}/{file_hook}")
        except UnmappableHookpoint:
            hook, target = None, ""
        path = folder / GEMMA_SCOPE_FILE
        return _Found(kind, path, key, file_hook, hook, target, bool(target))
    cfg = _read_cfg(folder, kind)
    if kind == "saelens":
        meta = cfg.get("metadata", {})
        file_hook = str(meta.get("hook_name") or cfg.get("hook_name", ""))
        out = str(cfg.get("hook_name_out") or meta.get("hook_name_out") or "")
        model = str(meta.get("model_name") or "")
        transcode = "transcoder" in str(cfg.get("architecture", ""))
    else:
        file_hook = key.split("/seed")[0] if key else folder.name
        if file_hook.startswith("seed") and not key:
            file_hook = folder.parent.name
        out, model, transcode = "", "", bool(cfg.get("transcode"))
    try:
        if transcode:
            hook, target = transcoder_hookpoints(file_hook, kind, model_name=model, out_name=out)
        else:
            hook, target = map_hookpoint(file_hook, kind, model_name=model), ""
    except UnmappableHookpoint:
        hook, target = None, ""
    return _Found(kind, folder, key, file_hook, hook, target, transcode)


def _from_layer_folder(folder: Path) -> str:
    """``layer_20/width_16k/average_l0_71`` from a Gemma Scope folder path."""
    parts = folder.as_posix().split("/")
    starts = [i for i, p in enumerate(parts) if p.startswith("layer_")]
    return "/".join(parts[starts[-1] :]) if starts else folder.name


def _read_cfg(folder: Path, kind: str) -> dict[str, Any]:
    if kind == "saelens":
        from interp.sae.saelens import read_saelens_cfg

        return read_saelens_cfg(folder)
    return json.loads((folder / CFG).read_text())


def _select(source: str, found: list[_Found], hookpoint: str | None) -> _Found:
    listing = "; ".join(f.label() for f in found[:20]) + (" ..." if len(found) > 20 else "")
    if hookpoint is None:
        if len(found) == 1:
            if found[0].hookpoint is None:
                raise _no_mapping(source, found[0])
            return found[0]
        raise ValueError(
            f"sae.path={source!r} holds {len(found)} dictionaries: pass sae.hookpoint=<one "
            f"of them>: {listing}"
        )
    hits = [f for f in found if _matches(f, hookpoint)]
    if len(hits) == 1:
        return hits[0]
    if not hits and len(found) == 1 and found[0].hookpoint is None:
        if not is_our_hookpoint(hookpoint):
            raise ValueError(f"sae.hookpoint={hookpoint!r} is not a hookpoint name like layers.6")
        return _Found(**{**found[0].__dict__, "hookpoint": hookpoint})  # the user's override
    if not hits:
        raise ValueError(f"sae.path={source!r} has no hookpoint {hookpoint!r}: it holds {listing}")
    raise ValueError(
        f"sae.hookpoint={hookpoint!r} matches {len(hits)} dictionaries in {source!r}: pass "
        f"sae.hookpoint=<its folder> to pick one: {'; '.join(f.label() for f in hits)}"
    )


def _matches(found: _Found, hookpoint: str) -> bool:
    names = (found.hookpoint, found.file_hookpoint, found.key)
    below = hookpoint.rstrip("/") + "/"
    return (
        hookpoint in names or found.key.startswith(below) or found.file_hookpoint.startswith(below)
    )


def _no_mapping(source: str, found: _Found) -> ValueError:
    return UnmappableHookpoint(
        f"sae.path={source!r}: {found.format} hookpoint {found.file_hookpoint!r} has no "
        "counterpart in our hookpoint names: pass sae.hookpoint=<ours> (e.g. layers.6, the "
        "residual stream after decoder layer 6)"
    )


# ---------------------------------------------------------------------------- describing
def _hashed_files(fmt: str, path: Path) -> list[Path]:
    if fmt == "gemmascope":
        return [path]
    weights = SAELENS_WEIGHTS if fmt == "saelens" else SPARSIFY_WEIGHTS
    return [path / weights, path / CFG]


def _describe(source: str, found: _Found) -> PretrainedInfo:
    shape_of = {"gemmascope": _gemma_shapes, "saelens": _saelens_shapes}
    d_in, d_out, m, arch = shape_of.get(found.format, _sparsify_shapes)(found.path)
    assert found.hookpoint is not None
    return PretrainedInfo(
        source=source,
        path=found.path,
        format=found.format,
        hookpoint=found.hookpoint,
        file_hookpoint=found.file_hookpoint,
        d_in=d_in,
        d_out=d_out,
        num_latents=m,
        architecture=arch,
        transcode=found.transcode or d_out != d_in,
        content_hash=content_hash(_hashed_files(found.format, found.path)),
        target_hookpoint=found.target,
    )


def _gemma_shapes(file: Path) -> tuple[int, int, int, str]:
    return (*check_gemma_scope_shapes(file, npz_shapes(file)), "jumprelu")


def _saelens_shapes(folder: Path) -> tuple[int, int, int, str]:
    from interp.sae.saelens import read_saelens_cfg, saelens_architecture

    cfg = read_saelens_cfg(folder)
    arch, _transcode = saelens_architecture(cfg, folder)
    shapes = safetensors_shapes(folder / SAELENS_WEIGHTS)
    d_in, m = int(cfg["d_in"]), int(cfg["d_sae"])
    d_out = int(cfg.get("d_out", d_in))
    if shapes.get("W_enc") != (d_in, m) or shapes.get("W_dec") != (m, d_out):
        raise ValueError(
            f"{folder}: W_enc {shapes.get('W_enc')} / W_dec {shapes.get('W_dec')} do not match "
            f"cfg.json d_in={d_in}, d_sae={m}, d_out={d_out}: the checkpoint is inconsistent"
        )
    return d_in, d_out, m, arch


def _sparsify_shapes(folder: Path) -> tuple[int, int, int, str]:
    from interp.sae.build import architecture_class

    cfg = json.loads((folder / CFG).read_text())
    for flag in ("skip_connection", "signed"):
        if cfg.get(flag):
            raise ValueError(f"{folder}: sparsify {flag}=true is not supported")
    arch = str(cfg.get("activation", "topk"))
    try:
        architecture_class(arch)
    except ValueError as err:
        raise ValueError(f"{folder}: activation={arch!r} cannot be loaded: {err}") from None
    shapes = safetensors_shapes(folder / SPARSIFY_WEIGHTS)
    (m, d_in), (m2, d_out) = shapes["encoder.weight"], shapes["W_dec"]
    if m2 != m or int(cfg.get("d_in", d_in)) != d_in:
        raise ValueError(
            f"{folder}: encoder {shapes['encoder.weight']} / W_dec {shapes['W_dec']} "
            f"do not match cfg.json d_in={cfg.get('d_in')}"
        )
    return d_in, d_out, m, arch
