"""Latent collection, side by side: our collect + compact vs eai-delphi 0.1.3's caching.

    python bench/collect_vs_delphi.py                    # default run (minutes), writes RESULTS.md
    python bench/collect_vs_delphi.py --quick --no-write # a smoke run
    python bench/collect_vs_delphi.py --tokens 65536 --reps 5 --mem-scale 4   # bigger

The same model, SAE and tokens on both sides: SmolLM2-135M (fp32, CPU) residual stream
after layer 15 (D=576), a TopK SAE x16 (M=9216 latents), k=32, freshly initialised by
``interp.sae.build_sae`` (seed 0; no SAE trained by our pipeline is kept under runs/) and
saved once with ``interp.sae.save_sae`` in sparsify's layout, which delphi loads. Tokens:
our data pipeline (``interp.data.pack_windows``, bundled corpus, 256-token windows that
start with BOS); delphi gets the very same windows as int32 (the dtype its own
``load_tokenized_data`` yields), batch 32 windows per forward on both sides.

First position: both sides forward and store every position, position 0 (BOS) included:
delphi has no option to skip it, so ours runs with ``data.exclude_first=0`` (our default
of 1 would drop 1/256 of the entries). Both stores then hold the same entries, which the
bench checks (total entries and per-latent firing counts of the two sides).

Each side runs in its own warm process (``bench.anchors.AnchorWorker``; ours in this
venv, delphi in its anchor venv), plus a third for the floor, with the same torch thread
count:

- ours: the real stages, ``interp.stages.collect.run`` for every token slice then
  ``interp.stages.compact.run`` for every 1024-latent range, from a fresh run folder
  (tokens.npy + the SAE folder as the train stage leaves them). Timed without the model
  and SAE loading that happens inside ``collect.run`` (delphi's figure excludes it too);
  that load time is reported beside it.
- delphi: ``LatentCache.run`` (its caching loop: full 30-layer forward, dense scatter,
  ``nonzero``) then ``save_splits`` (5 files) and ``save_config``, as ``populate_cache``
  does minus tokenisation and statistics. Its hooks come from
  ``load_hooks_sparse_coders(..., compile=True)`` as its CLI builds them.
- floor: a bare ``no_grad`` forward of ``AutoModel`` cut after layer 15 (``layers[:16]``,
  final norm = Identity), no hook, no SAE, same windows and batch.

Repetitions are interleaved (order rotates). Peak memory per repetition is the process's
VmHWM after resetting it (``/proc/self/clear_refs`` = 5, after ``gc.collect`` and
``malloc_trim``) just before, so warm workers report each repetition's own peak; a last
round at ``--mem-scale`` times the tokens shows how it grows with the corpus (ours keeps
``slice_tokens`` = the base size, so it runs more collect tasks, one after the other in
one process, with a ``gc.collect`` between them as a task's exit would free its model).
Besides wall-clock rates, tokens per CPU-second (``os.times`` of the worker) are
reported: on a shared machine they depend less on how much CPU each process was given. Reads: every activation of latents [5000, 6000) from our
compacted store (``StoreReader.latent_range``) and from delphi's split files
(``TensorBuffer.load`` with those latents), warm.

delphi 0.1.3 on transformers 5.x loses per-token decoding (``batch_decode`` of a 1-D
tensor): only prompt building (samplers, constructors) decodes tokens; the caching path
timed here stores token ids and never decodes, so nothing is pinned or shimmed.

Shapes: B windows per forward, T = 256, N tokens, M latents, K = k.
"""

from __future__ import annotations

import argparse
import cProfile
import ctypes
import gc
import io
import json
import logging
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.anchors import DELPHI, Anchor, AnchorWorker, cache_root, ensure_venv, read_stamp  # noqa: E402
from interp.runs import atomic_write_text  # noqa: E402
from interp.stages.context import StageContext  # noqa: E402

log = logging.getLogger("bench.collect_vs_delphi")

LAYER = 15
HOOKPOINT = f"layers.{LAYER}"
CTX_LEN = 256
EXPANSION = 16
K = 32
D_IN = 576
N_LATENTS = EXPANSION * D_IN
LM_BATCH = 32  # windows per forward, both sides (delphi's CacheConfig.batch_size default)
RANGE_LATENTS = 1024
N_SPLITS = 5  # delphi's CacheConfig.n_splits default
READ_RANGE = (5000, 6000)  # spans two of our ranges and two of delphi's splits
MODEL = "smollm2-135m"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
BEGIN, END = "<!-- collect_vs_delphi:begin -->", "<!-- collect_vs_delphi:end -->"
OURS = Anchor(name="interp", packages=())  # names our own side's worker; never built


# ---------------------------------------------------------------------- process memory


