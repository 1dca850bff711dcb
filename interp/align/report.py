"""What a matching says: its summary (quantiles, histogram, fraction of latents above
similarity thresholds, beside the random-direction baseline's), the similarity of
matched pairs' explanations in a sentence-embedding space, the cross-scoring plan (score
latent B with the explanation of its match A) and the per-pair table.

Shapes: ``P`` pairs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol

import numpy as np

from interp.align.align import AlignConfig, Alignment
from interp.align.match import Matching

HIST_BINS = 40  # over [-1, 1]
QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


def distribution(sim: np.ndarray, denominator: int, thresholds: tuple[float, ...]) -> dict:
    """Quantiles, mean, histogram and the fraction of ``denominator`` latents whose match
    reaches each threshold (unmatched latents count as below every threshold)."""
    sim = np.asarray(sim, dtype=np.float64)
    hist, edges = np.histogram(sim, bins=HIST_BINS, range=(-1.0, 1.0))
    finite = len(sim) > 0
    return {
        "n": int(len(sim)),
        "mean": float(sim.mean()) if finite else None,
        "quantiles": {f"{q:g}": float(np.quantile(sim, q)) if finite else None for q in QUANTILES},
        "hist_counts": hist.tolist(),
        "hist_edges": [float(e) for e in edges],
        "frac_above": {
            f"{t:g}": float((sim >= t).sum() / denominator) if denominator else None
            for t in thresholds
        },
    }


def summarize(
    alignment: Alignment, baseline: Matching | None, cfg: AlignConfig | None = None
) -> dict[str, Any]:
    """JSON-able summary of an alignment and its random baseline."""
    cfg = cfg or AlignConfig()
    m = alignment.matching
    smaller = min(m.num_a, m.num_b)
    return {
        "similarity": alignment.similarity,
        "method": alignment.method,
        "num_a": m.num_a,
        "num_b": m.num_b,
        "num_pairs": int(len(m.a)),
        "num_filled": int((~m.in_graph).sum()),
        "num_unmatched_a": int(m.num_a - len(m.a)),
        "num_unmatched_b": int(m.num_b - len(m.b)),
        "num_edges": alignment.num_edges,
        "wall_s": round(alignment.wall_s, 3),
        "total_similarity": m.total,
        "matched": distribution(m.sim, smaller, cfg.thresholds),
        "baseline": (
            distribution(baseline.sim, min(baseline.num_a, baseline.num_b), cfg.thresholds)
            if baseline is not None
            else None
        ),
    }


class Embedder(Protocol):
    """What explanation similarity needs from ``interp.models.embedder``."""

    def encode(self, texts: list[str]) -> np.ndarray:
        """[n, d] float32 embeddings, L2-normalised."""
        ...


def explanation_similarity(
    matching: Matching,
    expl_a: Mapping[int, str],
    expl_b: Mapping[int, str],
    embedder: Embedder,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, float | None]:
    """Cosine of the embedded explanations of each matched pair.

    Returns ``sim_P`` ([P] float32, NaN where either side has no explanation) and the
    mean similarity of the same explanations paired at random (shuffled B side): the
    control a matched-pair mean should beat. ``None`` when fewer than 2 pairs qualify.
    """
    sim = np.full(len(matching.a), np.nan, np.float32)
    both = [
        p
        for p, (i, j) in enumerate(zip(matching.a.tolist(), matching.b.tolist(), strict=True))
        if expl_a.get(i) and expl_b.get(j)
    ]
    if not both:
        return sim, None
    texts_a = [expl_a[int(matching.a[p])] for p in both]
    texts_b = [expl_b[int(matching.b[p])] for p in both]
    emb_a = np.asarray(embedder.encode(texts_a), dtype=np.float32)
    emb_b = np.asarray(embedder.encode(texts_b), dtype=np.float32)
    sim[both] = (emb_a * emb_b).sum(axis=1)
    if len(both) < 2:
        return sim, None
    perm = np.random.default_rng(seed).permutation(len(both))
    return sim, float((emb_a * emb_b[perm]).sum(axis=1).mean())


class CrossScorePair(NamedTuple):
    """Score latent ``latent`` of dictionary B with ``explanation`` of its match in A."""

    latent: int
    explanation: str
    source_latent: int
    similarity: float


def cross_score_pairs(
    matching: Matching,
    expl_a: Mapping[int, str],
    *,
    min_similarity: float | None = None,
) -> list[CrossScorePair]:
    """The cross-scoring plan: for every matched pair (a, b) whose A side has an
    explanation (and, when given, similarity >= ``min_similarity``), score latent b of
    B with a's explanation. Swap the arguments' roles (align B to A) for the reverse."""
    out = []
    for i, j, s in zip(
        matching.a.tolist(), matching.b.tolist(), matching.sim.tolist(), strict=True
    ):
        text = expl_a.get(i)
        if not text or (min_similarity is not None and s < min_similarity):
            continue
        out.append(CrossScorePair(j, text, i, float(s)))
    return out


def matches_table(matching: Matching, expl_sim: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Columns of the per-pair table: a, b, similarity, in_graph, explanation_similarity."""
    cols: dict[str, np.ndarray] = {
        "a": matching.a,
        "b": matching.b,
        "similarity": matching.sim,
        "in_graph": matching.in_graph,
    }
    cols["explanation_similarity"] = (
        expl_sim if expl_sim is not None else np.full(len(matching.a), np.nan, np.float32)
    )
    return cols


def matching_config(cfg: AlignConfig) -> dict[str, Any]:
    """The fields of ``cfg`` as a JSON-able dict (recorded beside every result)."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
