"""Tokens/s and peak memory of one TopK SAE training step (forward + backward), per kernel
backend, on one CUDA GPU.

    python bench/topk_kernels.py                 # the full grid (~5 min on an H100)
    python bench/topk_kernels.py --grid quick    # a few shapes
    python bench/topk_kernels.py --micro         # the sparse ops alone, launch sweep
    PYTHONPATH=/path/to/sparsify python bench/topk_kernels.py --sparsify   # + eai-sparsify

A step is: top_acts, top_idx = topk_encode(x, ...); x_hat = topk_decode(...) + b_dec;
fvu = sum((x_hat - x)^2) / sum((x - mean x)^2); fvu.backward(). No optimizer step (the
same for every backend). Backends:

- ``torch``:  kernels/interp_kernels/topk.py (dense GEMM + topk forward, sparse torch
  backward, torch embedding_bag decoder).
- ``triton``: the same forward GEMM + topk, triton decoder and sparse encoder backward.
- ``dense``:  plain autograd, the way SAELens/dictionary_learning compute it: dense
  [N, M] codes scattered from the topk, a dense decoder GEMM, dense backward.
- ``sparsify``: eai-sparsify's ``SparseCoder.forward`` (its own bf16 autocast, its triton
  decoder), only in ``amp`` mode, which is how it trains.

Modes: ``fp32`` (float32 parameters and inputs, TF32 matmuls), ``bf16`` (bfloat16
parameters and inputs), ``amp`` (float32 parameters, bf16 autocast: sparsify's setting).
Time: median of CUDA-event-timed steps after warm-up; memory: peak allocated during a
step minus what was allocated before it (parameters, inputs, gradients of the last step
freed first). Prints one table row per shape and mode with tokens/s of each backend and
the ratios triton/torch, triton/dense (and triton/sparsify).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import statistics
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

# Run as a script, this file's folder comes first on sys.path: keep the other bench
# scripts' names from shadowing installed packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
from interp_kernels import topk_decode, topk_encode  # noqa: E402

# (D, expansion, k, N tokens)
FULL_GRID = [
    *[(576, e, k, 16384) for e in (16, 64) for k in (32, 64, 128)],
    *[(2048, e, k, 16384) for e in (16, 64) for k in (32, 128)],
    *[(4096, e, k, 8192) for e in (16, 32) for k in (32, 128)],
]
QUICK_GRID = [(576, 16, 32, 16384), (2048, 32, 64, 16384), (4096, 16, 128, 8192)]
MODES = ("fp32", "bf16", "amp")


def fvu(x_ND: torch.Tensor, x_hat_ND: torch.Tensor) -> torch.Tensor:
    x_ND = x_ND.to(x_hat_ND.dtype)
    return (x_hat_ND - x_ND).pow(2).sum() / (x_ND - x_ND.mean(0)).pow(2).sum()


def make_params(d: int, m: int, dtype: torch.dtype, seed: int = 0) -> dict[str, torch.Tensor]:
    """Tied init with unit-norm decoder rows, as TopKSAE does."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    W_enc = torch.randn(m, d, device="cuda", generator=g) / d**0.5
    W_dec = W_enc / W_enc.norm(dim=1, keepdim=True)
    p = {
        "W_enc": W_enc,
        "b_enc": torch.zeros(m, device="cuda"),
        "W_dec": W_dec.clone(),
        "b_dec": torch.zeros(d, device="cuda"),
    }
    return {k: v.to(dtype).requires_grad_() for k, v in p.items()}


def sparse_step(p: dict[str, torch.Tensor], x: torch.Tensor, k: int, backend: str) -> torch.Tensor:
    acts, idx = topk_encode(x, p["W_enc"], p["b_enc"], p["b_dec"], k, backend=backend)
    x_hat = topk_decode(idx, acts, p["W_dec"], backend=backend) + p["b_dec"]
    return fvu(x, x_hat)


def dense_step(p: dict[str, torch.Tensor], x: torch.Tensor, k: int) -> torch.Tensor:
    pre = F.relu(F.linear(x - p["b_dec"], p["W_enc"], p["b_enc"]))
    acts, idx = pre.topk(k, dim=-1, sorted=False)
    z = torch.zeros_like(pre).scatter(-1, idx, acts)
    x_hat = z @ p["W_dec"].to(z.dtype) + p["b_dec"]
    return fvu(x, x_hat)


