"""The sweep table: one row per latent of every sweep point, streamed into one Parquet file.

A record file (one JSON line per latent, written by the interpret stage) is parsed by
Arrow's JSON reader (C++, no Python dict per record), its nested objects are flattened
into dotted columns, and the point's columns are prepended:

    point, model, layer, hookpoint, sae_id, architecture, explainer_model   (the point)
    source, source_format   "trained" and "", or a pretrained point's path / hub id and format
    latent, status, explanation, ..., error, retries, wall_s                 (the record)
    scores.<scorer>.<metric>      every metric of every scorer that ran
    control.<scorer>.<metric>     the random-explanation control (control.explanation, ...)
    baseline.<scorer>.<metric>    the single-token baseline, when enabled
    prompt_tokens, completion_tokens, prompt_tokens_computed   (the record's ``tokens``)
    llm_calls_usage_tokenizer, llm_calls_usage_missing  (calls whose server sent no counts:
                                  counted with llm.tokenizer / recorded as 0 tokens)

Record files may disagree on columns (a scorer added, no error anywhere in one range, a
field new in this version), so the table is built in two passes over *columnar* data:
record files are parsed once into temporary Arrow files of about ``rows_per_group``
rows while their schemas are unified; then each part is conformed to the unified
schema (missing columns become nulls, ints widen to floats) and written as one Parquet
row group. Memory is bounded by one row group, whatever the number of latents.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.runs import tmp_name

ROWS_PER_GROUP = 131_072
"""Rows per Parquet row group (and per temporary part): ~100 MB of Arrow data at most."""

POINT_COLUMNS = (
    "point",
    "model",
    "layer",
    "hookpoint",
    "sae_id",
    "architecture",
    "source",
    "source_format",
    "explainer_model",
)
LEADING = (
    *POINT_COLUMNS,
    "latent",
    "status",
    "explanation",
    "n_active_tokens",
    "n_active_contexts",
    "max_act",
    "prompt_tokens",
    "completion_tokens",
    "prompt_tokens_computed",
    "llm_calls_usage_tokenizer",
    "llm_calls_usage_missing",
    "wall_s",
    "retries",
    "error",
    "raw_explanation",
)
"""Columns that come first, in this order, when present; the rest follow sorted."""

# Nested scores of the control and baseline read as <kind>.<scorer>.<metric>, like scores.
RENAMES = (("control.scores.", "control."), ("baseline.scores.", "baseline."))
TOKEN_COLUMNS = {
    "tokens.prompt": "prompt_tokens",
    "tokens.completion": "completion_tokens",
    "tokens.prompt_computed": "prompt_tokens_computed",
    "tokens.usage_tokenizer": "llm_calls_usage_tokenizer",
    "tokens.usage_missing": "llm_calls_usage_missing",
}


class RecordFileError(ValueError):
    """A committed record file cannot be read or does not hold its range's latents."""


def read_record_file(
    path: Path, start: int, stop: int, latents: Sequence[int] | None = None
) -> Any:
    """One interpret record file as a flat Arrow table (dotted columns), checked to hold
    exactly one record for every latent of ``[start, stop)`` (of ``latents``, the ids a
    selection's task holds, when given)."""
    import pyarrow as pa
    import pyarrow.json as pj

    try:
        # 1 MiB blocks: a range's file (~3 MB at 1024 latents) parses on several threads
        table = pj.read_json(path, read_options=pj.ReadOptions(block_size=1 << 20))
    except (pa.ArrowInvalid, OSError) as err:
        raise RecordFileError(
            f"{path}: cannot be read as JSON lines of records ({err}); delete it and its "
            "interpret manifest, then rerun the range"
        ) from err
    table = flatten(table)
    if "latent" not in table.column_names:
        raise RecordFileError(f"{path}: records have no 'latent' field")
    want = np.arange(start, stop) if latents is None else np.sort(np.asarray(latents, int))
    what = f"latent range [{start}, {stop})" if latents is None else f"{len(want)} selected latents"
    latents = np.sort(table.column("latent").to_numpy(zero_copy_only=False))
    if len(latents) != len(want) or not np.array_equal(latents, want):
        missing = np.setdiff1d(want, latents)
        raise RecordFileError(
            f"{path}: {len(latents)} records for {what} "
            f"(missing {_few(missing)}, duplicates or strays otherwise); delete it and its "
            "interpret manifest, then rerun the range"
        )
    return table


