"""Zarr latent store: a writer per token slice, compaction per latent range, readers, checks.

See :mod:`interp.store.format` for the on-disk layout and shared/reference/zarr-store.md
for the measurements behind it.
"""

from interp.store.compact import compact_range
from interp.store.csr import LatentActs, LatentCSR, LatentStats, compute_stats, sort_by_latent
from interp.store.format import (
    RangeInfo,
    SliceInfo,
    StoreMeta,
    check_store_meta,
    committed_ranges,
    committed_slices,
    read_range_info,
    read_slice_info,
    read_store_meta,
    write_store_meta,
)
from interp.store.integrity import StoreCorruptError
from interp.store.reader import StoreReader
from interp.store.verify import VerifyReport, match_tasks, verify, verify_latents, verify_store
from interp.store.writer import token_dtype_for, write_slice

__all__ = [
    "LatentActs",
    "LatentCSR",
    "LatentStats",
    "RangeInfo",
    "SliceInfo",
    "StoreMeta",
    "StoreCorruptError",
    "StoreReader",
    "VerifyReport",
    "committed_ranges",
    "committed_slices",
    "compact_range",
    "compute_stats",
    "match_tasks",
    "read_range_info",
    "read_slice_info",
    "check_store_meta",
    "read_store_meta",
    "sort_by_latent",
    "token_dtype_for",
    "verify",
    "verify_latents",
    "verify_store",
    "write_slice",
    "write_store_meta",
]