def reset_peak_rss() -> None:
    """Free what earlier requests left behind, then reset VmHWM to the current RSS.

    ``gc.collect`` + ``malloc_trim`` first, so a repetition's peak does not start from
    a previous one's garbage or retained heap (a fresh process would not have them).
    Resetting the peak needs Linux >= 4.0.
    """
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def rss_mib(field: str = "VmHWM") -> float:
    """``VmHWM`` (peak) or ``VmRSS`` (now) of this process, MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    t = os.times()
    return t.user + t.system


def dir_bytes(path: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in path.rglob(pattern) if p.is_file())


# ------------------------------------------------------------------------------ inputs


def bench_windows(n_windows: int) -> np.ndarray:
    """[n_windows, T] token ids from our pipeline (bundled corpus, BOS first), cached."""
    from interp.data import pack_windows
    from interp.models import load_tokenizer
    from interp.runs import atomic_write_bytes

    path = cache_root() / "bench" / "collect_vs_delphi" / f"windows-{n_windows}.npy"
    if not path.exists():
        from interp.config import DataConfig

        cfg = DataConfig(source="bundled", ctx_len=CTX_LEN, max_tokens=n_windows * CTX_LEN)
        log.info("tokenising the bundled corpus into %d windows of %d", n_windows, CTX_LEN)
        windows = pack_windows(cfg, load_tokenizer(MODEL))
        if len(windows) < n_windows:
            raise ValueError(f"the bundled corpus gave {len(windows)} < {n_windows} windows")
        buf = io.BytesIO()
        np.save(buf, windows[:n_windows].astype(np.uint32))
        atomic_write_bytes(path, buf.getvalue())
    return np.load(path)


def bench_sae(root: Path) -> Path:
    """A fresh TopK x16 k=32 SAE (seed 0) saved in sparsify's layout: ``root/layers.15``."""
    import torch

    from interp.config import SAEConfig
    from interp.sae import build_sae, save_sae

    cfg = SAEConfig(architecture="topk", expansion_factor=EXPANSION, k=K)
    sae = build_sae(cfg, D_IN, generator=torch.Generator().manual_seed(0))
    return save_sae(sae, root / HOOKPOINT)


# ----------------------------------------------------------------------------- our side


def bench_config(root: Path, n_tokens: int, slice_tokens: int) -> Any:
    from interp.config import (
        CollectConfig,
        DataConfig,
        ModelConfig,
        RunConfig,
        SAEConfig,
        TrainConfig,
    )

    return RunConfig(
        name="bench",
        out_dir=str(root),
        layer=LAYER,
        model=ModelConfig(name=MODEL, dtype="float32", device="cpu"),
        data=DataConfig(source="bundled", ctx_len=CTX_LEN, exclude_first=0, max_tokens=10**9),
        sae=SAEConfig(architecture="topk", expansion_factor=EXPANSION, k=K),
        train=TrainConfig(num_tokens=CTX_LEN),  # one window, ahead of the collect split
        collect=CollectConfig(
            num_tokens=n_tokens,
            slice_tokens=slice_tokens,
            range_latents=RANGE_LATENTS,
            lm_batch_size=LM_BATCH,
        ),
    )


