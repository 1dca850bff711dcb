"""On-disk format of the latent store: group layout, codecs, committed-group discovery.

Layout under ``store_dir`` (see shared/reference/zarr-store.md, "C -> B")::

    store.json                 store-wide metadata, identical for every writer
    slices/s00000/             one zarr v3 store root per collect task (token slice)
        offsets tok val tokens   latent-sorted CSR over all latents + the slice's token ids
    ranges/r00000/             one zarr v3 store root per compact task (latent range)
        offsets tok val          latent-major CSR of the range over all tokens
        count max mean quantiles per-latent stats

Every group is its own store root, so no writer ever touches a shared zarr.json
(v3 has no implicit groups, and shared attributes lose concurrent updates). A group
counts only if its attrs say ``complete: true``; they are set last, inside a
temporary directory that is renamed into place (``interp.runs.atomic_dir``).

Integrity (schema 2): every inner chunk ends in a **crc32c**, zarr v3's own
checksum codec (``zarr.codecs.Crc32cCodec``, the same one the sharding codec already
puts on each shard's index). Chosen over numcodecs' CRC32/CRC32C because it is part
of the zarr v3 specification, so any v3 reader (zarr-python, tensorstore, zarrita)
verifies it without numcodecs, and because it runs in google-crc32c's C code (11-12
GiB/s measured here) after Blosc, so it checksums the few compressed bytes. Every
shard is written even when its chunks are all zero (``write_empty_chunks``), so a
shard file that is not on disk is damage, never a legitimate run of fill values;
reads check both (:mod:`interp.store.integrity`).
Groups of schema 1 (no checksums) still read; ``verify`` reports them as such. The
schema is not part of the collect run id (``interp.runs.RunIds``): both schemas hold
the same values, a store begun under schema 1 is finished under schema 2 (each group
records its own), and the run ids of existing sweeps, the embedded default's among
them, stay what they were.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import zarr

from interp.runs import atomic_dir, atomic_write_json, is_tmp, remove_stale_tmp_of
from interp.store.csr import LatentCSR
from interp.store.integrity import StoreCorruptError, check_values, group_dir, read_checked

SCHEMA_VERSION = 2  # 2: crc32c on every chunk, every shard written
CHUNK_ENTRIES = 131_072  # tok/val inner chunk (reference section 5)
SHARD_CHUNKS = 64  # inner chunks per shard file: fewer files on parallel filesystems
OFFSETS_CHUNK = 4096  # latents per offsets chunk
TOKENS_CHUNK = 65_536
STATS_CHUNK = 4096

ArrayKind = Literal["tok", "val", "offsets", "tokens", "stats"]

CODECS: dict[str, str] = {
    "tok": "Delta(uint32) + Blosc(zstd, 3, bitshuffle) + crc32c",
    "val": "Blosc(zstd, 5, shuffle) + crc32c",
    "offsets": "Delta(int64) + Blosc(zstd, 3, bitshuffle) + crc32c",
    "tokens": "Blosc(zstd, 5, shuffle) + crc32c",
    "stats": "Blosc(zstd, 3, shuffle) + crc32c",
}
FORMAT_FIELDS = ("schema_version", "codecs")  # how the store is encoded, not what it holds


# ------------------------------------------------------------------------------ paths


def store_meta_file(store_dir: Path) -> Path:
    # TODO(runs): move to RunPaths.store_meta_file() once it exists.
    return store_dir / "store.json"


def slices_dir(store_dir: Path) -> Path:
    """Parent of ``RunPaths.slice_group(i)`` (a unit test pins the two together)."""
    return store_dir / "slices"


def ranges_dir(store_dir: Path) -> Path:
    """Parent of ``RunPaths.range_group(i)`` (a unit test pins the two together)."""
    return store_dir / "ranges"


# ------------------------------------------------------------------------ store meta


@dataclass(frozen=True)
class StoreMeta:
    """Store-wide facts. Every collect task writes the same content, so races are harmless."""

    n_latents: int
    k: int  # active latents per token when fixed (TopK); 0 = data-dependent (threshold SAEs)
    ctx_len: int
    n_tokens: int
    d_in: int
    hookpoint: str
    token_dtype: str = "uint32"
    schema_version: int = SCHEMA_VERSION
    codecs: dict[str, str] = dataclasses.field(default_factory=lambda: dict(CODECS))


def write_store_meta(store_dir: Path, meta: StoreMeta) -> None:
    """Write ``store.json`` atomically (its one writer: collect task 0); refuse to
    change what an earlier attempt wrote."""
    old = check_store_meta(store_dir, meta)
    if old is None:
        atomic_write_json(store_meta_file(store_dir), dataclasses.asdict(meta))


def check_store_meta(store_dir: Path, meta: StoreMeta) -> StoreMeta | None:
    """The committed ``store.json`` (None if not written yet); ValueError if it
    describes a different store than ``meta``.

    The format fields are not compared: a store begun before schema 2 may be finished
    by this writer (each group records its own schema, and reads honour it).
    """
    old = read_store_meta(store_dir)
    if old is not None and _content(old) != _content(meta):
        raise ValueError(
            f"{store_meta_file(store_dir)} describes a different store ({old}) than this "
            f"writer ({meta}); the store folder is keyed by the collect config, so this means "
            "the SAE or data changed under the same run id: delete the store and rerun collect"
        )
    return old


def _content(meta: StoreMeta) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(meta).items() if k not in FORMAT_FIELDS}


def read_store_meta(store_dir: Path) -> StoreMeta | None:
    try:
        raw = json.loads(store_meta_file(store_dir).read_text())
    except FileNotFoundError:
        return None
    return StoreMeta(**raw)


# -------------------------------------------------------------------------- codecs


@contextlib.contextmanager
def quiet_numcodecs() -> Iterator[None]:
    """Silence zarr's note that Delta is a numcodecs (not core v3) codec: it is chosen.

    The note fires on every array open; the store is read with zarr-python, and the
    codec is recorded in store.json for anyone reading it with another implementation.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numcodecs codecs are not in the Zarr")
        yield


