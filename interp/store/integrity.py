"""Reads that fail on damage instead of returning fill values, and what a group's data must obey.

Two kinds of damage reach a reader of zarr v3:

* a **changed byte** of a chunk or of a shard's index: every chunk of a group written
  with schema >= :data:`CHECKSUM_SCHEMA` ends in a crc32c (the shard index always did),
  so zarr's decode raises; the error is re-raised naming the shard file;
* a **missing shard file**: zarr reads it back as the fill value (0), silently. Those
  groups are written with ``write_empty_chunks`` on, so every shard of every array
  exists, and a read first checks that the shard files it needs are on disk.

Groups written before (schema 1) have no checksums and skip all-zero chunks, so only
their ``val`` shards are known to exist (stored values are > 0): those are checked,
and :func:`check_values` catches the structural damage that remains visible.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import zarr

CHECKSUM_SCHEMA = 2  # first schema with crc32c on every chunk and every shard written
CHECKSUM_SINCE = "interp store schema 2"  # what 'written before' names in reports


class StoreCorruptError(ValueError):
    """A committed group of the store is damaged; ``group`` is the folder to delete."""

    def __init__(self, group: Path, problem: str, fix: str | None = None) -> None:
        self.group, self.problem = Path(group), problem
        self.fix = fix or (
            f"delete {group} and the manifest of the task that wrote it, then rerun that "
            "task (python launch/verify.py <sweep folder> names both)"
        )
        super().__init__(f"{problem}: {self.fix}")


def group_dir(group: zarr.Group) -> Path:
    """The folder of a group opened from a local store."""
    root = getattr(group.store, "root", None)
    assert root is not None, f"the latent store is a local folder, not {group.store!r}"
    return Path(root) / group.path


def is_checksummed(attrs: Any) -> bool:
    return int(attrs.get("schema", 1)) >= CHECKSUM_SCHEMA


def shard_files(path: Path, name: str, arr: zarr.Array, lo: int, hi: int) -> list[Path]:
    """The files holding rows ``[lo, hi)`` of array ``name`` of the group at ``path``."""
    if hi <= lo:
        return []
    rows = (arr.shards or arr.chunks)[0]
    rest = (0,) * (arr.ndim - 1)
    keys = (
        arr.metadata.encode_chunk_key((i, *rest)) for i in range(lo // rows, (hi - 1) // rows + 1)
    )
    return [path / name / key for key in keys]


def shard_bounds(arr: zarr.Array) -> Iterator[tuple[int, int]]:
    """Row intervals of ``arr``, one per shard file."""
    rows, n = (arr.shards or arr.chunks)[0], arr.shape[0]
    for lo in range(0, n, rows):
        yield lo, min(lo + rows, n)


def read_checked(group: zarr.Group, name: str, lo: int | None = None, hi: int | None = None):
    """Rows ``[lo, hi)`` of one array; :class:`StoreCorruptError` naming the file on damage."""
    path = group_dir(group)
    try:
        arr = group[name]
    except Exception as e:  # a damaged zarr.json raises anything from json to zarr
        raise StoreCorruptError(path, f"{path / name}/zarr.json unreadable ({e})") from e
    lo, hi, _ = slice(lo, hi).indices(arr.shape[0])
    if is_checksummed(group.attrs) or name == "val":
        missing = [f for f in shard_files(path, name, arr, lo, hi) if not f.is_file()]
        if missing:
            names = ", ".join(str(f) for f in missing[:3]) + (" ..." if len(missing) > 3 else "")
            raise StoreCorruptError(
                path, f"{names} missing ({len(missing)} shard file(s) of '{name}' a read needs)"
            )
    try:
        return arr[lo:hi]
    except Exception as e:  # a checksum mismatch, a truncated shard, a bad codec header
        raise StoreCorruptError(
            path, f"{_failing_shard(path, name, arr, lo, hi)} does not decode ({_brief(e)})"
        ) from e


def _failing_shard(path: Path, name: str, arr: zarr.Array, lo: int, hi: int) -> Path:
    """The first shard file of ``[lo, hi)`` that fails to decode on its own."""
    rows = (arr.shards or arr.chunks)[0]
    for f in shard_files(path, name, arr, lo, hi):
        i = int(f.relative_to(path / name).parts[1])
        try:
            arr[max(lo, i * rows) : min(hi, (i + 1) * rows)]
        except Exception:
            return f
    return path / name


def _brief(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    if "checksum do not match" in text:  # zarr's Crc32cCodec
        return "crc32c mismatch: its bytes changed after they were written"
    return f"{type(e).__name__}: {text[:200]}"


def check_values(
    attrs: Any, offsets: np.ndarray, tok: np.ndarray, val: np.ndarray, nnz: int
) -> str:
    """Why a decoded part of a CSR group is impossible ('' if it is not).

    ``offsets`` are the group's offsets of a latent interval, absolute (``offsets[0]``
    is where ``tok``/``val`` start); ``nnz`` is the group's entry count from its attrs.
    """
    if len(offsets) and (offsets[0] < 0 or offsets[-1] > nnz or np.any(np.diff(offsets) < 0)):
        return f"offsets not monotone within [0, nnz={nnz}]"
    n = int(offsets[-1] - offsets[0]) if len(offsets) else 0
    if len(tok) != n or len(val) != n:
        return f"{len(tok)} tok / {len(val)} val entries where the offsets say {n}"
    if n:
        # Finite float16 > 0 are the bit patterns 1..0x7BFF: one integer pass, no float16 math.
        bad = np.count_nonzero((val.view(np.uint16) - np.uint16(1)) >= np.uint16(0x7BFF))
        if bad:
            return f"{bad} values not finite and > 0 (fill values of a lost chunk?)"
    start, stop = int(attrs.get("token_start", 0)), attrs.get("token_stop")
    if n and (int(tok.min()) < start or (stop is not None and int(tok.max()) >= stop)):
        return f"token indices outside [{start}, {stop})"
    return _unsorted_latents(offsets, tok)


def _unsorted_latents(offsets: np.ndarray, tok: np.ndarray) -> str:
    """Tokens must ascend within each latent: a step down is allowed only at a boundary."""
    if len(tok) < 2:
        return ""
    down = tok[1:] < tok[:-1]  # down[i]: entry i + 1 is below entry i
    inner = offsets[1:-1] - offsets[0]  # entries that start a latent (not the first)
    down[inner[(inner > 0) & (inner < len(tok))] - 1] = False
    n = int(np.count_nonzero(down))
    return f"{n} token indices out of order within a latent" if n else ""