class _LoadTimer:
    """Times the model and SAE loading that ``collect.run`` does inside itself.

    Wraps ``interp.models.load.load_subject`` and ``interp.sae.io.load_sae`` (which the
    stage resolves at call time through the packages' lazy exports): timing only.
    """

    def __init__(self) -> None:
        import interp.models.load as models_load
        import interp.sae.io as sae_io

        self.seconds = 0.0
        self.cpu = 0.0
        for module, name in ((models_load, "load_subject"), (sae_io, "load_sae")):
            setattr(module, name, self._timed(getattr(module, name)))

    def _timed(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t0, c0 = time.perf_counter(), cpu_seconds()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.cpu += cpu_seconds() - c0

        return wrapper


def _never_stop() -> bool:
    return False


class OurSide:
    """Our real collect and compact stages on a fresh run folder per request."""

    def __init__(self, args: dict[str, Any]) -> None:
        import torch

        torch.set_num_threads(args["threads"])
        self.windows = np.load(args["windows"], mmap_mode="r")
        self.sae_dir = Path(args["sae"])
        self.tmp = Path(args["tmp"])
        self.loads = _LoadTimer()
        self._n = 0

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        n_windows, slice_tokens = req["n_windows"], req["slice_tokens"]
        self._n += 1
        root = self.tmp / f"ours-{self._n}"
        cfg = bench_config(root, n_windows * CTX_LEN, slice_tokens)
        paths = self._prepare(cfg, root, n_windows)
        try:
            out = self._run(cfg, paths, req.get("profile", False))
            out.update(self._measure_store(paths.store_dir(), req.get("read_reps", 0)))
        finally:
            shutil.rmtree(root, ignore_errors=True)
        return out

    def _prepare(self, cfg: Any, root: Path, n_windows: int) -> Any:
        """tokens.npy (one train window, then the collect windows) and the SAE folder,
        where the train stage would have left them."""
        from interp.runs import RunPaths

        paths = RunPaths(root, cfg)
        tokens = np.concatenate([self.windows[:1], self.windows[:n_windows]]).astype(np.uint32)
        paths.tokens_file().parent.mkdir(parents=True, exist_ok=True)
        np.save(paths.tokens_file(), tokens)
        shutil.copytree(self.sae_dir, paths.sae_dir())
        return paths

    def _run(self, cfg: Any, paths: Any, profile: bool) -> dict[str, Any]:
        from interp.plan import intervals
        from interp.stages import collect, compact

        prof = cProfile.Profile() if profile else None
        reset_peak_rss()
        rss0 = rss_mib("VmRSS")
        load0, load_cpu0 = self.loads.seconds, self.loads.cpu
        if prof:
            prof.enable()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        for task in intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens):
            collect.run(StageContext.of(cfg, paths, task, _never_stop))
            # Each array task is its own process on a cluster. Here they share one, and
            # the subject model of a finished task sits in a reference cycle (its hook
            # closures) until the cyclic GC runs: free it, as the task's exit would.
            gc.collect()
        t1 = time.perf_counter()
        for task in intervals(N_LATENTS, cfg.collect.range_latents):
            compact.run(StageContext.of(cfg, paths, task, _never_stop))
        t2 = time.perf_counter()
        cpu = cpu_seconds() - cpu0
        if prof:
            prof.disable()
        load = self.loads.seconds - load0
        out = {
            "tokens": cfg.collect.num_tokens,
            "collect_s": t1 - t0 - load,
            "compact_s": t2 - t1,
            "load_s": load,
            "seconds": t2 - t0 - load,
            "cpu_s": cpu - (self.loads.cpu - load_cpu0),
            "peak_mib": rss_mib("VmHWM"),
            "rss0_mib": rss0,
        }
        if prof:
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(22)
            out["profile"] = text.getvalue()
        return out

    def _measure_store(self, store: Path, read_reps: int) -> dict[str, Any]:
        from interp.store import StoreReader

        reader = StoreReader(store)
        nnz = sum(r.nnz for r in reader.ranges)
        counts = reader.stats(0, N_LATENTS).count
        ranges = [r.path for r in reader.ranges]
        out: dict[str, Any] = {
            "nnz": nnz,
            "counts": counts.tolist(),
            "bytes_ranges": dir_bytes(store / "ranges"),
            "bytes_csr": sum(dir_bytes(r / a) for r in ranges for a in ("tok", "val", "offsets")),
            "bytes_stats": sum(
                dir_bytes(r / a) for r in ranges for a in ("count", "max", "mean", "quantiles")
            ),
            "bytes_token_ids": sum(dir_bytes(s.path / "tokens") for s in reader.slices),
            "bytes_slices": dir_bytes(store / "slices"),
            "bytes_total": dir_bytes(store),
            "n_slices": len(reader.slices),
            "n_ranges": len(reader.ranges),
        }
        if read_reps:
            seconds, entries = [], 0
            for _ in range(read_reps):
                t0 = time.perf_counter()
                csr = StoreReader(store).latent_range(*READ_RANGE)
                seconds.append(time.perf_counter() - t0)
                entries = csr.nnz
            out.update(read_s=seconds, read_entries=entries)
        return out


class BareForward:
    """The floor: ``AutoModel`` cut after the hook layer, no hook, no SAE."""

    def __init__(self, args: dict[str, Any]) -> None:
        import torch
        from transformers import AutoModel

        from interp.models import resolve_model

        torch.set_num_threads(args["threads"])
        self.windows = np.load(args["windows"], mmap_mode="r")
        model = AutoModel.from_pretrained(resolve_model(MODEL), dtype=torch.float32)
        model.layers = model.layers[: LAYER + 1]
        model.norm = torch.nn.Identity()
        self.model = model.eval()

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        import torch

        n = req["n_windows"]
        reset_peak_rss()
        cpu0 = cpu_seconds()
        t0 = time.perf_counter()
        with torch.no_grad():
            for b0 in range(0, n, LM_BATCH):
                ids_BT = torch.from_numpy(self.windows[b0 : min(b0 + LM_BATCH, n)].astype(np.int64))
                self.model(input_ids=ids_BT, use_cache=False)
        return {
            "tokens": n * CTX_LEN,
            "seconds": time.perf_counter() - t0,
            "cpu_s": cpu_seconds() - cpu0,
            "peak_mib": rss_mib("VmHWM"),
        }


LOCAL_WORKER = r"""
import sys
sys.path.insert(0, ARGS["repo"])
from bench import collect_vs_delphi as bench

side = getattr(bench, ARGS["side"])(ARGS)


def handle(req):
    return side.handle(req)
"""


# -------------------------------------------------------------------------- delphi side

