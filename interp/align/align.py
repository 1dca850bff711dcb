"""Align two dictionaries: which latent of B is latent i of A, and how similar are they.

:func:`align` takes two dictionaries (folders written by ``interp.sae.save_sae`` or by
sparsify, loaded :class:`~interp.sae.base.SparseCoder` objects, or [M, E] decoder
matrices) of equal or different widths and returns a one-to-one :class:`Matching`
that maximises total similarity (Hungarian matching):

* ``similarity="decoder"``: cosine of decoder rows (W_dec, unit-normalised). Needs both
  dictionaries to write into the same space (same E).
* ``similarity="activation"``: Pearson correlation of the latents' activations over the
  same tokens, from two latent stores (``interp.store``) or two sparse [M, T] matrices.

``method="dense"`` solves the full similarity matrix with scipy's
``linear_sum_assignment`` (the reference; memory Ma * Mb). ``method="sparse"`` keeps the
top ``neighbours`` partners per latent in both directions (blockwise; see
``interp.align.candidates``) and solves on that graph with
``min_weight_full_bipartite_matching``; ``interp.align.match`` says how infeasibility
and unequal widths are handled. ``auto`` is dense up to ``dense_max`` latents a side.

:func:`random_baseline` is the matching of random unit vectors of the same widths and
dimension: what decoder cosine gives by chance. :mod:`interp.align.report` says what a
matching means (summary, explanation similarity, cross-scoring plan).

Shapes: ``Ma``, ``Mb`` latents, ``E`` decoder width, ``T`` tokens, ``P`` pairs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import numpy as np
import torch

from interp.align.candidates import (
    CandidateGraph,
    Precision,
    activation_candidates,
    decoder_candidates,
    dense_similarity,
    exact_cosine,
    unit_rows,
)
from interp.align.match import Matching, dense_match, fill_unmatched, sparse_match

if TYPE_CHECKING:
    import scipy.sparse as sp

log = logging.getLogger(__name__)

Similarity = Literal["decoder", "activation"]


@dataclass(frozen=True)
class AlignConfig:
    """How two dictionaries are aligned and reported."""

    method: Literal["auto", "dense", "sparse"] = "auto"
    """dense = full matrix + linear_sum_assignment; sparse = candidate graph + LAPJVsp;
    auto = dense when both widths are <= dense_max."""

    dense_max: int = 2048
    """Largest width solved densely by ``auto`` (a 2048^2 float64 matrix is 32 MiB)."""

    neighbours: int = 16
    """Sparse: partners kept per latent, in each direction (edges <= 2 * n * width)."""

    precision: Precision = "auto"
    """Sparse decoder search arithmetic (int8 on CPU by default; pairs are rescored in
    float32 either way)."""

    min_similarity: float = 0.0
    """Sparse: what an unmatched latent is worth. 0 = leave a latent unmatched rather
    than displace better pairs to give it a partner of similarity < 0; -1 = as many
    pairs as the graph allows (the sparse optimum then equals the dense one whenever the
    graph contains it). See ``interp.align.match``."""

    fill_unmatched: bool = True
    """Sparse: pair latents left without a candidate by a dense solve among them."""

    fill_limit: int = 8192
    """Largest leftover count that ``fill_unmatched`` solves densely."""

    thresholds: tuple[float, ...] = (0.5, 0.7, 0.9)
    """Report the fraction of latents whose match is at least this similar."""

    baseline: bool = True
    """Also match random unit vectors of the same widths (decoder similarity only)."""

    seed: int = 0
    """Seed of the random baseline."""

    block_a: int = 4096
    """Sparse: rows of A per similarity tile (and per co-occurrence block)."""

    block_b: int = 16384
    """Sparse: rows of B per similarity tile; a tile is block_a * block_b * 4 bytes
    (256 MiB at the defaults), the only memory that grows with both widths."""

    def __post_init__(self) -> None:
        if self.method not in ("auto", "dense", "sparse"):
            raise ValueError(f"align method={self.method!r}: use auto, dense or sparse")
        if self.neighbours < 1 or self.dense_max < 1 or self.fill_limit < 0:
            raise ValueError("align neighbours and dense_max must be >= 1, fill_limit >= 0")
        if self.precision not in ("auto", "int8", "bf16", "fp32"):
            raise ValueError(f"align precision={self.precision!r}: use auto, int8, bf16 or fp32")
        if self.block_a < 1 or self.block_b < 1:
            raise ValueError("align block_a and block_b must be >= 1")
        if not -1 <= self.min_similarity <= 1:
            raise ValueError(f"align min_similarity={self.min_similarity} must lie in [-1, 1]")
        if any(not -1 <= t <= 1 for t in self.thresholds):
            raise ValueError(f"align thresholds {self.thresholds} must lie in [-1, 1]")


class Alignment(NamedTuple):
    """A matching and how it was obtained."""

    matching: Matching
    similarity: str
    """"decoder" (cosine) or "activation" (correlation)."""
    method: str
    """"dense" or "sparse"."""
    num_edges: int
    """Edges of the candidate graph (Ma * Mb when dense)."""
    wall_s: float


# ----------------------------------------------------------------------------- inputs


def decoder_rows(dictionary: Any) -> torch.Tensor:
    """[M, E] float32 decoder rows of a dictionary folder, a SparseCoder or a matrix."""
    if isinstance(dictionary, torch.Tensor):
        W = dictionary
    elif isinstance(dictionary, np.ndarray):
        W = torch.from_numpy(dictionary)
    elif isinstance(dictionary, (str, Path)):
        from interp.sae.io import load_sae

        W = load_sae(dictionary).W_dec
    elif hasattr(dictionary, "W_dec"):
        W = dictionary.W_dec
    else:
        raise ValueError(
            f"cannot read decoder rows from {type(dictionary).__name__}: pass a dictionary "
            "folder (cfg.json + sae.safetensors), a SparseCoder or an [M, E] matrix"
        )
    if W.ndim != 2:
        raise ValueError(f"decoder rows must be [M, E], got shape {tuple(W.shape)}")
    return W.detach().float()


def store_activations(store: Any) -> sp.csr_matrix:
    """[M, T] float32 sparse activations of a latent store folder (``latents.zarr``), or
    ``store`` itself when it already is a scipy sparse matrix."""
    import scipy.sparse as sparse

    if sparse.issparse(store):
        return sparse.csr_matrix(store, dtype=np.float32)
    from interp.store.reader import StoreReader

    reader = StoreReader(Path(store))
    gaps = reader.missing_tokens()
    if gaps:
        raise ValueError(f"{store}: tokens {gaps} are not collected yet: finish collect first")
    csr = reader.latent_range(0, reader.n_latents)
    return sparse.csr_matrix(
        (csr.val.astype(np.float32), csr.tok.astype(np.int64), csr.offsets),
        shape=(reader.n_latents, reader.n_tokens),
    )


# ----------------------------------------------------------------------------- alignment


def align(
    a: Any = None,
    b: Any = None,
    cfg: AlignConfig | None = None,
    *,
    similarity: Similarity = "decoder",
    acts_a: Any = None,
    acts_b: Any = None,
    progress: bool = False,
) -> Alignment:
    """Hungarian matching of dictionary ``a`` to dictionary ``b`` (see module docstring).

    For ``similarity="activation"`` pass ``acts_a`` / ``acts_b`` (store folders or sparse
    [M, T] matrices over the same tokens); ``a`` and ``b`` are then unused.
    """
    cfg = cfg or AlignConfig()
    start = time.perf_counter()
    if similarity == "decoder":
        if a is None or b is None:
            raise ValueError("decoder similarity needs both dictionaries a and b")
        matching, method, edges = _align_decoders(decoder_rows(a), decoder_rows(b), cfg, progress)
    elif similarity == "activation":
        if acts_a is None or acts_b is None:
            raise ValueError("activation similarity needs acts_a and acts_b (two stores)")
        matching, method, edges = _align_activations(
            store_activations(acts_a), store_activations(acts_b), cfg
        )
    else:
        raise ValueError(f"similarity={similarity!r}: use decoder or activation")
    wall = time.perf_counter() - start
    log.info(
        "aligned %d x %d latents (%s, %s): %d pairs, median similarity %.3f, %.1f s",
        matching.num_a,
        matching.num_b,
        similarity,
        method,
        len(matching.a),
        float(np.median(matching.sim)) if len(matching.sim) else float("nan"),
        wall,
    )
    return Alignment(matching, similarity, method, edges, wall)


def _use_dense(cfg: AlignConfig, m_a: int, m_b: int) -> bool:
    return cfg.method == "dense" or (cfg.method == "auto" and max(m_a, m_b) <= cfg.dense_max)


def _align_decoders(
    a_ME: torch.Tensor, b_ME: torch.Tensor, cfg: AlignConfig, progress: bool
) -> tuple[Matching, str, int]:
    m_a, m_b = a_ME.shape[0], b_ME.shape[0]
    if _use_dense(cfg, m_a, m_b):
        if a_ME.shape[1] != b_ME.shape[1]:
            raise ValueError(
                f"decoder widths {a_ME.shape[1]} and {b_ME.shape[1]} differ: decoder cosine "
                "needs both dictionaries in the same space (use similarity='activation')"
            )
        return dense_match(dense_similarity(a_ME, b_ME)), "dense", m_a * m_b
    graph = decoder_candidates(
        a_ME,
        b_ME,
        cfg.neighbours,
        precision=cfg.precision,
        block_a=cfg.block_a,
        block_b=cfg.block_b,
        progress=progress,
    )
    matching = _solve_sparse(graph, cfg)
    ua, ub = unit_rows(a_ME), unit_rows(b_ME)
    # the graph's similarities come from the (int8) search: report exact ones
    matching = matching._replace(sim=exact_cosine(ua, ub, matching.a, matching.b))
    if cfg.fill_unmatched:
        matching = fill_unmatched(
            matching, lambda ia, ib: dense_similarity(ua[ia], ub[ib]), cfg.fill_limit
        )
    return matching, "sparse", len(graph.a)


def _align_activations(
    acts_a: sp.csr_matrix, acts_b: sp.csr_matrix, cfg: AlignConfig
) -> tuple[Matching, str, int]:
    m_a, m_b = acts_a.shape[0], acts_b.shape[0]
    if _use_dense(cfg, m_a, m_b):
        n = max(m_a, m_b)  # every co-occurring pair; non-co-occurring ones correlate <= 0
    else:
        n = cfg.neighbours
    graph = activation_candidates(acts_a, acts_b, n, block_a=cfg.block_a)
    matching = _solve_sparse(graph, cfg)
    if cfg.fill_unmatched:
        matching = fill_unmatched(
            matching,
            lambda ia, ib: _dense_corr(acts_a[ia], acts_b[ib]),
            cfg.fill_limit,
        )
    method = "dense" if n >= max(m_a, m_b) else "sparse"
    return matching, method, len(graph.a)


def _solve_sparse(graph: CandidateGraph, cfg: AlignConfig) -> Matching:
    start = time.perf_counter()
    matching = sparse_match(graph, cfg.min_similarity)
    log.info(
        "sparse assignment on %d edges: %d pairs, %d + %d unmatched, %.1f s",
        len(graph.a),
        len(matching.a),
        len(matching.unmatched_a),
        len(matching.unmatched_b),
        time.perf_counter() - start,
    )
    return matching


def _dense_corr(xa: sp.csr_matrix, xb: sp.csr_matrix) -> np.ndarray:
    """[len(xa), len(xb)] Pearson correlation of two small sparse activation blocks."""
    xa, xb = xa.toarray().astype(np.float64), xb.toarray().astype(np.float64)
    xa -= xa.mean(axis=1, keepdims=True)
    xb -= xb.mean(axis=1, keepdims=True)
    na, nb = np.linalg.norm(xa, axis=1), np.linalg.norm(xb, axis=1)
    return (xa @ xb.T) / np.maximum(np.outer(na, nb), 1e-30)


def random_baseline(num_a: int, num_b: int, dim: int, cfg: AlignConfig | None = None) -> Matching:
    """The matching of two dictionaries of random unit directions with the given widths
    in dimension ``dim``, by the same method: what decoder cosine gives by chance."""
    cfg = cfg or AlignConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    a = torch.randn(num_a, dim, generator=gen)
    b = torch.randn(num_b, dim, generator=gen)
    return _align_decoders(a, b, cfg, progress=False)[0]
