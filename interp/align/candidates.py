"""Candidate graphs for matching two dictionaries: for every latent, its best partners.

A dense similarity matrix of two 131k-wide dictionaries is 64 GiB in float32, so it is
never built. Instead :func:`decoder_candidates` walks it in tiles (torch matmul), keeps
the top ``n`` partners of every row *and* every column in running buffers, and returns
their union as a sparse graph whose similarities are then recomputed exactly in float32.
:func:`activation_candidates` does the same from two latent stores collected over the
same tokens: only latents that fire on a common token can correlate positively, so the
co-occurrence product of the two sparse activation matrices is the candidate set.

Shapes: ``Ma``, ``Mb`` latents of dictionaries A and B, ``E`` decoder width, ``n``
neighbours kept per latent, ``K`` edges of the graph, ``T`` tokens of a store.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Literal, NamedTuple

import numpy as np
import torch

if TYPE_CHECKING:
    import scipy.sparse as sp

log = logging.getLogger(__name__)

Precision = Literal["auto", "int8", "bf16", "fp32"]


class CandidateGraph(NamedTuple):
    """Sparse bipartite graph between the latents of A and B (no duplicate edges)."""

    a: np.ndarray
    """[K] int64 latent of A."""

    b: np.ndarray
    """[K] int64 latent of B."""

    sim: np.ndarray
    """[K] float32 similarity of the pair (cosine or correlation), in [-1, 1]."""

    num_a: int
    """Width of A (latents of A without any edge still count)."""

    num_b: int
    """Width of B."""


def unit_rows(W_ME: torch.Tensor) -> torch.Tensor:
    """[M, E] float32 rows scaled to unit norm; all-zero rows (never-trained decoder rows)
    stay zero, so they have cosine 0 with everything instead of NaN."""
    W = W_ME.detach().float()
    norm = W.norm(dim=1, keepdim=True)
    return W / torch.where(norm > 0, norm, torch.ones_like(norm))


def decoder_candidates(
    a_ME: torch.Tensor,
    b_ME: torch.Tensor,
    n: int = 16,
    *,
    precision: Precision = "auto",
    block_a: int = 4096,
    block_b: int = 16384,
    progress: bool = False,
) -> CandidateGraph:
    """Top-``n`` cosine partners of every row of A in B and of every row of B in A.

    ``a_ME`` / ``b_ME`` are decoder rows (any norm; unit-normalised here). The search runs
    in ``block_a x block_b`` tiles, so memory is ``O((Ma + Mb) * (E + n) + block_a *
    block_b)``, never ``Ma * Mb``. ``precision`` is the search's arithmetic: ``int8``
    (per-row symmetric quantisation, exact int32 accumulation: ~2x bf16 on CPUs with
    VNNI; cosine error ~1e-3), ``bf16``, ``fp32``; ``auto`` = int8 on CPU, fp32 elsewhere.
    The returned similarities are always recomputed in float32.
    """
    if a_ME.ndim != 2 or b_ME.ndim != 2 or a_ME.shape[1] != b_ME.shape[1]:
        raise ValueError(
            f"decoder shapes {tuple(a_ME.shape)} and {tuple(b_ME.shape)} differ in width: "
            "decoder cosine needs both dictionaries to write into the same space (use "
            "similarity='activation' with their stores instead)"
        )
    if n < 1:
        raise ValueError(f"n={n} neighbours per latent must be >= 1")
    a, b = unit_rows(a_ME), unit_rows(b_ME)
    if precision == "auto":
        precision = "int8" if a.device.type == "cpu" else "fp32"
    tiles = _TileSimilarity(a, b, precision)
    m_a, m_b = a.shape[0], b.shape[0]
    rows = _RunningTopK(m_a, min(n, m_b), a.device)
    cols = _RunningTopK(m_b, min(n, m_a), a.device)
    starts = [(i, j) for i in range(0, m_a, block_a) for j in range(0, m_b, block_b)]
    for i0, j0 in _progress(starts, progress, "candidate tiles"):
        i1, j1 = min(i0 + block_a, m_a), min(j0 + block_b, m_b)
        S = tiles(i0, i1, j0, j1)
        val, idx = chunked_topk(S, rows.n, dim=1)
        rows.merge(i0, val.float() * tiles.scale, idx + j0)
        val, idx = chunked_topk(S, cols.n, dim=0)
        cols.merge(j0, val.T.float() * tiles.scale, idx.T + i0)
        del S
    ea, eb, va = rows.edges()
    fb, fa, vb = cols.edges()
    # a pair found in both directions holds the same value twice: keep one
    key, first = np.unique(
        np.concatenate([ea, fa]) * m_b + np.concatenate([eb, fb]), return_index=True
    )
    sim = np.clip(np.concatenate([va, vb])[first], -1, 1).astype(np.float32)
    return CandidateGraph(key // m_b, key % m_b, sim, m_a, m_b)


class _TileSimilarity:
    """Tiles ``S[i0:i1, j0:j1]`` of the cosine matrix of unit rows, up to the factor
    ``scale`` (int8 tiles are int32 dot products of the quantised rows)."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor, precision: str) -> None:
        self.precision = precision
        self.buffers: dict[str, torch.Tensor] = {}
        self.scale = 1.0
        if precision == "int8":
            self.a, scale_a = _quantise(a)
            qb, scale_b = _quantise(b)
            self.bT = qb.T.contiguous()
            self.scale = scale_a * scale_b
        elif precision in ("bf16", "fp32"):
            dtype = torch.bfloat16 if precision == "bf16" else torch.float32
            self.a, self.bT = a.to(dtype), b.T.contiguous().to(dtype)
        else:
            raise ValueError(f"precision={precision!r}: use auto, int8, bf16 or fp32")

    def __call__(self, i0: int, i1: int, j0: int, j1: int) -> torch.Tensor:
        """[i1 - i0, j1 - j0] tile (int32 or float32). It lives in a buffer reused by the
        next call (fresh 256 MiB tensors per tile cost more in page faults than the
        matmul)."""
        shape = (i1 - i0, j1 - j0)
        if self.precision == "int8":
            out = self._buffer("acc", shape, torch.int32)
            return torch._int_mm(self.a[i0:i1], self.bT[:, j0:j1].contiguous(), out=out)
        out = self._buffer("out", shape, torch.float32)
        if self.precision == "fp32":
            return torch.mm(self.a[i0:i1], self.bT[:, j0:j1], out=out)
        return out.copy_(self.a[i0:i1] @ self.bT[:, j0:j1])

    def _buffer(self, name: str, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        numel = shape[0] * shape[1]
        buf = self.buffers.get(name)
        if buf is None or buf.numel() < numel:
            buf = self.buffers[name] = torch.empty(numel, dtype=dtype, device=self.a.device)
        return buf[:numel].view(shape)


def _quantise(x_ME: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Symmetric int8 with one scale for the whole dictionary, ``x ~= q * scale``.

    One scale (not one per row) keeps every tile proportional to the cosine, so tiles
    are ranked as integers. Unit rows have components <= 1, so the step is at most
    1/127 and a 576-wide cosine is off by ~2e-3 at worst-case scale."""
    amax = float(x_ME.abs().max()) if x_ME.numel() else 0.0
    scale = amax / 127.0 if amax > 0 else 1.0
    return torch.round(x_ME / scale).to(torch.int8), scale


class _RunningTopK:
    """The best ``n`` (value, partner) seen so far for each of ``m`` latents."""

    def __init__(self, m: int, n: int, device: torch.device) -> None:
        self.n = n
        self.val = torch.full((m, n), -torch.inf, device=device)
        self.idx = torch.full((m, n), -1, dtype=torch.int64, device=device)

    def merge(self, start: int, val: torch.Tensor, idx: torch.Tensor) -> None:
        """Fold tile results ``val``/``idx`` [r, n'] for latents ``start .. start + r``."""
        stop = start + val.shape[0]
        both_v = torch.cat([self.val[start:stop], val], dim=1)
        both_i = torch.cat([self.idx[start:stop], idx], dim=1)
        best_v, pos = both_v.topk(self.n, dim=1)
        self.val[start:stop] = best_v
        self.idx[start:stop] = both_i.gather(1, pos)

    def edges(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(latent, partner, value) of every kept entry."""
        keep = self.idx >= 0
        own = torch.arange(self.idx.shape[0], device=self.idx.device)[:, None].expand_as(keep)
        return own[keep].cpu().numpy(), self.idx[keep].cpu().numpy(), self.val[keep].cpu().numpy()


def chunked_topk(
    S: torch.Tensor, k: int, dim: int, chunk: int = 64
) -> tuple[torch.Tensor, torch.Tensor]:
    """``S.topk(k, dim)`` (values and indices) of a 2-D ``S``, faster for small ``k``.

    The maximum of each run of ``chunk`` consecutive entries along ``dim`` is a cheap
    vectorised reduction. Every top-``k`` entry lies in one of the ``k`` runs with the
    largest maxima (a run holding one has a maximum at least as large, and only ``k``
    runs can beat it), so only those ``k * chunk`` entries are searched exactly. Along
    ``dim=0`` the runs are ``chunk // 8`` rows long and gathered by flat index (a
    strided gather of long runs is slow). Ties may pick a different but equally good
    set. Returns [.., k] along ``dim`` like ``topk``.
    """
    if dim == 0:
        chunk = max(1, chunk // 8)
    length = S.shape[dim]
    k = min(k, length)
    if length < 2 * k * chunk:
        return S.topk(k, dim=dim)
    pad = -length % chunk
    if pad:
        low = -torch.inf if S.is_floating_point() else torch.iinfo(S.dtype).min
        S = torch.nn.functional.pad(S, (0, pad) if dim == 1 else (0, 0, 0, pad), value=low)
    if dim == 0:
        return _column_topk(S.contiguous(), k, chunk)
    S3 = S.view(S.shape[0], -1, chunk)  # [R, runs, chunk]
    best = S3.amax(dim=2).topk(k, dim=1).indices  # [R, k]
    cand = S3.gather(1, best[:, :, None].expand(-1, -1, chunk))  # [R, k, chunk]
    val, pos = cand.reshape(S.shape[0], -1).topk(k, dim=1)
    return val, best.gather(1, pos // chunk) * chunk + pos % chunk


def _column_topk(S: torch.Tensor, k: int, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    C = S.shape[1]
    run_max = S.view(-1, chunk, C).amax(dim=1)  # [runs, C]
    best = run_max.T.contiguous().topk(k, dim=1).indices  # [C, k]
    rows = best[:, :, None] * chunk + torch.arange(chunk, device=S.device)  # [C, k, chunk]
    cand = S.reshape(-1).take(rows * C + torch.arange(C, device=S.device)[:, None, None])
    val, pos = cand.view(C, -1).topk(k, dim=1)
    return val.T, rows.view(C, -1).gather(1, pos).T


def exact_cosine(
    a: torch.Tensor, b: torch.Tensor, ia: np.ndarray, ib: np.ndarray, batch: int = 1 << 15
) -> np.ndarray:
    """[P] float32 cosine of unit rows ``a[ia[p]]`` and ``b[ib[p]]``, in float32."""
    sim = np.empty(len(ia), np.float32)
    for s in range(0, len(ia), batch):
        xa = a[torch.from_numpy(np.asarray(ia[s : s + batch], np.int64))]
        xb = b[torch.from_numpy(np.asarray(ib[s : s + batch], np.int64))]
        sim[s : s + batch] = (xa * xb).sum(dim=1).clamp_(-1, 1).cpu().numpy()
    return sim


def dense_similarity(a_ME: torch.Tensor, b_ME: torch.Tensor) -> np.ndarray:
    """[Ma, Mb] float32 cosine matrix (small dictionaries only: the reference path)."""
    return (unit_rows(a_ME) @ unit_rows(b_ME).T).clamp_(-1, 1).cpu().numpy()


# ------------------------------------------------------------------ activation correlation


def activation_candidates(
    acts_a: sp.csr_matrix, acts_b: sp.csr_matrix, n: int = 16, *, block_a: int = 4096
) -> CandidateGraph:
    """Top-``n`` Pearson-correlation partners per latent from two sparse activation
    matrices over the same ``T`` tokens (scipy CSR, [Ma, T] and [Mb, T]; absent = 0).

    The co-occurrence product ``acts_a @ acts_b.T`` is taken ``block_a`` rows of A at a
    time, so memory is bounded by one block's co-occurring pairs; a pair that never
    fires on a common token has correlation <= 0 and is not a candidate.
    """
    import scipy.sparse as sp  # noqa: F811  (runtime import; the top one is for types)

    if acts_a.shape[1] != acts_b.shape[1]:
        raise ValueError(
            f"stores hold {acts_a.shape[1]} and {acts_b.shape[1]} tokens: activation "
            "correlation needs both dictionaries collected over the same tokens"
        )
    T = acts_a.shape[1]
    mean_a, std_a = _moments(acts_a, T)
    mean_b, std_b = _moments(acts_b, T)
    bT = sp.csc_matrix(acts_b, dtype=np.float64).T.tocsr()  # [T, Mb]
    rows = _RunningTopK(acts_a.shape[0], min(n, acts_b.shape[0]), torch.device("cpu"))
    cols = _RunningTopK(acts_b.shape[0], min(n, acts_a.shape[0]), torch.device("cpu"))
    for i0 in range(0, acts_a.shape[0], block_a):
        co = (acts_a[i0 : i0 + block_a].astype(np.float64) @ bT).tocoo()
        i, j = co.row.astype(np.int64), co.col.astype(np.int64)
        ii = i + i0
        cov = co.data / T - mean_a[ii] * mean_b[j]
        corr = cov / np.maximum(std_a[ii] * std_b[j], 1e-30)
        _scatter_topk(rows, i0, block_a, i, j, corr)
        _scatter_topk_cols(cols, j, ii, corr)
    ea, eb, va = rows.edges()
    fb, fa, vb = cols.edges()
    m_b = acts_b.shape[0]
    # both directions hold the same exact (float64) value of a pair: keep one copy
    key, first = np.unique(
        np.concatenate([ea, fa]) * m_b + np.concatenate([eb, fb]), return_index=True
    )
    sim = np.clip(np.concatenate([va, vb])[first], -1, 1).astype(np.float32)
    return CandidateGraph(key // m_b, key % m_b, sim, acts_a.shape[0], m_b)


def _moments(acts: sp.csr_matrix, T: int) -> tuple[np.ndarray, np.ndarray]:
    x = acts.astype(np.float64)
    mean = np.asarray(x.sum(axis=1)).ravel() / T
    sq = np.asarray(x.multiply(x).sum(axis=1)).ravel() / T
    return mean, np.sqrt(np.maximum(sq - mean**2, 0.0))


def _scatter_topk(
    rows: _RunningTopK, i0: int, block: int, i: np.ndarray, j: np.ndarray, corr: np.ndarray
) -> None:
    """Fold one block's (row i, col j, corr) triples into the rows' running top-n."""
    if len(i) == 0:
        return
    order = np.lexsort((-corr, i))  # by row, best first
    i, j, corr = i[order], j[order], corr[order]
    start = np.searchsorted(i, i, side="left")
    rank = np.arange(len(i)) - start
    keep = rank < rows.n
    r = min(block, rows.val.shape[0] - i0)
    val = torch.full((r, rows.n), -torch.inf)
    idx = torch.full((r, rows.n), -1, dtype=torch.int64)
    val[i[keep], rank[keep]] = torch.from_numpy(corr[keep]).float()
    idx[i[keep], rank[keep]] = torch.from_numpy(j[keep])
    rows.merge(i0, val, idx)


def _scatter_topk_cols(cols: _RunningTopK, j: np.ndarray, i: np.ndarray, corr: np.ndarray) -> None:
    if len(j) == 0:
        return
    _scatter_topk(cols, 0, cols.val.shape[0], j, i, corr)


def _progress(items: list, enabled: bool, desc: str) -> list:
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="tile", leave=False)  # type: ignore[return-value]