DELPHI_WORKER = r"""
import ctypes, gc, os, shutil, time
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(ARGS["threads"])
from transformers import AutoModel
from delphi.config import CacheConfig, RunConfig
from delphi.latents import LatentCache
from delphi.latents.loader import TensorBuffer
from delphi.sparse_coders import load_hooks_sparse_coders

HOOK = ARGS["hookpoint"]
windows = np.load(ARGS["windows"], mmap_mode="r")
# The CLI on a CPU: dtype "auto" (fp32 here), no device_map (it hard-codes cuda).
model = AutoModel.from_pretrained(ARGS["model"], dtype="auto")
run_cfg = RunConfig(
    cache_cfg=CacheConfig(batch_size=ARGS["lm_batch"], cache_ctx_len=ARGS["ctx"],
                          n_splits=ARGS["n_splits"]),
    constructor_cfg=None, sampler_cfg=None,
    model=ARGS["model"], sparse_model=ARGS["sae_root"], hookpoints=[HOOK],
)
hooks, transcode = load_hooks_sparse_coders(model, run_cfg, compile=True)
_n = [0]


def _peak_reset():
    # As the bench's reset_peak_rss: drop earlier garbage and retained heap first.
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")


def _mib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024


def _read(latents_dir, lo, hi):
    # What LatentDataset does for latents [lo, hi): open every split file that holds
    # some of them, load it whole, keep the wanted latents (torch.isin).
    wanted = torch.arange(lo, hi)
    entries = 0
    for path in sorted(latents_dir.glob("*.safetensors")):
        start, end = (int(x) for x in path.stem.split("_"))
        if end < lo or start >= hi:
            continue
        locations, activations, _ = TensorBuffer(str(path), HOOK, latents=wanted).load()
        entries += len(activations)
    return entries


def handle(req):
    n, batch = req["n_windows"], req.get("batch", ARGS["lm_batch"])
    _n[0] += 1
    root = Path(ARGS["tmp"]) / f"delphi-{_n[0]}"
    tokens = torch.from_numpy(windows[:n].astype(np.int32))
    _peak_reset()
    rss0 = _mib("VmRSS")
    cache = LatentCache(model, hooks, batch_size=batch, transcode=transcode,
                        log_path=root / "log")
    (root / "log").mkdir(parents=True)
    c0 = os.times()
    t0 = time.perf_counter()
    cache.run(n * ARGS["ctx"], tokens)
    t1 = time.perf_counter()
    cache.save_splits(n_splits=ARGS["n_splits"], save_dir=root / "latents")
    cache.save_config(save_dir=root / "latents", cfg=run_cfg.cache_cfg,
                      model_name=ARGS["model"])
    t2 = time.perf_counter()
    c1 = os.times()
    peak = _mib("VmHWM")
    c = cache.cache
    held = sum(t.nbytes for d in (c.latent_locations, c.latent_activations)
               for t in d.values())
    held_batches = sum(t.nbytes for d in (c.latent_locations_batches,
                                          c.latent_activations_batches)
                       for ts in d.values() for t in ts)
    nnz = int(c.latent_activations[HOOK].numel())
    latents_dir = root / "latents" / HOOK
    split_bytes = sum(p.stat().st_size for p in latents_dir.glob("*.safetensors"))
    out = {
        "tokens": n * ARGS["ctx"],
        "run_s": t1 - t0,
        "save_s": t2 - t1,
        "seconds": t2 - t0,
        "cpu_s": c1.user + c1.system - c0.user - c0.system,
        "peak_mib": peak,
        "rss0_mib": rss0,
        "nnz": nnz,
        "n_inf": int(torch.isinf(c.latent_activations[HOOK].half()).sum()),
        "ram_bytes": held,
        "ram_bytes_batches": held_batches,
        "bytes_splits": split_bytes,
        "bytes_total": sum(p.stat().st_size for p in root.rglob("*") if p.is_file()),
        "counts": cache.hookpoint_firing_counts[HOOK].tolist(),
    }
    reps = req.get("read_reps", 0)
    if reps:
        seconds = []
        for _ in range(reps):
            t = time.perf_counter()
            entries = _read(latents_dir, *ARGS["read_range"])
            seconds.append(time.perf_counter() - t)
        out.update(read_s=seconds, read_entries=entries)
    del cache
    shutil.rmtree(root, ignore_errors=True)
    return out
"""


# ------------------------------------------------------------------ read at scale


def synthetic_read(n_tokens: int, reps: int, slice_tokens: int = 65_536) -> dict[str, Any]:
    """Read latents READ_RANGE from a store of ``n_tokens`` synthetic TopK codes.

    The bench's real store is small (its read is a few ms); this one has the entry count
    of a realistic collect. Codes: k uniform latent ids per token (M = 9216), log-normal
    values; written and compacted by the real store code (``write_slice``,
    ``compact_range``), then read warm with ``StoreReader.latent_range``.
    """
    from interp.store import StoreReader, compact_range, write_slice

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-read-") as tmp:
        store = Path(tmp) / "store"
        t0 = time.perf_counter()
        slices = []
        for i, start in enumerate(range(0, n_tokens, slice_tokens)):
            n = min(slice_tokens, n_tokens - start)
            group = store / "slices" / f"s{i:05d}"
            write_slice(
                group,
                token_start=start,
                token_stop=start + n,
                latent_idx=rng.integers(0, N_LATENTS, (n, K)),
                latent_val=rng.lognormal(0.0, 1.0, (n, K)).astype(np.float32),
                token_ids=rng.integers(0, 49_152, n).astype(np.uint32),
                keep=np.ones(n, bool),
                n_latents=N_LATENTS,
                token_dtype="uint16",
            )
            slices.append(group)
        t1 = time.perf_counter()
        for i, lo in enumerate(range(0, N_LATENTS, RANGE_LATENTS)):
            hi = min(lo + RANGE_LATENTS, N_LATENTS)
            compact_range(
                store,
                store / "ranges" / f"r{i:05d}",
                latent_start=lo,
                latent_stop=hi,
                slices=slices,
            )
        t2 = time.perf_counter()
        seconds, entries = [], 0
        for _ in range(reps):
            t = time.perf_counter()
            entries = StoreReader(store).latent_range(*READ_RANGE).nnz
            seconds.append(time.perf_counter() - t)
    log.info("synthetic store: write %.1f s, compact %.1f s", t1 - t0, t2 - t1)
    return {
        "tokens": n_tokens,
        "read_s": seconds,
        "read_entries": entries,
        "write_s": t1 - t0,
        "compact_s": t2 - t1,
    }


