"""What the store's crc32c and read checks cost: one slice written with and without the
checksum, read back the ways the stages read it, runs interleaved, medians reported.

python bench/store_checksum.py                      # 262,144 tokens x k=32, 16,384 latents
python bench/store_checksum.py --tokens 65536 --reps 3

Reads timed: offsets, tok and val whole through bare zarr (the decode alone: what the
checksum adds), every latent at once through ``StoreReader.latent_range`` (the same
decode plus the shard-presence and value checks and the merge into one CSR), and
``verify`` of the whole group (every chunk decoded in blocks and checked). "no crc" is
the same writer with the crc32c codec left out, i.e. schema 1's chunk bytes.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np


def write(root: Path, tokens: int, k: int, n_latents: int, crc: bool) -> Path:
    import interp.store.format as fmt
    from interp.store import write_slice

    original = fmt._codecs

    def without_crc(kind, dtype):
        opts = original(kind, dtype)
        return {**opts, "compressors": opts["compressors"][:-1]}

    rng = np.random.default_rng(0)
    idx = np.argsort(rng.random((tokens, 4 * k)), axis=1)[:, :k] * (n_latents // (4 * k))
    idx = (idx + rng.integers(0, n_latents // (4 * k), (tokens, 1))) % n_latents
    val = rng.lognormal(0, 1, (tokens, k)).astype(np.float32)
    fmt._codecs = original if crc else without_crc
    try:
        group = root / ("crc" if crc else "nocrc") / "slices" / "s00000"
        write_slice(
            group, token_start=0, token_stop=tokens, latent_idx=idx, latent_val=val,
            token_ids=rng.integers(0, 49152, tokens), keep=np.ones(tokens, bool),
            n_latents=n_latents, token_dtype="uint16",
        )  # fmt: skip
    finally:
        fmt._codecs = original
    return group


def timings(group: Path, n_latents: int) -> dict[str, float]:
    import zarr

    from interp.plan import intervals
    from interp.store import StoreReader, verify

    store = group.parents[1]
    out = {}
    t0 = time.perf_counter()
    StoreReader(store).latent_range(0, n_latents)
    out["StoreReader read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    g = zarr.open_group(str(group), mode="r")
    for name in ("offsets", "tok", "val"):
        g[name][:]
    out["bare zarr read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    n = zarr.open_group(str(group), mode="r").attrs["token_stop"]
    verify(store, n_tokens=n, n_latents=n_latents, slice_tasks=intervals(n, n), range_tasks=intervals(n_latents, n_latents))  # fmt: skip
    out["verify (all chunks)"] = time.perf_counter() - t0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=262_144)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--latents", type=int, default=16_384)
    p.add_argument("--reps", type=int, default=5)
    args = p.parse_args()
    import warnings

    warnings.filterwarnings("ignore")
    root = Path(tempfile.mkdtemp(prefix="store-checksum-"))
    try:
        groups = {crc: write(root, args.tokens, args.k, args.latents, crc) for crc in (True, False)}
        runs: dict[tuple[bool, str], list[float]] = {}
        for _ in range(args.reps):
            for crc, group in groups.items():
                for what, s in timings(group, args.latents).items():
                    runs.setdefault((crc, what), []).append(s)
        nnz = args.tokens * args.k
        mb = {c: sum(f.stat().st_size for f in g.rglob("*") if f.is_file()) / 2**20 for c, g in groups.items()}  # fmt: skip
        print(f"{nnz:,} entries; on disk: crc {mb[True]:.2f} MiB, no crc {mb[False]:.2f} MiB")
        for what in ("bare zarr read", "StoreReader read", "verify (all chunks)"):
            a, b = (statistics.median(runs[(c, what)]) for c in (True, False))
            print(
                f"{what:22s} crc {a * 1e3:7.1f} ms ({nnz / a / 1e6:6.1f} M entries/s)  "
                f"no crc {b * 1e3:7.1f} ms  crc cost {100 * (a - b) / b:+5.1f}%"
            )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
