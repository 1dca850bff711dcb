"""Corpus -> packed context windows, and deterministic slices."""

from interp.data.corpus import (
    bundled_files,
    ensure_tokens,
    iter_documents,
    load_windows,
    pack_windows,
    split_windows,
)

__all__ = [
    "bundled_files",
    "ensure_tokens",
    "iter_documents",
    "load_windows",
    "pack_windows",
    "split_windows",
]
