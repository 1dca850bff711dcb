"""Hungarian alignment of two large dictionaries on CPU: wall time, peak RSS, recovery.

    PYTHONPATH=. python bench/align.py                       # 131072 x 131072, d=576
    PYTHONPATH=. python bench/align.py --latents 16384       # quick
    PYTHONPATH=. python bench/align.py --latents 2048 --dense   # + the dense reference

Dictionaries are random but structured, so the right answer is known: A has clusters
(latents share one of ``M / 16`` parent directions, so each has ~15 siblings at cosine
~0.5, like the feature families of a real SAE); B is A plus Gaussian noise of relative
size ``--noise``, renormalised and randomly permuted. The bench reports the fraction of
the planted permutation the alignment recovers, the matched-cosine median, the wall time
of each phase, peak RSS (ru_maxrss of this process) and the load average (the machine is
shared: say it with the numbers).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time

import numpy as np
import torch

from interp.align.align import AlignConfig, align, random_baseline
from interp.align.candidates import dense_similarity
from interp.align.match import dense_match
from interp.align.report import summarize


def planted(
    m: int, d: int, noise: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """A [m, d], B [m, d] with B[j] ~ A[truth[j]]; returns (A, B, truth)."""
    gen = torch.Generator().manual_seed(seed)
    parents = torch.randn(max(1, m // 16), d, generator=gen)
    parents /= parents.norm(dim=1, keepdim=True)
    family = torch.randint(0, parents.shape[0], (m,), generator=gen)
    A = parents[family] + torch.randn(m, d, generator=gen) / d**0.5
    A /= A.norm(dim=1, keepdim=True)
    truth = torch.randperm(m, generator=gen)
    B = A[truth] + noise * torch.randn(m, d, generator=gen) / d**0.5
    B /= B.norm(dim=1, keepdim=True)
    return A, B, truth.numpy()


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", type=int, default=131072)
    parser.add_argument("--latents-b", type=int, default=0, help="width of B (0 = same)")
    parser.add_argument("--dim", type=int, default=576)
    parser.add_argument("--noise", type=float, default=0.5)
    parser.add_argument("--neighbours", type=int, default=16)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--baseline", action="store_true", help="also match random directions")
    parser.add_argument("--dense", action="store_true", help="also the dense reference")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    A, B, truth = planted(args.latents, args.dim, args.noise, args.seed)
    if args.latents_b and args.latents_b < args.latents:
        B, truth = B[: args.latents_b], truth[: args.latents_b]  # B keeps a subset of A
    cfg = AlignConfig(
        method="sparse",
        neighbours=args.neighbours,
        precision=args.precision,  # type: ignore[arg-type]
    )
    load_before = os.getloadavg()
    result = align(A, B, cfg, progress=True)
    m = result.matching
    expected = np.full(args.latents, -1)
    expected[truth] = np.arange(len(truth))
    recovered = float((expected[m.a] == m.b).sum() / len(truth))
    out = {
        "latents_a": args.latents,
        "latents_b": len(truth),
        "dim": args.dim,
        "noise": args.noise,
        "neighbours": args.neighbours,
        "precision": args.precision,
        "torch_threads": torch.get_num_threads(),
        "edges": result.num_edges,
        "wall_s": round(result.wall_s, 1),
        "peak_rss_gib": round(peak_rss_gib(), 2),
        "recovered": recovered,
        "pairs": int(len(m.a)),
        "filled": int((~m.in_graph).sum()),
        "median_cos": float(np.median(m.sim)),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }
    if args.baseline:
        start = time.perf_counter()
        base = random_baseline(args.latents, len(truth), args.dim, cfg)
        out["baseline_wall_s"] = round(time.perf_counter() - start, 1)
        out["baseline_median_cos"] = float(np.median(base.sim))
        out["frac_above"] = summarize(result, base, cfg)["matched"]["frac_above"]
        out["baseline_frac_above"] = summarize(result, base, cfg)["baseline"]["frac_above"]
    if args.dense:
        start = time.perf_counter()
        ref = dense_match(dense_similarity(A, B))
        out["dense_wall_s"] = round(time.perf_counter() - start, 1)
        out["dense_total"] = ref.total
        out["sparse_total"] = m.total
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