def flatten(table: Any) -> Any:
    """Struct columns -> dotted columns, recursively; lists (per-quantile) stay lists."""
    import pyarrow as pa

    while any(pa.types.is_struct(f.type) for f in table.schema):
        table = table.flatten()
    names = []
    for name in table.column_names:
        name = TOKEN_COLUMNS.get(name, name)
        for old, new in RENAMES:
            if name.startswith(old):
                name = new + name[len(old) :]
        names.append(name)
    return table.rename_columns(names)


def with_point_columns(table: Any, point: dict[str, Any]) -> Any:
    """Prepend the point's constant columns (dictionary-encoded in Parquet, so cheap)."""
    import pyarrow as pa

    n = table.num_rows
    for i, key in enumerate(POINT_COLUMNS):
        value = point.get(key)
        typ = pa.int64() if isinstance(value, int) else pa.string()
        if key in table.column_names:
            table = table.drop_columns([key])
        table = table.add_column(i, key, pa.repeat(pa.scalar(value, type=typ), n))
    return table


def unify(schemas: Iterable[Any]) -> Any:
    """One schema holding every column of ``schemas`` (nulls and ints widen), ordered."""
    import pyarrow as pa

    merged = pa.unify_schemas(list(schemas), promote_options="permissive")
    fields = {f.name: f for f in merged}
    prefixes = {n.rsplit(".", i)[0] for n in fields for i in range(1, n.count(".") + 1)}
    for name, f in list(fields.items()):
        if not pa.types.is_null(f.type):
            continue
        if name in prefixes:  # null where other files have an object: its fields say it
            del fields[name]
        else:  # never seen a value: strings are the safe reading
            fields[name] = pa.field(name, pa.string())
    lead = [fields[n] for n in LEADING if n in fields]
    rest = sorted((f for n, f in fields.items() if n not in LEADING), key=lambda f: f.name)
    return pa.schema(lead + rest)


def conform(table: Any, schema: Any) -> Any:
    """``table`` with exactly ``schema``'s columns: missing ones null, others cast."""
    import pyarrow as pa

    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(table.num_rows, type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


@dataclass
class TableWriter:
    """Collects flat record tables, then writes one Parquet file atomically.

    ``add`` buffers tables and spills them to temporary Arrow files of about
    ``rows_per_group`` rows under ``work_dir``; ``commit`` writes the final file row group
    by row group with the unified schema and renames it into place.
    """

    work_dir: Path
    rows_per_group: int = ROWS_PER_GROUP
    num_rows: int = 0
    _buffer: list[Any] = field(default_factory=list)
    _buffered: int = 0
    _parts: list[Path] = field(default_factory=list)
    _schemas: list[Any] = field(default_factory=list)

    def add(self, table: Any) -> None:
        self._buffer.append(table)
        self._buffered += table.num_rows
        self.num_rows += table.num_rows
        if self._buffered >= self.rows_per_group:
            self._spill()

    def _spill(self) -> None:
        import pyarrow as pa
        import pyarrow.feather as feather

        if not self._buffer:
            return
        part = pa.concat_tables(self._buffer, promote_options="permissive")
        self._buffer, self._buffered = [], 0
        path = self.work_dir / f"part-{len(self._parts):06d}.arrow"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        feather.write_feather(part, path, compression="uncompressed")
        self._parts.append(path)
        self._schemas.append(part.schema)

    def commit(self, out: Path) -> Any:
        """Write every part to ``out`` (Parquet, zstd) atomically; returns the schema."""
        import pyarrow.feather as feather
        import pyarrow.parquet as pq

        self._spill()
        if not self._parts:
            raise ValueError("the sweep table would be empty: no record files were added")
        schema = unify(self._schemas)
        tmp = tmp_name(out)
        try:
            with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
                for path in self._parts:
                    part = conform(feather.read_table(path, memory_map=True), schema)
                    writer.write_table(part, row_group_size=self.rows_per_group)
                    del part
                    path.unlink()
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
            shutil.rmtree(self.work_dir, ignore_errors=True)
        return schema


def iter_batches(path: Path, columns: list[str] | None = None) -> Iterator[Any]:
    """The table's rows as Arrow record batches (one row group at a time)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    cols = None if columns is None else [c for c in columns if c in names]
    yield from pf.iter_batches(columns=cols, batch_size=8192)


def _few(values: np.ndarray, n: int = 8) -> str:
    head = ", ".join(str(int(v)) for v in values[:n])
    return (
        head + (f", ... ({len(values)} in all)" if len(values) > n else "")
        if len(values)
        else "none"
    )
