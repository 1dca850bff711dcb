"""Corpus -> tokenised, packed context windows; deterministic slices by index.

- :mod:`interp.data.corpus`: document sources behind one :class:`Corpus` interface
  (bundled offline text, local text/parquet/jsonl files, Hugging Face datasets).
- :mod:`interp.data.pack`: streamed tokenisation and packing into windows (BOS modes).
- :mod:`interp.data.tokens`: the run's prepared token file and its split/slice readers.

Names resolve lazily (PEP 562): importing the package (as the light config
module does for its ``config`` submodule) imports none of its heavy modules.
"""

from __future__ import annotations

from interp.lazy import lazy_getattr

_EXPORTS = {
    "DataConfig": "interp.data.config",
    "Corpus": "interp.data.corpus",
    "Documents": "interp.data.corpus",
    "HFDataset": "interp.data.corpus",
    "TableFiles": "interp.data.corpus",
    "TextFiles": "interp.data.corpus",
    "build_corpus": "interp.data.corpus",
    "bundled_files": "interp.data.corpus",
    "iter_documents": "interp.data.corpus",
    "iter_windows": "interp.data.pack",
    "special_tokens": "interp.data.pack",
    "token_dtype": "interp.data.pack",
    "TokenFile": "interp.data.tokens",
    "TokenSource": "interp.data.tokens",
    "ensure_tokens": "interp.data.tokens",
    "load_windows": "interp.data.tokens",
    "open_windows": "interp.data.tokens",
    "pack_windows": "interp.data.tokens",
    "required_windows": "interp.data.tokens",
    "slice_windows": "interp.data.tokens",
    "split_windows": "interp.data.tokens",
    "write_token_file": "interp.data.tokens",
}
__all__ = sorted(_EXPORTS)


__getattr__ = lazy_getattr(__name__, _EXPORTS)