def build_sparsify(d: int, m: int, k: int, dtype: torch.dtype) -> Any:
    if "sparsify" not in sys.modules:
        # sparsify/__init__.py imports its trainer (datasets, schedulefree, ...): load the
        # package's modules without it.
        spec = importlib.util.find_spec("sparsify")
        if spec is None:
            sys.exit("--sparsify: put eai-sparsify on PYTHONPATH (pip download eai-sparsify)")
        package = types.ModuleType("sparsify")
        package.__path__ = list(spec.submodule_search_locations or [])
        sys.modules["sparsify"] = package
    from sparsify.config import SparseCoderConfig
    from sparsify.sparse_coder import SparseCoder

    return SparseCoder(d, SparseCoderConfig(num_latents=m, k=k), device="cuda", dtype=dtype)


def time_step(step: Callable[[], torch.Tensor], params: list[torch.Tensor], reps: int) -> dict:
    """Median ms of ``step`` + backward, and the peak memory it adds (MiB)."""

    def run() -> torch.Tensor:
        for t in params:
            t.grad = None
        loss = step()
        loss.backward()
        return loss

    for _ in range(2):
        loss = run()
    torch.cuda.synchronize()
    for t in params:
        t.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        loss = run()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return {
        "ms": statistics.median(times),
        "ms_min": min(times),
        "ms_max": max(times),
        "peak_mib": peak_mib,
        "loss": loss.item(),
    }


def bench_shape(d: int, e: int, k: int, n: int, mode: str, backends: list[str], reps: int):
    m = d * e
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if mode == "amp" else contextlib.nullcontext()
    )
    x = torch.randn(n, d, device="cuda", dtype=dtype)
    x = x + torch.randn(d, device="cuda", dtype=dtype)  # a mean, as real activations have
    rows = {}
    for backend in backends:
        if backend == "sparsify" and mode != "amp":
            continue
        torch.cuda.empty_cache()
        try:
            if backend == "sparsify":
                sae = build_sparsify(d, m, k, dtype)
                params = list(sae.parameters())

                def step(sae=sae):
                    return sae(x).fvu  # sparsify autocasts to bf16 itself
            else:
                p = make_params(d, m, dtype)
                params = list(p.values())

                def step(p=p, backend=backend):
                    with autocast:
                        if backend == "dense":
                            return dense_step(p, x, k)
                        return sparse_step(p, x, k, backend)

            rows[backend] = time_step(step, params, reps)
            rows[backend]["tok_s"] = n / rows[backend]["ms"] * 1e3
        except torch.OutOfMemoryError:
            rows[backend] = {"oom": True}
        finally:
            params = None
            torch.cuda.empty_cache()
    return rows


def fmt_row(d, e, k, n, mode, rows, backends) -> str:
    def tok(b):
        r = rows.get(b)
        if r is None:
            return "-"
        return "OOM" if r.get("oom") else f"{r['tok_s'] / 1e6:.2f}M"

    def mem(b):
        r = rows.get(b)
        return "-" if r is None or r.get("oom") else f"{r['peak_mib'] / 1024:.1f}G"

    def ratio(a, b):
        ra, rb = rows.get(a), rows.get(b)
        if not ra or not rb or ra.get("oom") or rb.get("oom"):
            return "-"
        return f"{rb['ms'] / ra['ms']:.2f}x"

    cells = [f"{d}", f"{e}x", f"{k}", f"{n}", mode]
    cells += [tok(b) for b in backends] + [mem(b) for b in backends]
    cells += [ratio("triton", "torch"), ratio("triton", "dense")]
    if "sparsify" in backends:
        cells.append(ratio("triton", "sparsify"))
    return "| " + " | ".join(cells) + " |"


def _time_ms(fn: Callable[[], Any], reps: int) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


LAUNCH_SWEEP = [  # (bag row bytes, scatter row bytes, dot BLOCK_D, dot BLOCK_K, num_warps)
    (1024, 2048, 256, 32, 4), (512, 1024, 256, 32, 4), (2048, 4096, 256, 32, 4),
    (1024, 2048, 128, 32, 4), (1024, 2048, 256, 16, 4), (1024, 2048, 256, 32, 2),
    (1024, 2048, 256, 32, 8),
]  # fmt: skip


def set_launch(T: Any, launch: tuple[int, int, int, int, int]) -> None:
    T._BAG_ROW_BYTES, T._SCATTER_ROW_BYTES, T._DOT_BLOCK_D, T._DOT_BLOCK_K, T._NUM_WARPS = launch


