"""Is a store complete and consistent? Judged from committed groups, never from files.

Completeness means the committed slices are exactly the planned token slices (so they
tile ``[0, n_tokens)``) and the committed ranges exactly the planned latent ranges.
Consistency is checked from each group's offsets (read whole, once) and array
shapes, so verifying never decompresses tok or val.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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
)

RANGE_STATS = {"count": 1, "max": 1, "mean": 1, "quantiles": 2}  # name -> ndim


@dataclass
class VerifyReport:
    """What is missing (task indices to rerun) and what is broken (with reasons)."""

    missing_slices: list[int] = field(default_factory=list)
    missing_ranges: list[int] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    nnz: int = 0  # entries over all committed slices
    n_slices: int = 0
    n_ranges: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing_slices or self.missing_ranges or self.corrupt)

    @property
    def summary(self) -> str:
        head = f"{self.n_slices} slices, {self.n_ranges} ranges committed, {self.nnz:,} entries"
        if self.ok:
            return f"store OK: {head}"
        lines = [f"store NOT OK: {head}"]
        if self.missing_slices:
            lines.append(f"  missing slices {self.missing_slices}: rerun collect for them")
        if self.missing_ranges:
            lines.append(f"  missing ranges {self.missing_ranges}: rerun compact for them")
        lines += [f"  corrupt: {c}" for c in self.corrupt]
        if self.corrupt:
            lines.append("  delete each corrupt group and rerun its task")
        return "\n".join(lines)


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
    slice_tasks: Sequence[Task],
    range_tasks: Sequence[Task],
) -> VerifyReport:
    """Check the committed groups of ``store_dir`` against the planned tasks."""
    slices, ranges = committed_slices(store_dir), committed_ranges(store_dir)
    report = VerifyReport(n_slices=len(slices), n_ranges=len(ranges))
    report.missing_slices, stray_s = match_tasks(
        [(s.token_start, s.token_stop) for s in slices], slice_tasks, n_tokens, "slice"
    )
    report.missing_ranges, stray_r = match_tasks(
        [(r.latent_start, r.latent_stop) for r in ranges], range_tasks, n_latents, "range"
    )
    report.corrupt += stray_s + stray_r
    ranges = [r for r in ranges if 0 <= r.latent_start < r.latent_stop <= n_latents]
    bounds = sorted({r.latent_start for r in ranges} | {r.latent_stop for r in ranges})
    per_range = np.zeros(max(len(bounds) - 1, 0), np.int64)  # entries between bounds
    slices_ok = not (report.missing_slices or stray_s)
    for s in slices:
        problem, at_bounds = _check_slice(s, n_latents, bounds)
        if problem:
            report.corrupt.append(f"slice {s.path.name}: {problem}")
            slices_ok = False
            continue
        report.nnz += s.nnz
        per_range += np.diff(at_bounds)
    for r in ranges:
        problem = _check_range(r, n_latents)
        if not problem and slices_ok:
            expected = int(
                per_range[bounds.index(r.latent_start) : bounds.index(r.latent_stop)].sum()
            )
            if r.nnz != expected:
                problem = f"nnz {r.nnz} != {expected} summed over the slices"
        if problem:
            report.corrupt.append(f"range {r.path.name}: {problem}")
    return report


def _check_slice(s: SliceInfo, n_latents: int, bounds: list[int]) -> tuple[str, np.ndarray]:
    """Reason the slice is broken ('' if fine), and its offsets at the range boundaries."""
    if s.n_latents != n_latents:
        return f"has {s.n_latents} latents, the store {n_latents}", np.empty(0)
    try:
        group = open_group(s.path)
        offsets = np.asarray(read_array(group, "offsets"), np.int64)
        problem = _check_csr(group, offsets, n_latents + 1, s.nnz)
        n_tok = array_shape(group, "tokens")[0]
    except Exception as e:  # a damaged chunk raises anything from codecs to zarr
        return f"unreadable ({type(e).__name__}: {e})", np.empty(0)
    if not problem and n_tok != s.token_stop - s.token_start:
        problem = f"{n_tok} token ids for {s.token_stop - s.token_start} tokens"
    return problem, offsets[bounds] if not problem else np.empty(0)


def _check_range(r: RangeInfo, n_latents: int) -> str:
    width = r.latent_stop - r.latent_start
    if r.n_latents != n_latents:
        return f"has {r.n_latents} latents, the store {n_latents}"
    try:
        group = open_group(r.path)
        offsets = np.asarray(read_array(group, "offsets"), np.int64)
        problem = _check_csr(group, offsets, width + 1, r.nnz)
        shapes = {name: array_shape(group, name) for name in RANGE_STATS}
        count = read_array(group, "count") if not problem else None
    except Exception as e:
        return f"unreadable ({type(e).__name__}: {e})"
    if problem:
        return problem
    bad = [n for n, nd in RANGE_STATS.items() if shapes[n][0] != width or len(shapes[n]) != nd]
    if bad:
        return f"stats arrays {bad} do not have {width} rows"
    if not np.array_equal(count, np.diff(offsets)):
        return "count disagrees with offsets"
    return ""


def _check_csr(group, offsets: np.ndarray, length: int, nnz: int) -> str:
    if len(offsets) != length:
        return f"offsets has {len(offsets)} entries, expected {length}"
    if offsets[0] != 0 or np.any(np.diff(offsets) < 0):
        return "offsets not monotone from 0"
    n_tok, n_val = array_shape(group, "tok")[0], array_shape(group, "val")[0]
    if not offsets[-1] == nnz == n_tok == n_val:
        return f"offsets[-1]={offsets[-1]}, nnz={nnz}, len(tok)={n_tok}, len(val)={n_val} differ"
    return ""
