"""Corpus -> tokenised, packed context windows; deterministic slices by index.

- :mod:`interp.data.corpus`: document sources behind one :class:`Corpus` interface
  (bundled offline text, local text/parquet/jsonl files, Hugging Face datasets).
- :mod:`interp.data.pack`: streamed tokenisation and packing into windows (BOS modes).
- :mod:`interp.data.tokens`: the run's prepared token file and its split/slice readers.
"""

from interp.data.corpus import (
    Corpus,
    Documents,
    HFDataset,
    TableFiles,
    TextFiles,
    build_corpus,
    bundled_files,
    iter_documents,
)
from interp.data.pack import iter_windows, special_tokens, token_dtype
from interp.data.tokens import (
    TokenFile,
    ensure_tokens,
    load_windows,
    open_windows,
    pack_windows,
    required_windows,
    slice_windows,
    split_windows,
    write_token_file,
)

__all__ = [
    "Corpus",
    "Documents",
    "HFDataset",
    "TableFiles",
    "TextFiles",
    "TokenFile",
    "build_corpus",
    "bundled_files",
    "ensure_tokens",
    "iter_documents",
    "iter_windows",
    "load_windows",
    "open_windows",
    "pack_windows",
    "required_windows",
    "slice_windows",
    "special_tokens",
    "split_windows",
    "token_dtype",
    "write_token_file",
]
