"""The selected latents of a point, resolved at run time, the same for every array task.

:func:`resolve` turns a parsed ``interpret.latents`` (:mod:`interp.interpret.selection`,
where the forms and the ``sample`` / ``stratified`` rules are written down) into the
ordered ids it selects; a sample reads the compacted store's per-latent active-token
counts (:func:`store_counts`). Every array task calls it with the same inputs, gets the
same list and takes its positions ``[task.start, task.stop)``. Deterministic: numpy's
``default_rng((seed, stream))``, no global state.

Legend: ``L`` latents of the dictionary, ``A`` alive latents, ``N`` asked for.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from interp.interpret.selection import STRATA, Selection

_SAMPLE_STREAM, _STRATIFIED_STREAM = 0x5A, 0x57  # independent draws per mode


def resolve(
    sel: Selection,
    width: int,
    counts: Callable[[], np.ndarray],
    min_count: int,
    seed: int = 0,
) -> np.ndarray:
    """The ids ``sel`` selects from a dictionary of ``width`` latents, ascending.

    ``counts()`` [L] int: active tokens per latent (read only for a sample);
    ``min_count``: the fewest a latent needs to be *alive*.
    """
    problem = sel.problem(width)
    if problem and not (sel.mode == "range" and sel.start == 0):
        raise ValueError(problem)
    if sel.mode == "all":
        return np.arange(width, dtype=np.int64)
    if sel.mode == "range":
        return np.arange(sel.start, min(sel.stop, width), dtype=np.int64)
    if sel.mode in ("list", "file"):
        return np.asarray(sel.ids, dtype=np.int64)
    count_L = np.asarray(counts())
    assert len(count_L) == width, f"{len(count_L)} counts for a dictionary of {width}"
    alive_A = np.flatnonzero(count_L >= min_count)
    if sel.mode == "sample":
        return sample(alive_A, sel.n, seed)
    return stratified(alive_A, count_L[alive_A], sel.n, seed)


def sample(alive_A: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``alive_A`` uniformly without replacement (all of them if fewer)."""
    rng = np.random.default_rng((seed, _SAMPLE_STREAM))
    take = min(n, len(alive_A))
    return np.sort(rng.choice(alive_A, size=take, replace=False)).astype(np.int64)


def stratified(alive_A: np.ndarray, count_A: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` of ``alive_A`` spread over log-spaced firing-frequency bins (module
    :mod:`interp.interpret.selection` states the rule)."""
    if len(alive_A) <= n:
        return np.sort(alive_A).astype(np.int64)
    bins_B = frequency_bins(count_A, min(n, STRATA))
    members = [alive_A[bins_B == b] for b in range(int(bins_B.max(initial=0)) + 1)]
    quota = water_fill([len(m) for m in members], n)
    rng = np.random.default_rng((seed, _STRATIFIED_STREAM))
    picks = [rng.choice(m, size=q, replace=False) for m, q in zip(members, quota) if q]
    return np.sort(np.concatenate(picks)).astype(np.int64)


def frequency_bins(count_A: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each alive latent: ``n_bins`` equal-width bins of log(count) between the
    smallest and the largest count (all in bin 0 when they are equal)."""
    log_A = np.log(count_A.astype(np.float64))
    lo, hi = float(log_A.min()), float(log_A.max())
    if hi <= lo:
        return np.zeros(len(count_A), np.int64)
    edges = np.linspace(lo, hi, n_bins + 1)[1:-1]
    return np.searchsorted(edges, log_A, side="right").astype(np.int64)


def water_fill(sizes: list[int], n: int) -> list[int]:
    """How many to take from each bin: equal shares of ``n``; a bin smaller than its
    share gives all it has and the rest goes to the larger bins (smallest bin first)."""
    quota = [0] * len(sizes)
    left, remaining = len(sizes), n
    for b in sorted(range(len(sizes)), key=lambda b: (sizes[b], b)):
        quota[b] = min(sizes[b], math.ceil(remaining / left))
        remaining -= quota[b]
        left -= 1
    return quota


def store_counts(store_dir: Path, width: int) -> np.ndarray:
    """Active tokens of every latent ``[0, width)`` from the store's per-latent stats
    (stored by compact; computed from the slices where a range is not compacted)."""
    from interp.store.reader import StoreReader

    return StoreReader(store_dir).stats(0, width).count


def runs(ids: np.ndarray) -> list[tuple[int, int]]:
    """Ascending ``ids`` as maximal contiguous ``[a, b)`` runs (one store read each)."""
    if len(ids) == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(ids)]])
    return [(int(ids[a]), int(ids[b - 1]) + 1) for a, b in zip(starts, stops)]