def _codecs(kind: ArrayKind, dtype: np.dtype) -> dict[str, Any]:
    from zarr.codecs import BloscCodec, Crc32cCodec
    from zarr.codecs.numcodecs import Delta

    if kind in ("tok", "offsets"):  # sorted integers: store differences, bit-shuffled
        return {
            "filters": [Delta(dtype=str(dtype))],
            "compressors": [
                BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"),
                Crc32cCodec(),
            ],
        }
    clevel = 3 if kind == "stats" else 5
    return {
        "filters": None,
        "compressors": [BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle"), Crc32cCodec()],
    }


def _chunking(kind: ArrayKind, shape: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Inner chunk and shard shape; each array has one writer, so shards are never shared.

    Chunks hold a multiple of 8 elements: Blosc skips bitshuffle on a block whose
    element count is not, and a small tok array then takes 2.0 instead of 1.5 B/entry.
    """
    size = {"tok": CHUNK_ENTRIES, "val": CHUNK_ENTRIES, "offsets": OFFSETS_CHUNK}.get(
        kind, TOKENS_CHUNK if kind == "tokens" else STATS_CHUNK
    )
    n = shape[0]
    chunk = min(size, max(8, -(-n // 8) * 8))
    shard = chunk * max(1, min(SHARD_CHUNKS, -(-n // chunk)))
    return (chunk, *shape[1:]), (shard, *shape[1:])


def write_array(group: zarr.Group, name: str, data: np.ndarray, kind: ArrayKind) -> None:
    """Create and fill one array of a private (not yet committed) group."""
    chunks, shards = _chunking(kind, data.shape)
    with quiet_numcodecs():
        arr = group.create_array(
            name,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            shards=shards,
            fill_value=0,
            config={"write_empty_chunks": True},  # every shard on disk: a lost one is damage
            **_codecs(kind, data.dtype),
        )
        if data.size:
            arr[...] = data


def write_group(
    group: Path,
    csr: LatentCSR,
    extra: dict[str, tuple[np.ndarray, ArrayKind]],
    attrs: dict[str, Any],
) -> None:
    """Build a CSR group (plus ``extra`` arrays) privately and commit it by rename.

    The attributes (``complete: true`` among them) go last, in one write: a group
    without them never counts as committed.
    """
    remove_stale_tmp_of(group)
    with atomic_dir(group) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        write_array(root, "offsets", csr.offsets, "offsets")
        write_array(root, "tok", csr.tok, "tok")
        write_array(root, "val", csr.val, "val")
        for name, (data, kind) in extra.items():
            write_array(root, name, data, kind)
        root.update_attributes(attrs)


def open_group(path: Path) -> zarr.Group:
    """A committed group, read-only; :class:`StoreCorruptError` if its zarr.json is damaged."""
    try:
        with quiet_numcodecs():
            return zarr.open_group(str(path), mode="r")
    except Exception as e:
        raise StoreCorruptError(path, f"{path}/zarr.json does not open ({e})") from e


def read_array(group: zarr.Group, name: str, lo: int | None = None, hi: int | None = None):
    """One contiguous read (zarr calls cost ms each: never loop over latents), checked:
    a missing shard or a checksum mismatch raises :class:`StoreCorruptError`."""
    with quiet_numcodecs():
        return read_checked(group, name, lo, hi)


def array_shape(group: zarr.Group, name: str) -> tuple[int, ...]:
    with quiet_numcodecs():
        return tuple(group[name].shape)


# --------------------------------------------------------------------- group records


@dataclass(frozen=True)
class SliceInfo:
    """A committed collect group: the CSR of tokens ``[token_start, token_stop)``."""

    path: Path
    token_start: int
    token_stop: int
    nnz: int
    n_latents: int
    token_dtype: str


@dataclass(frozen=True)
class RangeInfo:
    """A committed compact group: the CSR of latents ``[latent_start, latent_stop)``."""

    path: Path
    latent_start: int
    latent_stop: int
    nnz: int
    n_latents: int
    n_slices: int


def complete_attrs(path: Path) -> dict[str, Any] | None:
    """The group's attrs if it is committed (``complete: true``), else None.

    Reads zarr.json directly: listing hundreds of groups must not pay zarr's open cost.
    """
    if is_tmp(path):
        return None
    try:
        doc = json.loads((path / "zarr.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    attrs = doc.get("attributes", {})
    return attrs if attrs.get("complete") is True else None


def read_slice_info(path: Path) -> SliceInfo | None:
    a = complete_attrs(path)
    if a is None or a.get("kind") != "slice":
        return None
    return SliceInfo(
        path, a["token_start"], a["token_stop"], a["nnz"], a["n_latents"], a["token_dtype"]
    )


def read_range_info(path: Path) -> RangeInfo | None:
    a = complete_attrs(path)
    if a is None or a.get("kind") != "range":
        return None
    return RangeInfo(
        path, a["latent_start"], a["latent_stop"], a["nnz"], a["n_latents"], a["n_slices"]
    )


def committed_slices(store_dir: Path) -> list[SliceInfo]:
    """Committed slice groups in token order; temporaries and unfinished groups are skipped."""
    found = [read_slice_info(p) for p in _children(slices_dir(store_dir))]
    return sorted((s for s in found if s is not None), key=lambda s: (s.token_start, s.token_stop))


def committed_ranges(store_dir: Path) -> list[RangeInfo]:
    """Committed range groups in latent order."""
    found = [read_range_info(p) for p in _children(ranges_dir(store_dir))]
    return sorted(
        (r for r in found if r is not None), key=lambda r: (r.latent_start, r.latent_stop)
    )


def _children(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not is_tmp(p))


# ---------------------------------------------------------------------------- reads


def read_part(path: Path, lo: int, hi: int, *, first: int = 0) -> LatentCSR:
    """Latents ``[lo, hi)`` of a group whose first latent is ``first``, in 3 reads.

    Offsets come back relative to ``lo``; tok/val are one contiguous read each.
    """
    group = open_group(path)
    return read_entries(group, read_offsets(group, lo - first, hi - first))


def read_offsets(group: zarr.Group, i: int, j: int) -> np.ndarray:
    """Absolute offsets of the group's local latents ``[i, j)`` (``j - i + 1`` values)."""
    offsets = np.asarray(read_array(group, "offsets", i, j + 1), np.int64)
    if len(offsets) != j - i + 1:
        path = group_dir(group)
        raise StoreCorruptError(path, f"{path}/offsets has no rows for local latents [{i}, {j})")
    return offsets


def read_entries(group: zarr.Group, offsets: np.ndarray) -> LatentCSR:
    """The tok/val entries that absolute ``offsets`` delimit, checked for what a CSR
    must obey (:func:`interp.store.integrity.check_values`)."""
    start, stop = int(offsets[0]), int(offsets[-1])
    tok = read_array(group, "tok", start, stop)
    val = read_array(group, "val", start, stop)
    problem = check_values(group.attrs, offsets, tok, val, int(group.attrs.get("nnz", stop)))
    if problem:
        path = group_dir(group)
        raise StoreCorruptError(path, f"{path}, entries [{start}, {stop}): {problem}")
    return LatentCSR(offsets - start, tok, val)
