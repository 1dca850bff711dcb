"""Is a store complete and intact? Judged from committed groups, by decoding them.

Completeness means the committed slices are exactly the planned token slices (so they
tile ``[0, n_tokens)``) and the committed ranges exactly the planned latent ranges.
Intactness means every chunk a check is asked about decodes (its crc32c matches, its
shard file exists) and the decoded arrays obey the CSR's rules (offsets monotone and
ending at the group's nnz, values > 0, token indices in the group's interval and
ascending within a latent, stats agreeing with offsets). :func:`verify` decodes every
chunk of the store; :func:`verify_latents` only what reading one latent range needs.

``python -m interp.store.verify <store dir>`` checks one store without a plan (gaps
in the tokens, every committed group decoded); ``launch/verify.py`` checks a sweep.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.plan import Task
from interp.store.format import (
    RangeInfo,
    SliceInfo,
    array_shape,
    committed_ranges,
    committed_slices,
    open_group,
    read_array,
    read_entries,
    read_offsets,
    read_store_meta,
)
from interp.store.integrity import CHECKSUM_SINCE, StoreCorruptError, is_checksummed

RANGE_STATS = {"count": 1, "max": 1, "mean": 1, "quantiles": 2}  # name -> ndim
BLOCK_ENTRIES = 1 << 24  # entries decoded at a time: verify memory stays ~100 MB


@dataclass
class VerifyReport:
    """What is missing (task indices to rerun), what is broken (with reasons, naming
    files) and which groups carry no checksums."""

    missing_slices: list[int] = field(default_factory=list)
    missing_ranges: list[int] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    damaged: list[Path] = field(default_factory=list)  # group folders to delete and redo
    unchecked: list[str] = field(default_factory=list)  # groups written without checksums
    nnz: int = 0  # entries over all committed slices
    n_slices: int = 0
    n_ranges: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing_slices or self.missing_ranges or self.corrupt)

    @property
    def summary(self) -> str:
        head = f"{self.n_slices} slices, {self.n_ranges} ranges committed, {self.nnz:,} entries"
        lines = [f"store {'OK' if self.ok else 'NOT OK'}: {head}"]
        if self.missing_slices:
            lines.append(f"  missing slices {self.missing_slices}: rerun collect for them")
        if self.missing_ranges:
            lines.append(f"  missing ranges {self.missing_ranges}: rerun compact for them")
        lines += [f"  corrupt: {c}" for c in self.corrupt]
        if self.corrupt:
            lines.append("  delete each corrupt group (and its task's manifest) and rerun its task")
        if self.unchecked:
            lines.append(f"  {self.unchecked_note}")
        return "\n".join(lines)

    @property
    def unchecked_note(self) -> str:
        return (
            f"no checksums (written before {CHECKSUM_SINCE}): {', '.join(self.unchecked)}; "
            "they decode, but a changed byte would go unnoticed: delete the store and "
            "rerun collect to rewrite it with checksums"
        )

    def add(self, path: Path, problem: str) -> None:
        self.corrupt.append(problem)
        if path not in self.damaged:
            self.damaged.append(path)


def match_tasks(
    intervals: Sequence[tuple[int, int]], tasks: Sequence[Task], total: int, what: str
) -> tuple[list[int], list[str]]:
    """Planned tasks without an exactly matching committed interval, and stray intervals."""
    pos = 0
    for t in sorted(tasks, key=lambda t: t.start):
        if t.start != pos or t.stop <= t.start:
            raise ValueError(f"{what} tasks must tile [0, {total}) in order; got {list(tasks)}")
        pos = t.stop
    if pos != total:
        raise ValueError(f"{what} tasks cover [0, {pos}), not [0, {total})")
    have = set(intervals)
    planned = {(t.start, t.stop) for t in tasks}
    missing = [t.index for t in tasks if (t.start, t.stop) not in have]
    stray = [
        f"{what} [{a}, {b}) is committed but not planned (overlapping or stale slicing)"
        for a, b in sorted(have - planned)
    ]
    return missing, stray


def verify(
    store_dir: Path,
    *,
    n_tokens: int,
    n_latents: int,
    slice_tasks: Sequence[Task] | None = None,
    range_tasks: Sequence[Task] | None = None,
) -> VerifyReport:
    """Check the committed groups of ``store_dir`` against the planned tasks, decoding
    every chunk of every group. Without ``slice_tasks`` the slices need only tile
    ``[0, n_tokens)``; without ``range_tasks`` any committed ranges are fine."""
    slices, ranges = committed_slices(store_dir), committed_ranges(store_dir)
    report = VerifyReport(n_slices=len(slices), n_ranges=len(ranges))
    slices_ok = _check_plan(report, slices, ranges, n_tokens, n_latents, slice_tasks, range_tasks)
    ranges = [r for r in ranges if 0 <= r.latent_start < r.latent_stop <= n_latents]
    bounds = sorted({r.latent_start for r in ranges} | {r.latent_stop for r in ranges})
    per_range = np.zeros(max(len(bounds) - 1, 0), np.int64)  # entries between bounds
    for s in slices:
        offsets = _checked_group(report, "slice", _check_slice, s, n_latents)
        if offsets is None:
            slices_ok = False
            continue
        report.nnz += s.nnz
        per_range += np.diff(offsets[bounds])
    for r in ranges:
        offsets = _checked_group(report, "range", _check_range, r, n_latents)
        if offsets is not None and slices_ok:
            expected = int(
                per_range[bounds.index(r.latent_start) : bounds.index(r.latent_stop)].sum()
            )
            if r.nnz != expected:
                report.add(
                    r.path, f"range {r.path.name}: nnz {r.nnz} != {expected} summed over the slices"
                )
    return report


def _check_plan(
    report: VerifyReport,
    slices: list[SliceInfo],
    ranges: list[RangeInfo],
    n_tokens: int,
    n_latents: int,
    slice_tasks: Sequence[Task] | None,
    range_tasks: Sequence[Task] | None,
) -> bool:
    """Missing and stray groups against the plan into ``report``; True if the slices
    are complete (so ranges can be checked against their sums)."""
    intervals = [(s.token_start, s.token_stop) for s in slices]
    if slice_tasks is not None:
        report.missing_slices, stray = match_tasks(intervals, slice_tasks, n_tokens, "slice")
    else:
        stray = [
            f"tokens [{a}, {b}) have no committed slice: rerun collect"
            for a, b in _gaps(intervals, n_tokens)
        ]
    complete = not (report.missing_slices or stray)
    if range_tasks is not None:
        report.missing_ranges, stray_r = match_tasks(
            [(r.latent_start, r.latent_stop) for r in ranges], range_tasks, n_latents, "range"
        )
        stray += stray_r
    report.corrupt += stray
    return complete


def _gaps(intervals: list[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    gaps, pos = [], 0
    for a, b in sorted(intervals):
        if a > pos:
            gaps.append((pos, a))
        pos = max(pos, b)
    return gaps + ([(pos, total)] if pos < total else [])


def _checked_group(
    report: VerifyReport,
    kind: str,
    check: Callable[[Any, int], np.ndarray],
    info: SliceInfo | RangeInfo,
    n_latents: int,
) -> np.ndarray | None:
    """``check`` one group; its offsets, or None with the problem added to ``report``."""
    try:
        offsets = check(info, n_latents)
    except StoreCorruptError as e:
        report.add(info.path, f"{kind} {info.path.name}: {e.problem}")
        return None
    if not is_checksummed(open_group(info.path).attrs):
        report.unchecked.append(f"{kind} {info.path.name}")
    return offsets


def _check_slice(s: SliceInfo, n_latents: int) -> np.ndarray:
    """Decode a slice group whole; its offsets. StoreCorruptError on any damage."""
    if s.n_latents != n_latents:
        raise StoreCorruptError(s.path, f"has {s.n_latents} latents, the store {n_latents}")
    group = open_group(s.path)
    offsets = _decode_csr(group, s.path, n_latents, s.nnz)
    n_tok = len(read_array(group, "tokens"))
    if n_tok != s.token_stop - s.token_start:
        raise StoreCorruptError(
            s.path, f"{n_tok} token ids for {s.token_stop - s.token_start} tokens"
        )
    return offsets


def _check_range(r: RangeInfo, n_latents: int) -> np.ndarray:
    """Decode a range group whole (CSR and stats); its offsets."""
    width = r.latent_stop - r.latent_start
    if r.n_latents != n_latents:
        raise StoreCorruptError(r.path, f"has {r.n_latents} latents, the store {n_latents}")
    group = open_group(r.path)
    offsets = _decode_csr(group, r.path, width, r.nnz)
    stats = {name: read_array(group, name) for name in RANGE_STATS}
    bad = [n for n, nd in RANGE_STATS.items() if len(stats[n]) != width or stats[n].ndim != nd]
    if bad:
        raise StoreCorruptError(r.path, f"stats arrays {bad} do not have {width} rows")
    if not np.array_equal(stats["count"], np.diff(offsets)):
        raise StoreCorruptError(r.path, f"{r.path}/count disagrees with offsets")
    return offsets


def _decode_csr(group, path: Path, width: int, nnz: int) -> np.ndarray:
    """Offsets of a group's ``width`` latents, after decoding every tok/val chunk in
    blocks of about :data:`BLOCK_ENTRIES` (each block checked by ``read_entries``)."""
    offsets = read_offsets(group, 0, width)
    if offsets[0] != 0 or offsets[-1] != nnz:
        raise StoreCorruptError(path, f"offsets run [{offsets[0]}, {offsets[-1]}], not [0, {nnz}]")
    n_tok, n_val = array_shape(group, "tok")[0], array_shape(group, "val")[0]
    if not n_tok == n_val == nnz:
        raise StoreCorruptError(path, f"nnz={nnz}, len(tok)={n_tok}, len(val)={n_val} differ")
    lo = 0
    while lo < width:
        hi = int(np.searchsorted(offsets, offsets[lo] + BLOCK_ENTRIES, side="right")) - 1
        hi = min(width, max(hi, lo + 1))
        read_entries(group, offsets[lo : hi + 1])
        lo = hi
    return offsets


def read_latents(
    store_dir: Path, a: int, b: int, runs: Sequence[tuple[int, int]] | None = None
) -> tuple[Any, Any, Any, VerifyReport]:
    """Read latents ``[a, b)`` (or the ``runs``, disjoint ascending ``[a, b)`` pieces, as
    one CSR in their order), their stats and the token ids once, each decoded and checked
    (the interpret stage's inputs, nothing else): ``(reader, csr, token ids, report)``; on
    damage csr/token ids are None and the report names the group."""
    from interp.store.csr import concat_ranges
    from interp.store.reader import StoreReader

    runs = [(a, b)] if runs is None else list(runs)
    reader = StoreReader(store_dir)
    report = VerifyReport(n_slices=len(reader.slices), n_ranges=len(reader.ranges))
    csr = token_ids = None
    try:
        csr = concat_ranges([reader.latent_range(lo, hi) for lo, hi in runs])
        for lo, hi in runs:
            reader.stats(lo, hi)
        token_ids = reader.token_ids()
    except StoreCorruptError as e:
        report.add(e.group, e.problem)
    serving = {
        rng.path: "range"
        for lo, hi in runs
        for _, _, rng in reader._plan(lo, hi)
        if rng is not None
    }
    serving |= {s.path: "slice" for s in reader.slices}
    report.unchecked = [
        f"{kind} {p.name}" for p, kind in serving.items() if not is_checksummed(open_group(p).attrs)
    ]
    return reader, csr, token_ids, report


def verify_latents(store_dir: Path, a: int, b: int) -> VerifyReport:
    """Decode and check exactly what reading latents ``[a, b)`` and the token ids
    needs (the interpret stage's inputs), nothing else: cheap next to the range's work."""
    return read_latents(store_dir, a, b)[3]


def verify_store(store_dir: Path) -> VerifyReport:
    """Every committed group of one store, without a plan: the slices must tile
    ``[0, n_tokens)`` of store.json; ranges may be any (compaction can be partial)."""
    meta = read_store_meta(store_dir)
    if meta is None:
        raise ValueError(f"{store_dir}: no store.json; not a latent store, or collect never ran")
    return verify(store_dir, n_tokens=meta.n_tokens, n_latents=meta.n_latents)


def main(argv: list[str] | None = None) -> int:
    """``python -m interp.store.verify <store dir>...``: 0 if every store is intact."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("usage: python -m interp.store.verify <latents.zarr folder>...", file=sys.stderr)
        return 2
    bad = 0
    for arg in args:
        report = verify_store(Path(arg))
        print(f"{arg}: {report.summary}")
        bad += not report.ok
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
