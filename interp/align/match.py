"""One-to-one matching of two dictionaries' latents that maximises total similarity.

Two solvers give the same answer where both apply:

* :func:`dense_match` — ``scipy.optimize.linear_sum_assignment`` on the full [Ma, Mb]
  similarity matrix. The reference; small dictionaries only (memory Ma * Mb).
* :func:`sparse_match` — ``scipy.sparse.csgraph.min_weight_full_bipartite_matching``
  (LAPJVsp) on a :class:`~interp.align.candidates.CandidateGraph`.

How the sparse problem is posed (so it is always feasible and equals the dense one
whenever it can):

* The smaller side is the row side (rectangular matching: every latent of the smaller
  dictionary gets at most one partner, ``min(Ma, Mb)`` pairs at most).
* An edge of similarity ``s`` costs ``2 - s`` in [1, 3] (scipy drops zero-weight edges,
  so costs stay positive).
* Every row also gets a private *dummy* column, so a full matching always exists: a
  row with no candidate left (or none at all) takes its dummy and is reported
  unmatched. The dummy costs ``2 - min_similarity + 1e-3``, so the sparse problem is:
  maximise the matched similarity plus ``min_similarity`` for every unmatched row.

  - ``min_similarity=-1``: a dummy costs more than any real edge, so any solution that
    uses a dummy where the dense optimum does not could be completed with real edges
    more cheaply. Whenever the candidate graph contains a dense optimum, the sparse
    solution has the same total similarity (the tests check it). The price: a latent
    whose true partner is missing from the graph (a dead, all-zero decoder row) is
    forced onto some candidate, which can displace a chain of good pairs.
  - ``min_similarity=0`` (the default of ``AlignConfig``): a latent is left unmatched
    rather than take a pair worth less than 0 on balance (net of what it displaces), so
    a latent with no real partner never breaks good pairs. The answer equals the dense
    one when the graph contains a dense optimum whose pairs all have similarity > 0 and
    no cheaper trade exists; in general its total is a lower bound of the dense optimum
    (it is a feasible matching), and ``fill_unmatched`` pairs the leftovers.
* :func:`fill_unmatched` optionally pairs the leftovers of both sides with a dense
  solve on just those (the graph's top-n lists were exhausted for them); such pairs are
  marked ``in_graph = False``.

Shapes: ``P`` matched pairs, ``K`` graph edges.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from interp.align.candidates import CandidateGraph


class Matching(NamedTuple):
    """Pairs (a[p], b[p]) of a one-to-one matching, sorted by ``a``."""

    a: np.ndarray
    """[P] int64 latent of A."""

    b: np.ndarray
    """[P] int64 latent of B."""

    sim: np.ndarray
    """[P] float32 similarity of each pair."""

    in_graph: np.ndarray
    """[P] bool: the pair was an edge of the candidate graph (False: filled densely)."""

    num_a: int
    num_b: int

    @property
    def unmatched_a(self) -> np.ndarray:
        """Latents of A without a partner, ascending."""
        return np.setdiff1d(np.arange(self.num_a), self.a)

    @property
    def unmatched_b(self) -> np.ndarray:
        return np.setdiff1d(np.arange(self.num_b), self.b)

    @property
    def total(self) -> float:
        return float(self.sim.astype(np.float64).sum())


def _sorted(
    a: np.ndarray, b: np.ndarray, sim: np.ndarray, in_graph: np.ndarray, m_a: int, m_b: int
) -> Matching:
    order = np.argsort(a, kind="stable")
    return Matching(
        a[order].astype(np.int64),
        b[order].astype(np.int64),
        sim[order].astype(np.float32),
        in_graph[order].astype(bool),
        m_a,
        m_b,
    )


def dense_match(sim_AB: np.ndarray) -> Matching:
    """Maximum-total-similarity matching of a dense [Ma, Mb] matrix (the reference)."""
    from scipy.optimize import linear_sum_assignment

    sim_AB = np.asarray(sim_AB, dtype=np.float64)
    if sim_AB.ndim != 2:
        raise ValueError(f"similarity must be a [Ma, Mb] matrix, got shape {sim_AB.shape}")
    ra, cb = linear_sum_assignment(sim_AB, maximize=True)
    return _sorted(ra, cb, sim_AB[ra, cb], np.ones(len(ra), bool), *sim_AB.shape)


def sparse_match(graph: CandidateGraph, min_similarity: float = 0.0) -> Matching:
    """Maximum-total-similarity matching restricted to the edges of ``graph``; a latent
    left unmatched counts ``min_similarity`` (see the module docstring: -1 reproduces
    the dense optimum whenever the graph contains it)."""
    if not -1.0 <= min_similarity <= 1.0:
        raise ValueError(f"min_similarity={min_similarity} must lie in [-1, 1]")
    import scipy.sparse as sp
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    swap = graph.num_a > graph.num_b
    rows, cols = (graph.b, graph.a) if swap else (graph.a, graph.b)
    m_r, m_c = (graph.num_b, graph.num_a) if swap else (graph.num_a, graph.num_b)
    if m_r == 0 or m_c == 0:
        empty = np.empty(0, np.int64)
        return Matching(
            empty, empty, np.empty(0, np.float32), np.empty(0, bool), graph.num_a, graph.num_b
        )
    dummy = np.arange(m_r, dtype=np.int64)
    cost = sp.csr_matrix(
        (
            np.concatenate(
                [2.0 - graph.sim.astype(np.float64), np.full(m_r, 2.0 - min_similarity + 1e-3)]
            ),
            (np.concatenate([rows, dummy]), np.concatenate([cols, m_c + dummy])),
        ),
        shape=(m_r, m_c + m_r),
    )
    r, c = min_weight_full_bipartite_matching(cost)
    real = c < m_c
    r, c = r[real].astype(np.int64), c[real].astype(np.int64)
    sim = (2.0 - np.asarray(cost[r, c]).ravel()).astype(np.float32)
    a, b = (c, r) if swap else (r, c)
    return _sorted(a, b, sim, np.ones(len(a), bool), graph.num_a, graph.num_b)


def fill_unmatched(matching: Matching, similarity, limit: int = 8192) -> Matching:
    """Pair leftover latents of both sides by a dense solve among the leftovers only.

    ``similarity(ia, ib)`` returns the dense [len(ia), len(ib)] similarity of the given
    latents. Skipped (the matching is returned unchanged) when either side has no
    leftover or more than ``limit`` (the dense block would be too large).
    """
    ua, ub = matching.unmatched_a, matching.unmatched_b
    if len(ua) == 0 or len(ub) == 0 or max(len(ua), len(ub)) > limit:
        return matching
    extra = dense_match(similarity(ua, ub))
    return _sorted(
        np.concatenate([matching.a, ua[extra.a]]),
        np.concatenate([matching.b, ub[extra.b]]),
        np.concatenate([matching.sim, extra.sim]),
        np.concatenate([matching.in_graph, np.zeros(len(extra.a), bool)]),
        matching.num_a,
        matching.num_b,
    )