# ------------------------------------------------------------------------- measuring


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _rate(r: dict[str, Any]) -> float:
    return r["tokens"] / r["seconds"]


def run_bench(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """Warm-up, ``reps`` interleaved timed rounds, then a memory round at the larger size."""
    n_base = args.tokens // CTX_LEN
    n_big = n_base * max(args.mem_scale, 1)
    windows = bench_windows(n_big)
    results: dict[str, Any] = {"timed": {s: [] for s in ("ours", "delphi", "bare")}}
    loads: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-collect-") as tmp_str:
        tmp = Path(tmp_str)
        np.save(tmp / "windows.npy", windows)
        sae_root = tmp / "sae"
        bench_sae(sae_root)
        from interp.models import resolve_model

        common = {"windows": str(tmp / "windows.npy"), "threads": threads, "tmp": str(tmp)}
        local = {**common, "repo": str(REPO), "sae": str(sae_root / HOOKPOINT)}
        delphi_args = {
            **common,
            "model": str(resolve_model(MODEL)),
            "sae_root": str(sae_root),
            "hookpoint": HOOKPOINT,
            "lm_batch": LM_BATCH,
            "ctx": CTX_LEN,
            "n_splits": N_SPLITS,
            "read_range": list(READ_RANGE),
        }
        py = sys.executable
        with (
            AnchorWorker(OURS, LOCAL_WORKER, {**local, "side": "OurSide"}, python=py) as ours,
            AnchorWorker(OURS, LOCAL_WORKER, {**local, "side": "BareForward"}, python=py) as bare,
            AnchorWorker(DELPHI, DELPHI_WORKER, delphi_args) as delphi,
        ):
            base_slice = n_base * CTX_LEN
            sides: dict[str, Callable[[int, dict[str, Any]], dict[str, Any]]] = {
                "ours": lambda n, extra: ours.request(
                    {"n_windows": n, "slice_tokens": base_slice, **extra}
                ),
                "delphi": lambda n, extra: delphi.request({"n_windows": n, **extra}),
                "bare": lambda n, extra: bare.request({"n_windows": n}),
            }
            log.info("warm-up: 4 windows per side")
            results["warmup"] = {
                "ours": sides["ours"](4, {}),
                "delphi": sides["delphi"](4, {"batch": 4}),
                "bare": sides["bare"](4, {}),
            }
            names = list(sides)
            for i in range(args.reps):
                for name in names[i % 3 :] + names[: i % 3]:
                    loads.append(os.getloadavg()[0])
                    extra = {"read_reps": args.read_reps} if i == args.reps - 1 else {}
                    r = sides[name](n_base, extra)
                    results["timed"][name].append(r)
                    log.info("rep %d/%d %-7s %7.0f tok/s", i + 1, args.reps, name, _rate(r))
            if args.mem_scale > 1:
                results["big"] = {}
                for name in names:
                    loads.append(os.getloadavg()[0])
                    r = sides[name](n_big, {"read_reps": args.read_reps})
                    results["big"][name] = r
                    log.info("x%d %-7s %7.0f tok/s", args.mem_scale, name, _rate(r))
            if args.profile:
                log.info("profiling one more repetition of ours")
                results["profile"] = sides["ours"](n_base, {"profile": True})["profile"]
            loads.append(os.getloadavg()[0])
    results["loads"] = loads
    results["argv"] = sys.argv[1:]
    results["machine"] = machine()
    results["date"] = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
    return results


# --------------------------------------------------------------------------- report


def _fmt(values: list[float], spec: str = ",.0f") -> str:
    med, lo, hi = median_range(values)
    return f"{med:{spec}} ({lo:{spec}}–{hi:{spec}})"


def _speed_row(label: str, s: dict[str, Any], key: str) -> str:
    cpu = s["cpu"].get(key)
    cpu_cell = _fmt(cpu) if cpu else "–"
    return f"| {label} | {_fmt(s[key])} | {max(s[key]):,.0f} | {cpu_cell} |"


def _ratio_row(label: str, s: dict[str, Any], a: str, b: str, goal: str) -> str:
    """Median (range) of the per-repetition ratios of wall rates; the ratio of each
    side's fastest repetition (the least disturbed by other load); the ratio of the
    median tokens per CPU-second (insensitive to how much CPU the process was given)."""
    med, lo, hi = median_range([x / y for x, y in zip(s[a], s[b])])
    best = max(s[a]) / max(s[b])
    if a in s["cpu"] and b in s["cpu"]:
        cpu = f"{statistics.median(s['cpu'][a]) / statistics.median(s['cpu'][b]):.2f}×"
    else:
        cpu = "–"
    return f"| {label} | **{med:.2f}×** ({lo:.2f}–{hi:.2f}) | {best:.2f}× | {cpu} | {goal} |"


def summary(res: dict[str, Any]) -> dict[str, Any]:
    """Rates, ratios (per round, each pair measured back to back) and sizes."""
    t = res["timed"]
    ours = [_rate(r) for r in t["ours"]]
    delphi = [_rate(r) for r in t["delphi"]]
    delphi_run = [r["tokens"] / r["run_s"] for r in t["delphi"]]
    bare = [_rate(r) for r in t["bare"]]
    ours_collect = [r["tokens"] / r["collect_s"] for r in t["ours"]]
    last_o, last_d = t["ours"][-1], t["delphi"][-1]
    counts_o, counts_d = np.array(last_o["counts"]), np.array(last_d["counts"])
    return {
        "ours": ours,
        "ours_collect": ours_collect,
        "delphi": delphi,
        "delphi_run": delphi_run,
        "bare": bare,
        "cpu": {
            name: [r["tokens"] / r["cpu_s"] for r in t[name]]
            for name in ("ours", "delphi", "bare")
            if all(r.get("cpu_s") for r in t[name])
        },
        "nnz": (last_o["nnz"], last_d["nnz"]),
        "counts_equal": float(np.mean(counts_o == counts_d)),
        "counts_max_diff": int(np.abs(counts_o - counts_d).max()),
    }


ANCHOR_TOKENS = 204_800  # the corpus of delphi's measured anchor (reference)


def sizes(o: dict[str, Any], d: dict[str, Any]) -> dict[str, float]:
    """Bytes on disk per active entry of one store size, both sides."""
    n = o["nnz"]
    per_latent = o["bytes_ranges"] - o["bytes_csr"]  # stats + zarr metadata: fixed per latent
    like = (o["bytes_csr"] + o["bytes_token_ids"]) / n
    return {
        "tokens": o["tokens"],
        "nnz": n,
        "like": like,
        "reader": (o["bytes_ranges"] + o["bytes_token_ids"]) / n,
        "slices": o["bytes_slices"] / n,
        "delphi": d["bytes_splits"] / d["nnz"],
        "per_latent": per_latent / N_LATENTS,
        "anchor": like + per_latent / (ANCHOR_TOKENS * K),
    }


def size_table(res: dict[str, Any]) -> list[str]:
    runs = [(res["timed"]["ours"][-1], res["timed"]["delphi"][-1])]
    if res.get("big"):
        runs.append((res["big"]["ours"], res["big"]["delphi"]))
    rows = [
        "| bytes on disk per active entry | ours: CSR (tok, val, offsets) + token ids "
        "| ours: all a reader opens (+ per-latent stats, zarr metadata) | ours: slice groups "
        "| delphi: split files | ours / delphi, like for like | ours / delphi, all "
        "(goal ≤ 0.33) |",
        "|---|---|---|---|---|---|---|",
    ]
    for o, d in runs:
        z = sizes(o, d)
        rows.append(
            f"| {z['tokens']:,} tokens, {z['nnz']:,} entries | {z['like']:.2f} | "
            f"{z['reader']:.2f} | {z['slices']:.2f} | {z['delphi']:.2f} | "
            f"{z['like'] / z['delphi']:.2f} | **{z['reader'] / z['delphi']:.2f}** |"
        )
    z = sizes(*runs[-1])
    rows += [
        "",
        f"Per-latent stats (count, max, mean, 11 quantile edges) and zarr metadata cost a "
        f"fixed {z['per_latent']:.0f} B per latent, a large share at this toy corpus "
        f"({z['nnz'] / N_LATENTS:.0f} entries per latent); *derived* at the anchor's "
        f"{ANCHOR_TOKENS:,}-token corpus: {z['anchor']:.2f} B per entry "
        f"({z['anchor'] / z['delphi']:.2f}× delphi's, which is constant in the corpus size "
        "until its uint16 locations overflow).",
    ]
    return rows


def machine() -> str:
    import platform

    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()}-core {cpu}, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def _memory_rows(res: dict[str, Any], args: argparse.Namespace) -> list[str]:
    t, big = res["timed"], res.get("big")
    rows = []
    for name, label in (("ours", "ours (collect + compact)"), ("delphi", "delphi (run + save)")):
        peaks = [r["peak_mib"] for r in t[name]]
        cells = [label, _fmt(peaks), f"{t[name][-1]['rss0_mib']:,.0f}"]
        if big:
            r = big[name]
            cells += [f"{r['peak_mib']:,.0f}", f"{r['peak_mib'] - statistics.median(peaks):+,.0f}"]
        rows.append("| " + " | ".join(cells) + " |")
    bare = [r["peak_mib"] for r in t["bare"]]
    cells = ["bare forward (model resident)", _fmt(bare), "–"]
    if big:
        cells += [f"{big['bare']['peak_mib']:,.0f}", "–"]
    rows.append("| " + " | ".join(cells) + " |")
    return rows


