"""Latent-major CSR in plain numpy: build from TopK outputs, merge parts, per-latent stats.

No I/O here, so every piece is testable against a brute-force reference. Shapes:
``N`` tokens, ``k`` active latents per token, ``R`` latents in a range, ``nnz`` entries.

A CSR over latents ``[a, b)`` is ``offsets [R+1] int64`` (``offsets[0] == 0``),
``tok [nnz] uint32`` (global token index, ascending within each latent) and
``val [nnz] float16`` (always finite and > 0). Latent ``a + i`` owns
``tok[offsets[i]:offsets[i+1]]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

F16_MAX = float(np.finfo(np.float16).max)
N_QUANTILES = 10  # decile edges: quantiles[:, 0] = min, quantiles[:, -1] = max


class LatentCSR(NamedTuple):
    """Activations of a contiguous latent range, latent-major."""

    offsets: np.ndarray  # [R+1] int64, relative to the first latent of the range
    tok: np.ndarray  # [nnz] uint32 global token index, ascending within a latent
    val: np.ndarray  # [nnz] float16, finite and > 0

    @property
    def num_latents(self) -> int:
        return len(self.offsets) - 1

    @property
    def nnz(self) -> int:
        return int(self.offsets[-1])

    def latent(self, i: int) -> LatentActs:
        """Activations of the ``i``-th latent of the range (range-local index)."""
        lo, hi = int(self.offsets[i]), int(self.offsets[i + 1])
        return LatentActs(self.tok[lo:hi], self.val[lo:hi])


class LatentActs(NamedTuple):
    """Every activation of one latent: where (global token index) and how strongly."""

    tok: np.ndarray  # [n] uint32, ascending
    val: np.ndarray  # [n] float16, > 0


class LatentStats(NamedTuple):
    """Per-latent firing statistics, for example selection and dead-latent counts."""

    count: np.ndarray  # [R] int64 active tokens
    max: np.ndarray  # [R] float32 (0 where count == 0)
    mean: np.ndarray  # [R] float32 mean over active tokens (0 where count == 0)
    quantiles: np.ndarray  # [R, N_QUANTILES+1] float16 equal-count edges (stored values, exact)


def empty_csr(num_latents: int) -> LatentCSR:
    return LatentCSR(
        np.zeros(num_latents + 1, np.int64), np.empty(0, np.uint32), np.empty(0, np.float16)
    )


def to_float16(val: np.ndarray) -> tuple[np.ndarray, int]:
    """Cast to float16, clipping at its max so large activations never become inf.

    Returns the values and how many were clipped (worth a warning: it loses magnitude).
    """
    val = np.asarray(val, dtype=np.float32)
    over = val > F16_MAX
    n_clipped = int(np.count_nonzero(over))
    if n_clipped:
        val = np.where(over, np.float32(F16_MAX), val)
    return val.astype(np.float16), n_clipped


def stable_argsort_ids(ids: np.ndarray, num_ids: int) -> np.ndarray:
    """Stable argsort of non-negative ids with numpy's radix sort (16-bit keys only).

    numpy uses radix sort only for keys of <= 16 bits; wider keys fall back to timsort,
    ~5x slower. Ids < 2^32 are sorted as two stable 16-bit passes (LSD radix).
    """
    assert num_ids <= 2**32
    if num_ids <= 2**16:
        return np.argsort(ids.astype(np.uint16, copy=False), kind="stable")
    order = np.argsort((ids & 0xFFFF).astype(np.uint16), kind="stable")
    high = (ids[order] >> 16).astype(np.uint16)
    return order[np.argsort(high, kind="stable")]


def sort_by_latent(
    token_start: int,
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    keep: np.ndarray,
    num_latents: int,
) -> tuple[LatentCSR, int]:
    """TopK outputs of tokens ``token_start + i`` -> CSR over all ``num_latents`` latents.

    Drops entries of tokens with ``keep=False`` and values that are not > 0 after the
    float16 cast (NaN, negatives, zeros and underflows), so every stored value is a
    real activation. Returns the CSR and the number of values clipped to float16 max.
    """
    n, k = latent_idx.shape
    assert n * k < 2**32, "split the slice: entry positions are computed in uint32"
    val16, n_clipped = to_float16(latent_val.reshape(-1))
    mask = (val16 > 0) & np.repeat(np.asarray(keep, bool), k)
    # Dropped entries get the sentinel id num_latents and sort to the end, which is
    # ~3x cheaper than compressing every array with the boolean mask first.
    ids = latent_idx.reshape(-1).astype(np.uint16 if num_latents < 2**16 else np.int64)
    ids[~mask] = num_latents
    nnz = int(np.count_nonzero(mask))
    order = stable_argsort_ids(ids, num_latents + 1)[:nnz]
    tok = (order.astype(np.uint32) // np.uint32(k)) + np.uint32(token_start)  # token-major
    counts = np.bincount(ids, minlength=num_latents + 1)[:num_latents]
    offsets = np.zeros(num_latents + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    return LatentCSR(offsets, tok, val16[order]), n_clipped


def merged_offsets(part_offsets: list[np.ndarray]) -> np.ndarray:
    """Offsets of the token-ordered merge of parts that cover the same latent range."""
    assert part_offsets, "nothing to merge"
    counts = sum(np.diff(o) for o in part_offsets)
    out = np.zeros(len(part_offsets[0]), np.int64)
    np.cumsum(counts, out=out[1:])
    return out


def scatter_part(out: LatentCSR, fill: np.ndarray, part: LatentCSR) -> None:
    """Place ``part``'s entries after those already placed for each latent.

    ``fill[i]`` is the next free position of latent ``i`` in ``out`` and is advanced.
    Parts scattered in token order give token-sorted latents: an O(nnz) merge, no sort.
    """
    counts = np.diff(part.offsets)
    if part.nnz == 0:
        return
    dest = np.repeat(fill - part.offsets[:-1], counts) + np.arange(part.nnz)
    out.tok[dest] = part.tok
    out.val[dest] = part.val
    fill += counts


def merge_parts(parts: list[LatentCSR]) -> LatentCSR:
    """Token-ordered merge of CSR parts over the same latents (parts given in token order)."""
    offsets = merged_offsets([p.offsets for p in parts])
    nnz = int(offsets[-1])
    out = LatentCSR(offsets, np.empty(nnz, np.uint32), np.empty(nnz, np.float16))
    fill = offsets[:-1].copy()
    for part in parts:
        scatter_part(out, fill, part)
    assert np.array_equal(fill, offsets[1:])
    return out


def concat_ranges(parts: list[LatentCSR]) -> LatentCSR:
    """Join CSRs of adjacent latent ranges ``[a, b), [b, c), ...`` into one over ``[a, c)``."""
    if len(parts) == 1:
        return parts[0]
    shifts = np.cumsum([0] + [p.nnz for p in parts[:-1]])
    offsets = np.concatenate(
        [parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, shifts)]
    )
    tok = np.concatenate([p.tok for p in parts])
    val = np.concatenate([p.val for p in parts])
    return LatentCSR(offsets, tok, val)


def sorted_values(csr: LatentCSR) -> np.ndarray:
    """Values sorted ascending within each latent (latent segments stay in place).

    Positive float16 bit patterns sort like their values, so one integer sort of
    ``(latent << 16) | bits`` sorts every latent at once, with no per-latent loop.
    """
    assert not np.any(csr.val < 0), "stored values must be >= 0"
    local = np.repeat(np.arange(csr.num_latents, dtype=np.uint64), np.diff(csr.offsets))
    keys = (local << np.uint64(16)) | csr.val.view(np.uint16).astype(np.uint64)
    if csr.num_latents <= 2**16:
        keys = keys.astype(np.uint32)
    keys.sort()
    return (keys & 0xFFFF).astype(np.uint16).view(np.float16)


def compute_stats(csr: LatentCSR, n_quantiles: int = N_QUANTILES) -> LatentStats:
    """Count, max, mean and equal-count quantile edges of every latent, vectorised."""
    count = np.diff(csr.offsets)
    active = count > 0
    sums = np.concatenate([[0.0], np.cumsum(csr.val, dtype=np.float64)])
    mean = np.zeros(len(count), np.float32)
    mean[active] = (sums[csr.offsets[1:]] - sums[csr.offsets[:-1]])[active] / count[active]
    srt = sorted_values(csr)
    steps = np.arange(n_quantiles + 1) / n_quantiles
    rank = np.floor(steps[None, :] * (np.maximum(count, 1) - 1)[:, None]).astype(np.int64)
    # Nearest-rank edges are stored values, so float16 holds them exactly at half the size.
    quantiles = np.zeros((len(count), n_quantiles + 1), np.float16)
    quantiles[active] = srt[(csr.offsets[:-1, None] + rank)[active]]
    return LatentStats(count.astype(np.int64), quantiles[:, -1].astype(np.float32), mean, quantiles)
