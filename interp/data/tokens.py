"""The prepared token file of a sweep point, and deterministic slices of it.

``tokens.npy`` (one per data config and tokenizer; a :class:`TokenSource` names it)
holds the packed windows [W, T], uint16 or uint32 by vocabulary size, shuffled once with
``data.shuffle_seed`` so every part of it mixes sources. It is built once, under a file
lock, in bounded memory: windows stream to a temporary raw file, are permuted into a
temporary ``.npy`` chunk by chunk, and the result is renamed into place. Readers
memory-map it.

Training uses the first windows, collection the next ones: the two never overlap. A
split's token ``t`` is ``load_windows(source, split).reshape(-1)[t]``, so array task i with
token interval ``[start, stop)`` always sees the same tokens (:func:`slice_windows`).

Shapes: W windows, T = ctx_len.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from interp.data.config import DataConfig
from interp.data.corpus import Corpus, build_corpus
from interp.data.pack import iter_windows, token_dtype, vocab_size
from interp.runs import remove_stale_tmp_of, tmp_name

log = logging.getLogger(__name__)

Split = Literal["train", "collect"]
PERMUTE_TOKENS = 1 << 22  # tokens gathered per step of the shuffle


class TokenFile(NamedTuple):
    """What :func:`write_token_file` committed."""

    path: Path
    num_windows: int
    ctx_len: int
    dtype: np.dtype
    exhausted: bool  # the corpus ended before max_tokens


@dataclass(frozen=True)
class TokenSource:
    """A sweep point's token file and what its splits are made of (the stages build it
    from the run: :func:`interp.stages.inputs.token_source`)."""

    file: Path
    """The committed ``tokens.npy`` (built on first use)."""
    data: DataConfig
    """The corpus, window length and shuffle it is built from (``data.*``)."""
    tokenizer: str
    """The model whose tokenizer builds it (``model.name``)."""
    train_tokens: int
    """Tokens of the train split (``train.num_tokens``), the first windows."""
    collect_tokens: int
    """Tokens of the collect split (``collect.num_tokens``), the windows after them."""


def write_token_file(
    out: Path, corpus: Corpus, tokenizer: Any, cfg: DataConfig, *, min_windows: int = 1
) -> TokenFile:
    """Tokenise ``corpus`` into ``out`` (.npy [W, T], shuffled), committed atomically.

    Raises ``ValueError`` when the corpus yields fewer than ``min_windows`` windows, and
    then commits nothing: the data id hashes the config (path strings, not file contents),
    so a committed short file would be reused after text is added to the same paths.
    """
    dtype = token_dtype(vocab_size(tokenizer))
    max_windows = cfg.max_tokens // cfg.ctx_len
    log.info("tokenising %s into %d-token windows -> %s", corpus.describe(), cfg.ctx_len, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    raw = tmp_name(out)
    try:
        n = _write_raw(raw, _windows(corpus, tokenizer, cfg, dtype), max_windows * cfg.ctx_len)
        _check_length(n, max(1, min_windows), cfg, corpus)  # before the commit
        _permute_into(out, raw, (n, cfg.ctx_len), dtype, cfg.shuffle_seed)
    finally:
        raw.unlink(missing_ok=True)
    whole = " (the whole corpus: shorter than data.max_tokens)" if n < max_windows else ""
    log.info("corpus: %d windows x %d tokens, %s%s", n, cfg.ctx_len, dtype.name, whole)
    return TokenFile(out, n, cfg.ctx_len, dtype, n < max_windows)


def _windows(
    corpus: Corpus, tokenizer: Any, cfg: DataConfig, dtype: np.dtype | None = None
) -> Iterator[np.ndarray]:
    """Blocks [W, T] of the config's packing of ``corpus``, up to its token budget."""
    return iter_windows(
        corpus.documents(),
        tokenizer,
        cfg.ctx_len,
        prepend_bos=cfg.prepend_bos,
        separator=cfg.separator,
        max_windows=cfg.max_tokens // cfg.ctx_len,
        dtype=dtype,
    )


def _write_raw(raw: Path, blocks: Iterable[np.ndarray], total_tokens: int) -> int:
    """Append every block's bytes to ``raw``; returns the number of windows."""
    from tqdm import tqdm

    n = 0
    with (
        open(raw, "wb") as f,
        tqdm(total=total_tokens, desc="tokenise", unit="tok", unit_scale=True, leave=False) as bar,
    ):
        for block_WT in blocks:
            f.write(block_WT.tobytes())
            n += len(block_WT)
            bar.update(block_WT.size)
    return n