def render(
    args: argparse.Namespace, res: dict[str, Any], threads: int, versions: dict[str, str]
) -> str:
    import torch

    s = summary(res)
    loads = res["loads"]
    n_tok = res["timed"]["ours"][-1]["tokens"]
    read = res.get("big", res["timed"])
    read_o = read["ours"] if isinstance(read["ours"], dict) else read["ours"][-1]
    read_d = read["delphi"] if isinstance(read["delphi"], dict) else read["delphi"][-1]
    lines = [
        f"## Latent collection vs eai-delphi — {res.get('date', f'{datetime.now(UTC):%Y-%m-%d %H:%M}')} UTC",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/collect_vs_delphi.py', *res['argv']])}` on a "
        f"{res['machine']}; torch {torch.__version__}, {threads} torch threads in every process; "
        f"eai-delphi {versions.get('eai-delphi', '?')} (+ eai-sparsify "
        f"{versions.get('eai-sparsify', '?')}, transformers {versions.get('transformers', '?')}) "
        "in its own venv (`bench/anchors.py` DELPHI: `--no-deps`, no vllm). Load average "
        f"(1 min) during the runs: {min(loads):.1f}–{max(loads):.1f}, median "
        f"{statistics.median(loads):.1f} — a shared machine: read the side-by-side ratios.",
        "",
        f"SmolLM2-135M fp32 on CPU, residual stream after layer {LAYER}, TopK ×{EXPANSION} "
        f"({N_LATENTS} latents, k={K}), freshly initialised (`build_sae`, seed 0; no trained "
        "SAE under runs/), saved once in sparsify's layout and loaded by both sides. "
        f"{n_tok:,} tokens per repetition ({n_tok // CTX_LEN} windows of {CTX_LEN} from "
        f"`pack_windows`, BOS first), {LM_BATCH} windows per forward on both sides; every "
        "position stored on both sides, BOS at position 0 included (ours: "
        "`data.exclude_first=0`). Medians (range) of "
        f"{len(res['timed']['ours'])} interleaved repetitions after a warm-up; ratios are per round "
        "(every side measured once per round, in rotating order).",
        "",
        "| what | tok/s, wall | fastest repetition | tokens per CPU-second |",
        "|---|---|---|---|",
        _speed_row("ours: `collect.run` + `compact.run` (model load excluded)", s, "ours"),
        _speed_row("ours: collect alone", s, "ours_collect"),
        _speed_row("delphi: `LatentCache.run` + `save_splits`", s, "delphi"),
        _speed_row("delphi: `LatentCache.run` alone", s, "delphi_run"),
        _speed_row(f"bare forward cut after layer {LAYER}", s, "bare"),
        "",
        "| ratio | per repetition, wall | best / best | CPU time | goal |",
        "|---|---|---|---|---|",
        _ratio_row("**ours / delphi** (run + save)", s, "ours", "delphi", "≥ 1.0×"),
        _ratio_row("ours / delphi's caching loop alone", s, "ours", "delphi_run", ""),
        _ratio_row("**ours / bare forward**", s, "ours", "bare", "≥ 0.8×"),
        _ratio_row("ours collect alone / bare forward", s, "ours_collect", "bare", ""),
        "",
        *size_table(res),
        "",
        f"Entries stored: ours {s['nnz'][0]:,}, delphi {s['nnz'][1]:,}; per-latent firing "
        f"counts identical for {100 * s['counts_equal']:.1f} % of latents (max difference "
        f"{s['counts_max_diff']}).",
        "",
        "| peak RSS, MiB (VmHWM per repetition) | at "
        + f"{n_tok:,} tokens | RSS before |"
        + (f" at {res['big']['ours']['tokens']:,} tokens | growth |" if res.get("big") else ""),
        "|---|---|---|" + ("---|---|" if res.get("big") else ""),
        *_memory_rows(res, args),
        "",
        f"Reading every activation of latents [{READ_RANGE[0]}, {READ_RANGE[1]}) (warm, "
        f"{read_o['tokens']:,}-token store): ours `StoreReader.latent_range` "
        f"{1000 * statistics.median(read_o['read_s']):.1f} ms for {read_o['read_entries']:,} "
        f"entries (goal ≤ 200 ms); delphi (`TensorBuffer.load` of the 2 split files holding "
        f"them) {1000 * statistics.median(read_d['read_s']):.1f} ms.",
        *synthetic_line(res),
        "",
        *notes(res, s),
    ]
    return "\n".join(lines) + "\n"