def micro_one(dtype: torch.dtype, n: int, d: int, m: int, k: int, reps: int) -> None:
    from interp_kernels import triton_topk as T

    idx = torch.randint(0, m, (n, k), device="cuda")
    w = torch.rand(n, k, device="cuda", dtype=dtype)
    W = torch.randn(m, d, device="cuda", dtype=dtype)
    X = torch.randn(n, d, device="cuda", dtype=dtype)

    def torch_scatter():
        wX = (w[:, :, None] * X[:, None, :]).reshape(-1, d).float()
        return torch.zeros(m, d, device="cuda").index_add_(0, idx.reshape(-1), wX)

    bag = _time_ms(lambda: F.embedding_bag(idx, W, mode="sum", per_sample_weights=w), reps)
    dot = _time_ms(lambda: (W[idx] * X[:, None, :]).sum(-1), reps)
    scatter = _time_ms(torch_scatter, reps)
    sort = _time_ms(lambda: T.SortedEntries(idx, m), reps)
    print(f"{dtype}: torch bag {bag:.3f}  gather-dot {dot:.3f}  index_add scatter "
          f"{scatter:.3f}  (triton sort+chunks {sort:.3f})")  # fmt: skip
    entries = T.SortedEntries(idx, m)
    for launch in LAUNCH_SWEEP:
        set_launch(T, launch)
        try:
            t_bag = _time_ms(lambda: T.embedding_bag(idx, w, W), reps)
            t_dot = _time_ms(lambda: T.gather_dot(idx, X, W), reps)
            t_sc = _time_ms(lambda: T.scatter_rows(entries, w, X, with_sum=True), reps)
        except Exception as e:  # a launch setting that does not compile: report, go on
            print(f"  {launch}: failed: {type(e).__name__}: {str(e)[:200]}")
            continue
        print(f"  {launch}: bag {t_bag:.3f}  gather-dot {t_dot:.3f}  scatter {t_sc:.3f}")
    set_launch(T, LAUNCH_SWEEP[0])


def micro(reps: int) -> None:
    """The sparse ops alone at one shape, triton (several launch settings) vs torch."""
    for n, d, m, k in [(16384, 2048, 32768, 64), (16384, 576, 36864, 32)]:
        print(f"\n## sparse ops alone: N={n} D={d} M={m} K={k}, median ms of {reps}")
        print("launch = (bag row bytes, scatter row bytes, dot BLOCK_D, dot BLOCK_K, warps)")
        for dtype in (torch.float32, torch.bfloat16):
            micro_one(dtype, n, d, m, k, reps)


def profile(d: int, e: int, k: int, n: int, mode: str) -> None:
    """Where a step's GPU time goes, per backend: the top kernels by total CUDA time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    m = d * e
    dtype = torch.bfloat16 if mode == "bf16" else torch.float32
    x = torch.randn(n, d, device="cuda", dtype=dtype)
    for backend in ("triton", "torch", "dense"):
        p = make_params(d, m, dtype)
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if mode == "amp"
            else contextlib.nullcontext()
        )

        def step(p=p, backend=backend, autocast=autocast):
            for t in p.values():
                t.grad = None
            with autocast:
                loss = dense_step(p, x, k) if backend == "dense" else sparse_step(p, x, k, backend)
            loss.backward()

        for _ in range(2):
            step()
        torch.cuda.synchronize()
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(3):
                step()
            torch.cuda.synchronize()
        print(f"\n## profile {backend}: D={d} M={m} k={k} N={n} {mode} (3 steps)")
        print(
            prof.key_averages().table(
                sort_by="cuda_time_total", row_limit=14, max_name_column_width=60
            )
        )
        del p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", choices=["full", "quick"], default="full")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--sparsify", action="store_true", help="also time eai-sparsify (amp)")
    ap.add_argument("--micro", action="store_true", help="only the sparse ops alone")
    ap.add_argument("--profile", help="only a profile of one shape: D,expansion,k,N,mode")
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--json", help="write every measurement here")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/topk_kernels.py needs a CUDA GPU")
    torch.set_float32_matmul_precision("high")  # TF32 for float32 GEMMs, as in training
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")  # fmt: skip
    if args.micro:
        micro(args.reps)
        return
    if args.profile:
        d, e, k, n, mode = args.profile.split(",")
        profile(int(d), int(e), int(k), int(n), mode)
        return
    backends = ["torch", "triton", "dense"] + (["sparsify"] if args.sparsify else [])
    grid = FULL_GRID if args.grid == "full" else QUICK_GRID
    head = ["D", "M/D", "k", "N", "mode"]
    head += [f"{b} tok/s" for b in backends] + [f"{b} peak" for b in backends]
    head += ["triton/torch", "triton/dense"] + (["triton/sparsify"] if args.sparsify else [])
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    results = []
    for d, e, k, n in grid:
        for mode in args.modes.split(","):
            rows = bench_shape(d, e, k, n, mode, backends, args.reps)
            results.append({"d": d, "expansion": e, "k": k, "n": n, "mode": mode, **rows})
            print(fmt_row(d, e, k, n, mode, rows, backends), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