def _permute_into(out: Path, raw: Path, shape: tuple[int, int], dtype: np.dtype, seed: int) -> None:
    """Write ``raw``'s windows to ``out`` in the order of a seeded permutation, via a
    temporary ``.npy`` renamed into place; memory stays one chunk of windows."""
    n, ctx = shape
    src_WT = np.memmap(raw, dtype=dtype, mode="r", shape=shape)
    perm = np.random.default_rng(seed).permutation(n)
    tmp = tmp_name(out)
    try:
        dst_WT = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        step = max(1, PERMUTE_TOKENS // ctx)
        for i in range(0, n, step):
            idx = perm[i : i + step]
            order = np.argsort(idx)  # read the source in file order
            block_WT = np.empty((len(idx), ctx), dtype=dtype)
            block_WT[order] = src_WT[idx[order]]
            dst_WT[i : i + len(idx)] = block_WT
        dst_WT.flush()
        del dst_WT
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        del src_WT


def _check_length(n: int, need: int, cfg: DataConfig, corpus: Corpus) -> None:
    if n >= need:
        return
    raise ValueError(
        f"the corpus ({corpus.describe()}) gave {n} windows of {cfg.ctx_len} tokens "
        f"({n * cfg.ctx_len} tokens) but {need} windows ({need * cfg.ctx_len} tokens) are "
        "needed: add text (data.paths / data.source / a larger dataset), or lower "
        "train.num_tokens / collect.num_tokens (or data.ctx_len)"
    )


# ----------------------------------------------------------------------------- run folder


def split_windows(src: TokenSource, split: Split) -> tuple[int, int]:
    """Window interval [start, stop) of a split: train first, then collect."""
    n_train = -(-src.train_tokens // src.data.ctx_len)
    if split == "train":
        return 0, n_train
    return n_train, n_train + src.collect_tokens // src.data.ctx_len


def required_windows(src: TokenSource) -> int:
    """Windows the point's train and collect splits need together."""
    return split_windows(src, "collect")[1]


def ensure_tokens(src: TokenSource) -> Path:
    """Build the point's token file once (atomically, under a lock); return its path.

    Raises ``ValueError`` naming the fix when the corpus is shorter than the train and
    collect splits need together, so a short corpus stops the first stage before work;
    nothing is committed then, so adding text and rerunning rebuilds the file.
    """
    out = src.file
    if out.exists():
        return out
    with _locked(out):
        if out.exists():  # another process built it while we waited
            return out
        remove_stale_tmp_of(out)
        from interp.models import load_tokenizer

        tokenizer = load_tokenizer(src.tokenizer)
        write_token_file(
            out, build_corpus(src.data), tokenizer, src.data, min_windows=required_windows(src)
        )
    return out


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_name(out.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def open_windows(src: TokenSource) -> np.ndarray:
    """Every window of the point's token file, [W, T] memory-mapped, checked against the
    config (window length, enough windows for both splits)."""
    ctx = src.data.ctx_len
    arr_WT = np.load(ensure_tokens(src), mmap_mode="r")
    if arr_WT.ndim != 2 or arr_WT.shape[1] != ctx:
        raise ValueError(
            f"{src.file} holds windows of shape {arr_WT.shape}, not [n, "
            f"{ctx}]: it was written by another config; delete it to rebuild"
        )
    need = required_windows(src)
    if len(arr_WT) < need:  # a file committed before short corpora were refused
        raise ValueError(
            f"{src.file} has {len(arr_WT)} windows of {ctx} tokens but "
            f"the train and collect splits need {need} ({need * ctx} tokens): add "
            "text (data.paths / data.source / a larger dataset) and delete that file so it is "
            "rebuilt, or lower train.num_tokens / collect.num_tokens"
        )
    return arr_WT


def load_windows(src: TokenSource, split: Split) -> np.ndarray:
    """The split's windows, [W, T] (memory-mapped). Token t of a split is
    ``windows.reshape(-1)[t]``."""
    start, stop = split_windows(src, split)
    return open_windows(src)[start:stop]


def slice_windows(src: TokenSource, split: Split, start: int, stop: int) -> np.ndarray:
    """Tokens ``[start, stop)`` of a split as its windows [W, T] (memory-mapped): array
    task i with that token interval always gets these tokens. Both ends must be multiples
    of ``ctx_len``."""
    ctx = src.data.ctx_len
    windows_WT = load_windows(src, split)
    if start % ctx or stop % ctx or not 0 <= start <= stop:
        raise ValueError(f"token slice [{start}, {stop}) is not aligned to ctx_len={ctx}")
    if stop > windows_WT.size:
        raise ValueError(
            f"token slice [{start}, {stop}) ends past the {split} split's {windows_WT.size} "
            "tokens: lower the slice or raise the split's num_tokens"
        )
    return windows_WT[start // ctx : stop // ctx]


def pack_windows(cfg: DataConfig, tokenizer: Any) -> np.ndarray:
    """Tokenise ``cfg``'s corpus into shuffled windows [W, T] in memory (small corpora,
    benchmarks); the same windows as the token file of that config."""
    blocks = list(_windows(build_corpus(cfg), tokenizer, cfg))
    if not blocks:
        raise ValueError("the corpus produced no complete window: lower data.ctx_len")
    arr_WT = np.concatenate(blocks)
    return arr_WT[np.random.default_rng(cfg.shuffle_seed).permutation(len(arr_WT))]