def synthetic_line(res: dict[str, Any]) -> list[str]:
    r = res.get("synthetic_read")
    if not r:
        return []
    return [
        f"At scale (synthetic codes, {r['tokens']:,} tokens × k={K} uniform over {N_LATENTS} "
        f"latents, written by `write_slice` in 64Ki-token slices and compacted, "
        f"{r['write_s']:.0f} s + {r['compact_s']:.0f} s): "
        f"{1000 * statistics.median(r['read_s']):.0f} ms "
        f"({1000 * min(r['read_s']):.0f}–{1000 * max(r['read_s']):.0f}) for "
        f"{r['read_entries']:,} entries (goal ≤ 200 ms)."
    ]


def notes(res: dict[str, Any], s: dict[str, Any]) -> list[str]:
    o, d = res["timed"]["ours"], res["timed"]["delphi"]
    last_d = d[-1]
    per_tok = last_d["ram_bytes"] / last_d["tokens"]
    out = [
        f"- ours, per repetition (median): collect {statistics.median(r['collect_s'] for r in o):.1f} s, "
        f"compact {statistics.median(r['compact_s'] for r in o):.2f} s "
        f"({o[-1]['n_ranges']} ranges), plus model + SAE load inside `collect.run` "
        f"{statistics.median(r['load_s'] for r in o):.1f} s (not in the rate). delphi: run "
        f"{statistics.median(r['run_s'] for r in d):.1f} s, save "
        f"{statistics.median(r['save_s'] for r in d):.2f} s.",
        f"- delphi holds {last_d['ram_bytes'] / last_d['nnz']:.0f} B per entry in RAM after "
        f"`run` (int64 location triple + fp32 value), {per_tok / 1024:.2f} KiB per token, "
        "plus the per-batch lists it concatenated from "
        f"({last_d['ram_bytes_batches'] / last_d['nnz']:.0f} B per entry, still referenced): "
        f"≈ {2 * per_tok * 10e6 / 2**30:.1f} GiB at its 10M-token default, growing with "
        "the corpus; ours holds one slice's codes at a time.",
        "- Between collect tasks the bench calls `gc.collect()`: `SubjectModel` "
        "(`interp/models/load.py`) sits in a reference cycle through its hook closures, so "
        "a finished `collect.run` keeps its model (fp32 ≈ 0.5 GiB) until the cyclic GC "
        "runs. Without it, 2 tasks in one process peaked ~0.9 GiB above 1 task; on a "
        "cluster each task is its own process, unaffected.",
    ]
    if last_d.get("n_inf"):
        out.append(
            f"- delphi stored {last_d['n_inf']} activations as fp16 inf (position-0 values "
            "above 65504); ours clips them to 65504 and logs a warning."
        )
    return out


