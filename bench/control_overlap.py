"""How much do a dictionary's latents co-fire? The numbers behind interpret.control_max_overlap.

For a seeded sample of alive latents of a compacted store, the overlap
(:func:`interp.interpret.controls.overlap`: shared active tokens / the smaller count) with
every other alive latent: its distribution, how many candidates each threshold excludes,
and how many draws the dictionary rule needs.

    python bench/control_overlap.py <store dir> [--n 24] [--min-count 10]
"""

from __future__ import annotations

import argparse

import numpy as np

from interp.interpret.controls import overlap, store_pool
from interp.store.reader import StoreReader


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store")
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--min-count", type=int, default=10)
    args = ap.parse_args()
    reader = StoreReader(args.store)
    csr = reader.latent_range(0, reader.n_latents)
    tok = [csr.tok[csr.offsets[i] : csr.offsets[i + 1]] for i in range(reader.n_latents)]
    alive = np.flatnonzero(np.array([len(t) for t in tok]) >= args.min_count)
    rng = np.random.default_rng(0)
    scored = rng.choice(alive, size=min(args.n, len(alive)), replace=False)
    print(f"{reader.n_latents} latents, {len(alive)} alive (>= {args.min_count} tokens)")
    ov = np.array([[overlap(tok[a], tok[b]) for b in alive if b != a] for a in scored])
    print("overlap quantiles over (scored, candidate) pairs:")
    for q in (0.5, 0.9, 0.99, 0.999, 1.0):
        print(f"  q{q}: {np.quantile(ov, q):.3f}")
    for t in (0.05, 0.1, 0.2, 0.3, 0.5):
        per = (ov > t).sum(1)
        print(
            f"  > {t}: mean {per.mean():.1f} of {ov.shape[1]} candidates excluded per latent "
            f"(max {per.max()}); latents with any: {(per > 0).sum()}/{len(per)}"
        )
    pool = store_pool(reader, args.min_count, 0.1, 0)
    draws = [pool.draw(int(a), tok[a])[0] for a in scored]
    print(f"dictionary rule at 0.1: {sum(d is not None for d in draws)}/{len(draws)} got a source")


if __name__ == "__main__":
    main()
