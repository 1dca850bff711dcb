"""Tokenise a stream of documents and pack it into fixed context windows, in bounded memory.

Documents are tokenised a batch at a time (at most :data:`BATCH_DOCS` documents and
:data:`BATCH_CHARS` characters per tokeniser call), each followed by the separator token,
and the running token stream is cut into windows of ``T`` tokens as soon as it is long
enough; only the remainder shorter than one window carries over. With ``prepend_bos`` each
window holds BOS then ``T - 1`` stream tokens. Nothing here depends on batch sizes: the
windows are a pure function of the documents, the tokenizer and the settings.

Shapes: W windows, T = ctx_len.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any, Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

BATCH_DOCS = 64
BATCH_CHARS = 2_000_000
Separator = Literal["eos", "bos", "none"]


class SpecialTokens(NamedTuple):
    """Token ids the packer inserts."""

    bos: int | None  # first token of every window, None = no BOS column
    sep: int | None  # appended after every document, None = documents run together


def special_tokens(tokenizer: Any, prepend_bos: bool, separator: Separator) -> SpecialTokens:
    """BOS and separator ids of ``tokenizer`` (a tokenizer with only one of BOS/EOS, like
    GPT-2's, uses it for both)."""
    bos_id, eos_id = tokenizer.bos_token_id, tokenizer.eos_token_id
    bos = bos_id if bos_id is not None else eos_id
    eos = eos_id if eos_id is not None else bos_id
    if prepend_bos and bos is None:
        raise ValueError("the tokenizer has no BOS or EOS token: set data.prepend_bos=false")
    sep = {"eos": eos, "bos": bos, "none": None}[separator]
    if separator != "none" and sep is None:
        raise ValueError(
            f"the tokenizer has no BOS or EOS token for data.separator={separator}: "
            "set data.separator=none"
        )
    return SpecialTokens(bos if prepend_bos else None, sep)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned dtype that holds every token id: uint16 up to 65,536 ids."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def vocab_size(tokenizer: Any) -> int:
    """Number of token ids, added tokens included."""
    return len(tokenizer)


def iter_windows(
    documents: Iterable[str],
    tokenizer: Any,
    ctx_len: int,
    *,
    prepend_bos: bool = True,
    separator: Separator = "eos",
    max_windows: int | None = None,
    dtype: np.dtype | None = None,
) -> Iterator[np.ndarray]:
    """Pack ``documents`` into windows; yields blocks [W, T] in corpus order.

    Stops after ``max_windows`` windows without pulling further documents; a final
    partial window is dropped. ``dtype`` defaults to :func:`token_dtype` of the vocabulary.
    """
    special = special_tokens(tokenizer, prepend_bos, separator)
    dtype = np.dtype(dtype or token_dtype(vocab_size(tokenizer)))
    body = ctx_len - (special.bos is not None)
    if body < 1:
        raise ValueError(f"data.ctx_len={ctx_len} leaves no room for tokens after BOS")
    sep = np.array([] if special.sep is None else [special.sep], dtype=dtype)
    pending = np.empty(0, dtype=dtype)  # stream tokens not yet in a window: < body of them
    made = 0
    if max_windows == 0:
        return
    for batch in _batches(documents):
        encoded = tokenizer(batch, add_special_tokens=False)["input_ids"]
        parts = [pending]
        for ids in encoded:
            parts += [np.asarray(ids, dtype=dtype), sep]
        stream = np.concatenate(parts)
        n = len(stream) // body
        if max_windows is not None:
            n = min(n, max_windows - made)
        if n:
            yield _frame(stream[: n * body].reshape(n, body), special.bos)
            made += n
            if made == max_windows:
                return
        pending = stream[n * body :].copy()  # copy: drop the batch's buffer


def _batches(documents: Iterable[str]) -> Iterator[list[str]]:
    """Documents grouped for one tokeniser call each; pulled lazily."""
    batch: list[str] = []
    chars = 0
    for doc in documents:
        batch.append(doc)
        chars += len(doc)
        if len(batch) >= BATCH_DOCS or chars >= BATCH_CHARS:
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def _frame(body_WB: np.ndarray, bos: int | None) -> np.ndarray:
    """[W, T]: the window bodies, behind a BOS column when ``bos`` is set."""
    if bos is None:
        return body_WB
    out_WT = np.empty((len(body_WB), body_WB.shape[1] + 1), dtype=body_WB.dtype)
    out_WT[:, 0] = bos
    out_WT[:, 1:] = body_WB
    return out_WT