def write_results(section: str) -> None:
    """Replace this bench's section of bench/RESULTS.md (or append it)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(RESULTS, text)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--tokens",
        type=int,
        default=8192,
        help="tokens per timed repetition, a multiple of 8192 (delphi's 32-window batch; "
        "its peak holds two batches' dense codes from its second batch on)",
    )
    p.add_argument("--reps", type=int, default=3, help="interleaved timed repetitions")
    p.add_argument(
        "--mem-scale",
        type=int,
        default=2,
        help="last round at this many times the tokens (1 = none)",
    )
    p.add_argument("--read-reps", type=int, default=5, help="timed reads of the latent range")
    p.add_argument(
        "--read-tokens",
        type=int,
        default=2**20,
        help="tokens of the synthetic store the 1000-latent read is also timed on (0 = skip)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--profile", action="store_true", help="cProfile one more repetition of ours")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    p.add_argument(
        "--quick", action="store_true", help="8192 tokens, 1 repetition, no memory round"
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="re-render the last run's raw figures (kept in the bench cache) without running",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.tokens, args.reps, args.mem_scale, args.read_tokens = 8192, 1, 1, 2**17
    step = LM_BATCH * CTX_LEN
    if args.tokens < step or args.tokens % step:
        raise SystemExit(
            f"--tokens must be a positive multiple of {step} ({LM_BATCH} windows of {CTX_LEN}: "
            "delphi's cache drops a partial last batch)"
        )
    if args.reps < 1 or args.mem_scale < 1 or args.read_reps < 1:
        raise SystemExit("--reps, --mem-scale and --read-reps must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    threads = args.threads or torch.get_num_threads()
    ensure_venv(DELPHI)
    versions = (read_stamp(DELPHI) or {}).get("versions", {})
    last = cache_root() / "bench" / "collect_vs_delphi" / "last.json"
    if args.render_only:
        res = json.loads(last.read_text())
    else:
        res = run_bench(args, threads)
        if args.read_tokens:
            res["synthetic_read"] = synthetic_read(args.read_tokens, args.read_reps)
        atomic_write_text(last, json.dumps(res))
    section = render(args, res, threads, versions)
    print("\n" + section, flush=True)
    if res.get("profile"):
        print(res["profile"], flush=True)
    if not args.no_write:
        write_results(section)
        print(f"wrote {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
