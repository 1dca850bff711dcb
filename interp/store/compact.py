"""Compact one latent range from every slice group into one latent-major group (layout B).

Each slice is read exactly three times (its offsets over the range, then tok and val
as one contiguous block), and parts are scattered in token order: an O(nnz) merge
with memory about the size of the range's output.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from interp.store.csr import (
    N_QUANTILES,
    LatentCSR,
    compute_stats,
    merged_offsets,
    scatter_part,
)
from interp.store.format import (
    SCHEMA_VERSION,
    RangeInfo,
    SliceInfo,
    open_group,
    read_entries,
    read_offsets,
    read_range_info,
    read_slice_info,
    read_store_meta,
    write_group,
)

log = logging.getLogger(__name__)


def merge_slices(slices: list[SliceInfo], lo: int, hi: int) -> LatentCSR:
    """Latents ``[lo, hi)`` over all given slices (in token order), token-sorted.

    Every read is checked (missing shard, checksum, impossible values): damage raises
    :class:`~interp.store.integrity.StoreCorruptError` naming the file, before any output.
    """
    assert slices, "no slices to merge"
    groups = [open_group(s.path) for s in slices]
    offs = [read_offsets(g, lo, hi) for g in groups]
    out_offsets = merged_offsets([o - o[0] for o in offs])
    nnz = int(out_offsets[-1])
    out = LatentCSR(out_offsets, np.empty(nnz, np.uint32), np.empty(nnz, np.float16))
    fill = out_offsets[:-1].copy()
    for group, off in zip(groups, offs):
        scatter_part(out, fill, read_entries(group, off))
    assert np.array_equal(fill, out_offsets[1:]), "merge did not fill every latent"
    assert nnz == sum(int(o[-1] - o[0]) for o in offs)
    return out


def load_slices(paths: list[Path]) -> list[SliceInfo]:
    """Committed slice records in token order; ValueError if any is missing or overlaps."""
    infos = []
    for p in paths:
        info = read_slice_info(p)
        if info is None:
            raise ValueError(f"{p} is not a committed slice group: rerun its collect task")
        infos.append(info)
    infos.sort(key=lambda s: s.token_start)
    for a, b in zip(infos, infos[1:]):
        if b.token_start < a.token_stop:
            raise ValueError(f"slices {a.path} and {b.path} overlap: the store mixes slicings")
    return infos


def compact_range(
    store_dir: Path,
    group: Path,
    *,
    latent_start: int,
    latent_stop: int,
    slices: list[Path],
) -> RangeInfo:
    """Commit latents ``[latent_start, latent_stop)`` of ``slices`` as one CSR + stats group.

    Idempotent: an already committed ``group`` is returned untouched. The caller
    decides which slices make a complete store (the compact stage requires all).
    """
    existing = read_range_info(group)
    if existing is not None:
        log.info("range %s already committed (%d entries); nothing to do", group.name, existing.nnz)
        return existing
    infos = load_slices(slices)
    n_latents = _n_latents(store_dir, infos)
    if not 0 <= latent_start < latent_stop <= n_latents:
        raise ValueError(
            f"latent range [{latent_start}, {latent_stop}) is outside [0, {n_latents}): "
            "the compact plan and the SAE disagree on num_latents"
        )
    csr = merge_slices(infos, latent_start, latent_stop)
    _write_range(group, csr, latent_start, latent_stop, n_latents, infos)
    info = read_range_info(group)
    assert info is not None and info.nnz == csr.nnz, f"{group} missing or wrong after rename"
    log.info(
        "wrote range %s: latents [%d, %d), %d entries from %d slices",
        group.name, latent_start, latent_stop, info.nnz, len(infos),
    )  # fmt: skip
    return info


def _n_latents(store_dir: Path, infos: list[SliceInfo]) -> int:
    counts = {s.n_latents for s in infos}
    meta = read_store_meta(store_dir)
    if meta is not None:
        counts.add(meta.n_latents)
    if len(counts) != 1:
        raise ValueError(
            f"slices and store.json disagree on n_latents ({sorted(counts)}): "
            "the store mixes SAEs; delete it and rerun collect"
        )
    return counts.pop()


def _write_range(
    group: Path, csr: LatentCSR, lo: int, hi: int, n_latents: int, infos: list[SliceInfo]
) -> None:
    stats = compute_stats(csr)
    attrs = {
        "kind": "range",
        "schema": SCHEMA_VERSION,
        "latent_start": lo,
        "latent_stop": hi,
        "nnz": csr.nnz,
        "n_latents": n_latents,
        "n_slices": len(infos),
        "token_start": infos[0].token_start,
        "token_stop": infos[-1].token_stop,
        "n_quantiles": N_QUANTILES,
        "complete": True,
    }
    names = ("count", "max", "mean", "quantiles")
    write_group(group, csr, {n: (getattr(stats, n), "stats") for n in names}, attrs)
