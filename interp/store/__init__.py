"""Zarr latent store: a writer per token slice, compaction per latent range, readers, checks.

See :mod:`interp.store.format` for the on-disk layout and shared/reference/zarr-store.md
for the measurements behind it.

Names resolve lazily (PEP 562): importing the package (as the light config
module does for its ``config`` submodule) imports none of its heavy modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "compact_range": "interp.store.compact",
    "CollectConfig": "interp.store.config",
    "LatentActs": "interp.store.csr",
    "LatentCSR": "interp.store.csr",
    "LatentStats": "interp.store.csr",
    "compute_stats": "interp.store.csr",
    "sort_by_latent": "interp.store.csr",
    "RangeInfo": "interp.store.format",
    "SliceInfo": "interp.store.format",
    "StoreMeta": "interp.store.format",
    "check_store_meta": "interp.store.format",
    "committed_ranges": "interp.store.format",
    "committed_slices": "interp.store.format",
    "read_range_info": "interp.store.format",
    "read_slice_info": "interp.store.format",
    "read_store_meta": "interp.store.format",
    "write_store_meta": "interp.store.format",
    "StoreCorruptError": "interp.store.integrity",
    "StoreReader": "interp.store.reader",
    "VerifyReport": "interp.store.verify",
    "match_tasks": "interp.store.verify",
    "verify": "interp.store.verify",
    "verify_latents": "interp.store.verify",
    "verify_store": "interp.store.verify",
    "token_dtype_for": "interp.store.writer",
    "write_slice": "interp.store.writer",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interp.store' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
