"""SAE training speed, side by side: our trainer vs eai-sparsify 1.3.3 (in its own venv).

    python bench/train_vs_sparsify.py                 # full run, writes bench/RESULTS.md
    python bench/train_vs_sparsify.py --quick --no-write   # a smoke run (minutes)

Same TopK SAE on both sides: SmolLM2-135M residual stream after layer 15 (D=576),
x16 expansion (M=9216), k=32, fp32, SAE batch 8192 vectors, equal torch thread counts.

1. Tokens: our data pipeline (``interp.data.pack_windows``, the bundled corpus, 256-token
   windows starting with BOS). Activations: our cut subject model (fp32), position 0 of
   every window EXCLUDED (our ``data.exclude_first=1``: its norm is ~140x the median);
   shuffled once and cached on disk, so both sides read the very same [N, D] batches.
2. SAE step alone, on the cached batches: ours = ``interp.train.Trainer.train_step`` (TopK
   SAE, fused Adam, LR schedule, decoder renorm, firing counts) with its batch source
   replaced by the cache; sparsify = ``SparseCoder`` + the per-step work of
   ``Trainer.fit`` replayed op for op (mask + clone, renorm, total variance, forward,
   fire mask, float(fvu), backward, parallel-gradient removal, optimizer, dead counts),
   with its default optimizer (signum = ScheduleFree(SignSGD)) and with Adam (+ its
   linear warmup schedule) for a like-for-like.
3. End to end (LM forward + SAE step) on the same token windows: ours = the real
   ``Trainer`` (model cut after layer 15, shuffle buffer, default ``buffer_batches``);
   sparsify = the real ``sparsify.Trainer.fit`` (whole 30-layer ``AutoModel``, default
   signum, ``exclude_tokens=[BOS]`` so it trains on the same positions), paced step by
   step through a forward pre-hook.

Both sides stay warm in their own processes; repetitions are interleaved (the order
rotates) and the first step of each side is excluded. Figures are medians over
repetitions, with the range. Load average is sampled before and after every measurement.

Shapes: N vectors per SAE batch, D = d_in, M = latents, K = k, B windows, T = ctx_len.
"""

from __future__ import annotations

import argparse
import io
import logging
import math
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.anchors import SPARSIFY, AnchorWorker, cache_root, ensure_venv, read_stamp  # noqa: E402
from interp.config import DataConfig, ModelConfig, RunConfig, SAEConfig, TrainConfig  # noqa: E402
from interp.runs import atomic_write_bytes, atomic_write_text, short_hash  # noqa: E402

log = logging.getLogger("bench.train_vs_sparsify")

LAYER = 15
CTX_LEN = 256
EXPANSION = 16
K = 32
SAE_BATCH = 8192  # vectors per SAE step (sparsify's default: 32 windows x 256)
LM_BATCH = 32  # windows per LM forward, both sides
EXCLUDE_FIRST = 1
MODEL = "smollm2-135m"
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
THP_ENV = "THP_MEM_ALLOC_ENABLE"  # torch's CPU allocator: madvise(MADV_HUGEPAGE) >= 2 MB


def thp_enabled() -> bool:
    return os.environ.get(THP_ENV, "0") not in ("", "0")


def markers() -> tuple[str, str]:
    """This bench's section of RESULTS.md (one per allocator setting)."""
    key = "train_vs_sparsify" + (":thp" if thp_enabled() else "")
    return f"<!-- {key}:begin -->", f"<!-- {key}:end -->"


# ----------------------------------------------------------------------------- data


def cache_dir() -> Path:
    key = short_hash({"model": MODEL, "layer": LAYER, "ctx": CTX_LEN, "v": 1})
    return cache_root() / "bench" / f"train_vs_sparsify-{key}"


def _save_npy(path: Path, arr: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(path, buf.getvalue())


def bench_windows(n_windows: int) -> np.ndarray:
    """[n_windows, T] token ids from our pipeline (bundled corpus, BOS first), cached."""
    path = cache_dir() / f"windows-{n_windows}.npy"
    if not path.exists():
        from interp.data import pack_windows
        from interp.models import load_tokenizer

        cfg = DataConfig(source="bundled", ctx_len=CTX_LEN, max_tokens=n_windows * CTX_LEN)
        log.info("tokenising the bundled corpus into %d windows of %d", n_windows, CTX_LEN)
        windows = pack_windows(cfg, load_tokenizer(MODEL)).astype(np.int64)
        if len(windows) < n_windows:
            raise ValueError(f"the bundled corpus gave {len(windows)} < {n_windows} windows")
        _save_npy(path, windows[:n_windows])
    return np.load(path)


def load_subject_model(dtype: str = "float32") -> Any:
    """Our subject model (``interp.models.load_subject``), cut after layer 15."""
    from interp.models import load_subject

    return load_subject(ModelConfig(name=MODEL, dtype=dtype, device="cpu"), LAYER)


def cached_activations(windows_BT: np.ndarray, num_batches: int) -> Path:
    """Layer-15 activations of the first windows, position 0 excluded, shuffled once:
    [num_batches * SAE_BATCH, D] float32 in an .npy file (computed once, then reused)."""
    n_vectors = num_batches * SAE_BATCH
    n_windows = math.ceil(n_vectors / (CTX_LEN - EXCLUDE_FIRST))
    path = cache_dir() / f"acts-{num_batches}x{SAE_BATCH}.npy"
    if path.exists():
        return path
    subject = load_subject_model("float32")
    chunks = []
    t0 = time.perf_counter()
    for start in range(0, n_windows, LM_BATCH):
        ids_BT = torch.from_numpy(windows_BT[start : min(start + LM_BATCH, n_windows)])
        hidden_BTD = subject.hidden(ids_BT)
        chunks.append(hidden_BTD[:, EXCLUDE_FIRST:].reshape(-1, subject.d_in))
        log.info(
            "caching activations: %d / %d windows", min(start + LM_BATCH, n_windows), n_windows
        )
    acts_ND = torch.cat(chunks)
    perm = torch.randperm(len(acts_ND), generator=torch.Generator().manual_seed(0))
    acts_ND = acts_ND[perm[:n_vectors]].contiguous()
    log.info(
        "cached %d vectors from %d windows in %.0f s -> %s",
        len(acts_ND),
        n_windows,
        time.perf_counter() - t0,
        path,
    )
    _save_npy(path, acts_ND.numpy())
    return path


# ----------------------------------------------------------------------------- our side


def bench_config(num_windows: int) -> RunConfig:
    """Our run config for the bench: the defaults, with the bench's shapes and fp32."""
    return RunConfig(
        layer=LAYER,
        model=ModelConfig(name=MODEL, dtype="float32", device="cpu"),
        data=DataConfig(
            source="bundled", ctx_len=CTX_LEN, exclude_first=EXCLUDE_FIRST, max_tokens=10**9
        ),
        sae=SAEConfig(expansion_factor=EXPANSION, k=K),
        train=TrainConfig(
            num_tokens=num_windows * CTX_LEN, batch_size=SAE_BATCH, lm_batch_size=LM_BATCH
        ),
    )


class _NoLM:
    """Stands in for the subject model when batches come from the activation cache."""

    def capture(self, _ids: torch.Tensor) -> dict[str, torch.Tensor]:
        raise AssertionError("the SAE-alone bench must not run the LM")


def _never_stop() -> bool:
    return False


def minor_faults() -> int:
    """Minor page faults of this process so far. On this VM a first touch of a fresh
    4 KiB page costs microseconds, so large per-step allocations show up here."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def page_fault_cost(mib: int = 128, reps: int = 3) -> dict[str, float]:
    """Seconds to fill a fresh ``mib`` MiB tensor vs the same copy into a reused one,
    and the faults the fresh one takes: what a large per-step allocation costs here."""
    src = torch.ones(mib * 2**18)
    dst = torch.empty_like(src).copy_(src)
    fresh, reused = [], []
    f0 = minor_faults()
    for _ in range(reps):
        t0 = time.perf_counter()
        src.clone()
        fresh.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        dst.copy_(src)
        reused.append(time.perf_counter() - t0)
    faults = (minor_faults() - f0) / reps
    return {"mib": mib, "fresh_s": min(fresh), "reused_s": min(reused), "faults": faults}


def build_trainer(subject: Any, windows_BT: np.ndarray, d_in: int, root: Path) -> Any:
    """Our real one-member ``GroupTrainer`` (as ``interp.train.run`` builds it), single
    process, planned over ``windows_BT``; nothing is written under ``root``."""
    from interp.runs import RunPaths
    from interp.stages.train import job_of
    from interp.train import TrainPlan
    from interp.train.distributed import single_process
    from interp.train.loop import GroupTrainer
    from interp.train.stream import Columns

    cfg = bench_config(len(windows_BT))
    columns = Columns([cfg.hookpoint], {cfg.hookpoint: d_in})
    data = cfg.data
    plan = TrainPlan.of(cfg.train, len(windows_BT), data.ctx_len, data.exclude_first)
    jobs = [job_of(cfg, RunPaths(root, cfg))]
    return GroupTrainer(
        jobs, subject, windows_BT, plan, single_process("cpu"), columns, data.exclude_first
    )


def _fvu_sum(trainer: Any) -> float:
    """Running FVU sum of the member's metric interval (to read one step's FVU)."""
    return float(trainer.members[0].interval.sums.get("fvu", 0.0))


class OurSaeStep:
    """Our ``GroupTrainer.train_step`` fed the cached batches (its LM stream never runs).

    Everything of the step runs: forward/backward of the TopK SAE (sparse kernels of
    ``interp_kernels.topk``), the NaN/stop check, decoder-gradient projection, fused Adam, LR
    schedule, decoder renorm, firing counts and metric sums.
    """

    def __init__(self, acts_ND: torch.Tensor, root: Path) -> None:
        self.batches = acts_ND.split(SAE_BATCH)
        dummy = np.zeros((10_000, CTX_LEN), dtype=np.int64)  # plans the LR schedule only
        self.trainer = build_trainer(_NoLM(), dummy, acts_ND.shape[1], root)
        self._i = 0
        self.trainer.next_batch = self._next_batch  # the one seam: batches from the cache

    def _next_batch(self) -> torch.Tensor:
        batch_ND = self.batches[self._i % len(self.batches)]
        self._i += 1
        return batch_ND

    def steps(self, n: int) -> dict[str, list[float]]:
        seconds, fvu, faults = [], [], []
        for _ in range(n):
            before, f0 = _fvu_sum(self.trainer), minor_faults()
            t0 = time.perf_counter()
            self.trainer.train_step(_never_stop)
            seconds.append(time.perf_counter() - t0)
            faults.append(minor_faults() - f0)
            fvu.append(_fvu_sum(self.trainer) - before)
        return {"seconds": seconds, "fvu": fvu, "faults": faults}


class GemmFloor:
    """The encoder GEMM alone, ``x [N, D] @ W_enc.T [D, M] + b_enc``, fp32: the one dense
    product both trainers must compute every step (top-k needs every pre-activation)."""

    def __init__(self, acts_ND: torch.Tensor) -> None:
        self.batches = acts_ND.split(SAE_BATCH)
        g = torch.Generator().manual_seed(0)
        d_in = acts_ND.shape[1]
        self.W_MD = torch.randn(d_in * EXPANSION, d_in, generator=g) / d_in**0.5
        self.b_M = torch.zeros(d_in * EXPANSION)
        self._i = 0

    def steps(self, n: int) -> dict[str, list[float]]:
        seconds = []
        for _ in range(n):
            x_ND = self.batches[self._i % len(self.batches)]
            self._i += 1
            t0 = time.perf_counter()
            torch.nn.functional.linear(x_ND, self.W_MD, self.b_M)
            seconds.append(time.perf_counter() - t0)
        return {"seconds": seconds}


class OurEndToEnd:
    """Our real ``GroupTrainer`` on token windows: LM cut after layer 15 (weights and
    forward in ``dtype``; the SAE is fp32 either way), shuffle buffer (default
    ``train.buffer_batches``), SAE step."""

    def __init__(self, windows_BT: np.ndarray, root: Path, dtype: str) -> None:
        subject = load_subject_model(dtype)
        self.trainer = build_trainer(subject, windows_BT, subject.d_in, root)
        self.lm_s = 0.0
        original = subject.capture

        def timed_capture(ids: torch.Tensor) -> dict[str, torch.Tensor]:
            t0 = time.perf_counter()
            out = original(ids)
            self.lm_s += time.perf_counter() - t0
            return out

        subject.capture = timed_capture  # timing only: the LM share of each step

    def steps(self, n: int) -> dict[str, list[float]]:
        seconds, tokens, lm, faults = [], [], [], []
        stream = self.trainer.stream
        for _ in range(n):
            pos0, self.lm_s, f0 = stream.position, 0.0, minor_faults()
            t0 = time.perf_counter()
            self.trainer.train_step(_never_stop)
            seconds.append(time.perf_counter() - t0)
            faults.append(minor_faults() - f0)
            tokens.append((stream.position - pos0) * CTX_LEN)
            lm.append(self.lm_s)
        return {"seconds": seconds, "tokens": tokens, "lm_seconds": lm, "faults": faults}


# ------------------------------------------------------------------------ sparsify side

SPARSIFY_SAE_WORKER = r"""
import resource
import time
import numpy as np
import torch
from sparsify import SparseCoder, SaeConfig
from sparsify.sign_sgd import SignSGD
from schedulefree import ScheduleFreeWrapper
from transformers import get_linear_schedule_with_warmup

torch.set_num_threads(ARGS["threads"])
torch.set_float32_matmul_precision("high")  # as Trainer.fit does
acts = torch.from_numpy(np.load(ARGS["acts"]))
batches = acts.split(ARGS["batch"])
D = acts.shape[1]


class Side:
    # One SparseCoder + optimizer, stepping exactly as Trainer.fit does for loss_fn="fvu"
    # (grad_acc_steps = micro_acc_steps = 1, auxk_alpha = 0, multi_topk = False).
    def __init__(self, optimizer):
        torch.manual_seed(0)
        self.sae = SparseCoder(D, SaeConfig(expansion_factor=ARGS["expansion"], k=ARGS["k"]),
                               torch.device("cpu"), dtype=torch.float32)
        M = self.sae.num_latents
        self.schedulers = []
        if optimizer == "signum":
            pgs = [dict(params=self.sae.parameters(), lr=5e-3 / (M / 2**14) ** 0.5)]
            self.opt = ScheduleFreeWrapper(SignSGD(pgs), momentum=0.95)
            self.opt.train()
        else:
            pgs = [dict(params=self.sae.parameters(), lr=2e-4 / (M / 2**14) ** 0.5)]
            self.opt = torch.optim.Adam(pgs)
            self.schedulers = [get_linear_schedule_with_warmup(self.opt, 1000, 10_000)]
        self.counts = torch.zeros(M, dtype=torch.long)
        self.did_fire = torch.zeros(M, dtype=torch.bool)
        self.step = 0

    def one(self, batch):
        mask = torch.ones(len(batch), dtype=torch.bool)  # no excluded token in the cache
        outputs = batch
        all_outputs = outputs.detach().clone()
        outputs = outputs[mask]
        sae = self.sae
        if self.step == 0:
            sae.b_dec.data = outputs.mean(0).to(sae.dtype)
        sae.set_decoder_norm_to_unit_norm()
        total_variance = (outputs - outputs.mean(0)).pow(2).sum()
        out = sae(x=outputs, y=outputs, dead_mask=None, total_variance=total_variance)
        self.did_fire[out.latent_indices.flatten()] = True
        fvu = float(out.fvu.detach())
        loss = out.fvu + 0.0 * out.auxk_loss + out.multi_topk_fvu / 8
        loss.backward()
        sae.remove_gradient_parallel_to_decoder_directions()
        self.opt.step()
        self.opt.zero_grad()
        for s in self.schedulers:
            s.step()
        with torch.no_grad():
            self.counts += int(mask.sum())
            self.counts[self.did_fire] = 0
            self.did_fire.zero_()
        self.step += 1
        return fvu


sides = {}


def handle(req):
    name = req["optimizer"]
    if name not in sides:
        sides[name] = Side(name)
    side = sides[name]
    seconds, fvu, faults = [], [], []
    for _ in range(req["n"]):
        batch = batches[side.step % len(batches)]
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0 = time.perf_counter()
        fvu.append(side.one(batch))
        seconds.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return {"seconds": seconds, "fvu": fvu, "faults": faults}
"""

SPARSIFY_E2E_WORKER = r"""
import queue, resource, threading, time, tempfile
import numpy as np
import torch
from datasets import Dataset
from transformers import AutoModel
from sparsify import SaeConfig, Trainer, TrainConfig

torch.set_num_threads(ARGS["threads"])
windows = np.load(ARGS["windows"])
ds = Dataset.from_dict({"input_ids": windows.tolist()}).with_format("torch")
model = AutoModel.from_pretrained(ARGS["model"], dtype=torch.float32)  # as the CLI on CPU
cfg = TrainConfig(
    SaeConfig(expansion_factor=ARGS["expansion"], k=ARGS["k"]),
    batch_size=ARGS["lm_batch"],
    hookpoints=[f"layers.{ARGS['layer']}"],
    exclude_tokens=[ARGS["bos"]],
    log_to_wandb=False,
    save_every=10**9,
    save_dir=tempfile.mkdtemp(),
)
trainer = Trainer(cfg, ds, model)
grants, times = queue.Queue(), queue.Queue()
state = {"t": None, "left": 0, "f": 0}


class Stop(Exception):
    pass


def pace(module, args, kwargs):
    # Step i runs from this hook's return at batch i to its entry at batch i + 1.
    now = time.perf_counter()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    if state["t"] is not None:
        times.put((now - state["t"], faults - state["f"]))
    if state["left"] == 0:
        state["left"] = grants.get()
        if state["left"] is None:
            raise Stop()
    state["left"] -= 1
    state["f"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    state["t"] = time.perf_counter()


model.register_forward_pre_hook(pace, with_kwargs=True)


def run():
    try:
        trainer.fit()
    except Stop:
        pass
    except BaseException as e:
        times.put(e)


threading.Thread(target=run, daemon=True).start()


def handle(req):
    if req.get("op") == "stop":
        grants.put(None)
        return {}
    grants.put(req["n"])
    seconds, faults = [], []
    for _ in range(req["n"]):
        t = times.get()
        if isinstance(t, BaseException):
            raise t
        seconds.append(t[0])
        faults.append(t[1])
    tokens = [ARGS["lm_batch"] * ARGS["ctx"]] * req["n"]
    return {"seconds": seconds, "tokens": tokens, "faults": faults}
"""


# ------------------------------------------------------------------------- measuring


@dataclass
class Series:
    """Per-repetition figures of one side: seconds and tokens of its timed steps."""

    label: str
    reps: list[dict[str, Any]] = field(default_factory=list)

    def add(self, result: dict[str, Any], tokens_per_step: int | None = None) -> None:
        tokens = result.get("tokens") or [tokens_per_step] * len(result["seconds"])
        self.reps.append({**result, "tokens": tokens})

    def rates(self) -> list[float]:
        """Tokens/s of each repetition (its timed steps together)."""
        return [sum(r["tokens"]) / sum(r["seconds"]) for r in self.reps]


def median_range(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def _rotate(items: list[Any], i: int) -> list[Any]:
    return items[i % len(items) :] + items[: i % len(items)]


def interleave(
    sides: dict[str, Callable[[int], dict[str, Any]]],
    series: dict[str, Series],
    reps: int,
    steps: int,
    tokens_per_step: int | None,
    loads: list[float],
) -> None:
    """``reps`` rounds; in each, every side runs ``steps`` timed steps (order rotates)."""
    names = list(sides)
    for i in range(reps):
        for name in _rotate(names, i):
            loads.append(os.getloadavg()[0])
            result = sides[name](steps)
            series[name].add(result, tokens_per_step)
            rate = sum(series[name].reps[-1]["tokens"]) / sum(result["seconds"])
            log.info("rep %d/%d %-24s %8.0f tok/s", i + 1, reps, name, rate)
    loads.append(os.getloadavg()[0])


def bench_sae_step(acts_path: Path, threads: int, reps: int, steps: int) -> dict[str, Any]:
    acts_ND = torch.from_numpy(np.load(acts_path))
    args = {"acts": str(acts_path), "batch": SAE_BATCH, "expansion": EXPANSION, "k": K}
    loads: list[float] = []
    with (
        tempfile.TemporaryDirectory(prefix="bench-train-") as tmp,
        AnchorWorker(SPARSIFY, SPARSIFY_SAE_WORKER, {**args, "threads": threads}) as sp,
    ):
        ours = OurSaeStep(acts_ND, Path(tmp))
        floor = GemmFloor(acts_ND)
        sides: dict[str, Callable[[int], dict[str, Any]]] = {
            "ours (adam)": ours.steps,
            "floor: encoder GEMM alone": floor.steps,
            "sparsify (signum)": lambda n: sp.request({"optimizer": "signum", "n": n}),
            "sparsify (adam)": lambda n: sp.request({"optimizer": "adam", "n": n}),
        }
        for fn in sides.values():
            fn(1)  # warm-up step: b_dec init, optimizer state allocation
        series = {name: Series(name) for name in sides}
        interleave(sides, series, reps, steps, SAE_BATCH, loads)
    return {"series": series, "loads": loads}


def bench_end_to_end(windows_BT: np.ndarray, threads: int, reps: int, steps: int) -> dict[str, Any]:
    from interp.models import load_tokenizer, resolve_model

    bos = load_tokenizer(MODEL).bos_token_id
    if (windows_BT[:, 1:] == bos).any():
        raise AssertionError("BOS occurs past position 0: exclude_tokens would mask more")
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        ours = OurEndToEnd(windows_BT, Path(tmp) / "fp32", "float32")
        ours_bf16 = OurEndToEnd(windows_BT, Path(tmp) / "bf16", ModelConfig().dtype)
        sp_windows = Path(tmp) / "windows.npy"
        np.save(sp_windows, windows_BT[: (reps * steps + 2) * LM_BATCH])  # +1 warm-up, +1 pace
        args = {
            "windows": str(sp_windows),
            "model": str(resolve_model(MODEL)),
            "expansion": EXPANSION,
            "k": K,
            "lm_batch": LM_BATCH,
            "layer": LAYER,
            "bos": int(bos),
            "ctx": CTX_LEN,
            "threads": threads,
        }
        loads: list[float] = []
        with AnchorWorker(SPARSIFY, SPARSIFY_E2E_WORKER, args) as sp:
            sides: dict[str, Callable[[int], dict[str, Any]]] = {
                "ours": ours.steps,
                "ours (default LM dtype)": ours_bf16.steps,
                "sparsify (signum)": lambda n: sp.request({"n": n}),
            }
            log.info("end to end: warm-up step of each side (ours fills its shuffle buffer)")
            warm = {name: fn(1) for name, fn in sides.items()}
            series = {name: Series(name) for name in sides}
            interleave(sides, series, reps, steps, None, loads)
            sp.request({"op": "stop"})
    return {"series": series, "loads": loads, "warmup": warm}


PROFILE_GROUPS = {
    "GEMMs (encoder forward; sparse encoder-gradient product)": ("aten::addmm", "aten::mm"),
    "top-k selection": ("aten::topk",),
    "decoder embedding_bag, forward + backward": ("embedding_bag",),
    "index sort (backward)": ("aten::sort",),
    "bias/activation copies and fills": ("aten::copy_", "aten::fill_", "aten::zero_"),
    "fused Adam": ("_fused_adam",),
}


def profile_sae_step(acts_path: Path, steps: int = 3) -> dict[str, Any]:
    """torch.profiler over our SAE step (cached batches): the self CPU time table and
    its shares by kind of work (:data:`PROFILE_GROUPS`; the rest is element-wise)."""
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        ours = OurSaeStep(torch.from_numpy(np.load(acts_path)), Path(tmp))
        ours.steps(1)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            ours.steps(steps)
    averages = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in averages)
    shares = dict.fromkeys([*PROFILE_GROUPS, "element-wise and other"], 0.0)
    for event in averages:
        group = next(
            (g for g, keys in PROFILE_GROUPS.items() if any(k in event.key for k in keys)),
            "element-wise and other",
        )
        shares[group] += 100.0 * event.self_cpu_time_total / max(total, 1)
    table = averages.table(sort_by="self_cpu_time_total", row_limit=18)
    return {"table": table, "shares": shares}


# --------------------------------------------------------------------------- report


def _fmt_rate(values: list[float]) -> str:
    med, lo, hi = median_range(values)
    return f"{med:,.0f} ({lo:,.0f}–{hi:,.0f})"


def _ratios(a: Series, b: Series) -> list[float]:
    return [x / y for x, y in zip(a.rates(), b.rates())]


def _fmt_ratio(values: list[float]) -> str:
    med, lo, hi = median_range(values)
    return f"**{med:.2f}×** ({lo:.2f}–{hi:.2f})"


def _row(what: str, ours: Series, anchor: Series | None) -> list[str]:
    """Median (range) tok/s of each side, median (range) of the per-repetition ratios,
    and the ratio of the best repetitions (the least disturbed by other load)."""
    if anchor is None:
        return [what, _fmt_rate(ours.rates()), "", "", ""]
    best = max(ours.rates()) / max(anchor.rates())
    return [
        what,
        _fmt_rate(ours.rates()),
        _fmt_rate(anchor.rates()),
        _fmt_ratio(_ratios(ours, anchor)),
        f"{best:.2f}×",
    ]


def summary_rows(sae: dict[str, Any], e2e: dict[str, Any] | None) -> list[list[str]]:
    s = sae["series"]
    ours = s["ours (adam)"]
    rows = [
        _row(
            "SAE step alone, ours (Adam) vs sparsify default (signum)", ours, s["sparsify (signum)"]
        ),
        _row("SAE step alone, ours (Adam) vs sparsify with Adam", ours, s["sparsify (adam)"]),
        _row(
            "floor: the encoder GEMM alone (no top-k, no backward)",
            s["floor: encoder GEMM alone"],
            None,
        ),
    ]
    if e2e is not None:
        e = e2e["series"]
        sp = e["sparsify (signum)"]
        rows.append(_row("LM forward + SAE step, fp32 LM on both sides", e["ours"], sp))
        what = f"LM forward + SAE step, ours at our default LM dtype ({ModelConfig().dtype})"
        rows.append(_row(what, e["ours (default LM dtype)"], sp))
    return rows


def e2e_breakdown(e2e: dict[str, Any], name: str) -> str:
    reps = e2e["series"][name].reps
    total = sum(sum(r["seconds"]) for r in reps)
    lm = sum(sum(r["lm_seconds"]) for r in reps)
    steps = sum(len(r["seconds"]) for r in reps)
    return (
        f"{name}, per steady step: {total / steps:.2f} s, of which LM forward (layers 0–15) "
        f"{lm / steps:.2f} s ({100 * lm / total:.0f} %), SAE step + shuffle buffer "
        f"{(total - lm) / steps:.2f} s ({100 * (total - lm) / total:.0f} %)"
    )


def command_line() -> str:
    env = [f"{THP_ENV}={os.environ[THP_ENV]}"] if thp_enabled() else []
    return " ".join([*env, ".venv/bin/python", "bench/train_vs_sparsify.py", *sys.argv[1:]])


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()}-core {cpu}, {platform.system()} {platform.release()}"


def render(
    args: argparse.Namespace,
    sae: dict[str, Any],
    e2e: dict[str, Any] | None,
    prof: dict[str, Any] | None,
    faults: dict[str, float],
    threads: int,
    versions: dict[str, str],
) -> str:
    loads = sae["loads"] + (e2e["loads"] if e2e else [])
    lines = [
        f"## SAE training vs eai-sparsify{' — THP allocations on both sides' if thp_enabled() else ''}"
        f" — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"`{command_line()}` on a "
        f"{machine()}; torch {torch.__version__}, {threads} torch threads on both sides; "
        f"eai-sparsify {versions.get('eai-sparsify', '?')} in its own venv "
        f"(`bench/anchors.py`; transformers {versions.get('transformers', '?')}, no Triton: "
        "eager embedding_bag decoder). Load average (1 min) during the runs: "
        f"{min(loads):.1f}–{max(loads):.1f}, median {statistics.median(loads):.1f} "
        "(shared machine: absolute tok/s are depressed and noisy, ratios are what count). "
        f"`{THP_ENV}={os.environ.get(THP_ENV, 'unset')}` on both sides.",
        "",
        f"SmolLM2-135M layer {LAYER} residual, TopK ×{EXPANSION} ({EXPANSION * 576} "
        f"latents), k={K}, SAE batch {SAE_BATCH} vectors, SAE in fp32. Position 0 of every "
        "256-token window is excluded on both sides (our `data.exclude_first=1`; sparsify "
        "end to end: `exclude_tokens=[BOS]`). Medians (range "
        f"in brackets) over interleaved repetitions: SAE step alone {args.reps} × "
        f"{args.steps} steps per side, end to end {args.e2e_reps} × {args.e2e_steps}. "
        "'ours / sparsify' = median of the per-repetition ratios (each pair measured back "
        "to back); 'best / best' = ratio of each side's fastest repetition, the one least "
        "disturbed by the other jobs on the machine.",
        "",
        "| what | ours tok/s | sparsify tok/s | ours / sparsify | best / best |",
        "|---|---|---|---|---|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in summary_rows(sae, e2e)]
    lines += ["", *notes(sae, e2e, prof), fault_note(sae, e2e, faults)]
    return "\n".join(lines) + "\n"


def _median_faults(series: Series) -> float:
    return statistics.median(f for r in series.reps for f in r.get("faults", []))


def fault_note(sae: dict[str, Any], e2e: dict[str, Any] | None, faults: dict[str, float]) -> str:
    """Page faults per step of each side, and what one costs on this machine."""
    per_step = {
        f"SAE step {k}": _median_faults(v)
        for k, v in sae["series"].items()
        if "faults" in v.reps[0]
    }
    if e2e is not None:
        per_step.update({f"end to end {k}": _median_faults(v) for k, v in e2e["series"].items()})
    listed = ", ".join(f"{k} {v:,.0f}" for k, v in per_step.items())
    return (
        f"- Minor page faults per step (median): {listed}. Cost of fresh memory here: "
        f"filling a new {faults['mib']} MiB tensor took {1e3 * faults['fresh_s']:.0f} ms "
        f"({faults['faults']:,.0f} faults) vs {1e3 * faults['reused_s']:.0f} ms into a "
        "reused one."
    )


def notes(
    sae: dict[str, Any], e2e: dict[str, Any] | None, prof: dict[str, Any] | None
) -> list[str]:
    s = sae["series"]
    fvu = {name: ser.reps[-1]["fvu"][-1] for name, ser in s.items() if "fvu" in ser.reps[-1]}
    ours, floor = s["ours (adam)"].rates(), s["floor: encoder GEMM alone"].rates()
    out = [
        "- Optimisers: ours = `torch.optim.Adam(fused=True)` + linear warmup/decay; sparsify "
        "default = `ScheduleFreeWrapper(SignSGD, momentum=0.95)`; sparsify adam = "
        "`torch.optim.Adam` (foreach) + `get_linear_schedule_with_warmup`.",
        "- FVU on the training batch at the last timed step (sanity, not a quality "
        "comparison): " + ", ".join(f"{k} {v:.3f}" for k, v in fvu.items()) + ".",
        f"- Our SAE step runs at {100 * statistics.median(ours) / statistics.median(floor):.0f} % "
        "of the bare encoder GEMM's rate (medians): the dense [N, D] × [D, M] product "
        f"({2 * SAE_BATCH * 576 * 576 * EXPANSION / 1e9:.0f} GFLOP per step) is the floor "
        "both trainers share.",
    ]
    if prof is not None:
        shares = ", ".join(f"{k} {v:.0f} %" for k, v in prof["shares"].items())
        out.append(f"- Our SAE step, torch.profiler self CPU time: {shares}.")
    if e2e is not None:
        for name in ("ours", "ours (default LM dtype)"):
            out.append("- " + e2e_breakdown(e2e, name) + ".")
        warm = e2e["warmup"]
        out.append(
            f"- Excluded warm-up: our first step {warm['ours']['seconds'][0]:.1f} s "
            f"(fp32; fills the shuffle buffer: {warm['ours']['tokens'][0]:,} tokens), "
            f"{warm['ours (default LM dtype)']['seconds'][0]:.1f} s at the default dtype; "
            f"sparsify's first step {warm['sparsify (signum)']['seconds'][0]:.1f} s."
        )
    return out


def write_results(section: str) -> None:
    """Replace this bench's section of bench/RESULTS.md (or append it)."""
    begin, end = markers()
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{begin}\n{section}{end}\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    atomic_write_text(RESULTS, text)


# ----------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=9, help="interleaved repetitions per side")
    p.add_argument("--steps", type=int, default=2, help="timed SAE steps per repetition")
    p.add_argument("--e2e-reps", type=int, default=4, help="end-to-end repetitions per side")
    p.add_argument("--e2e-steps", type=int, default=1, help="end-to-end steps per repetition")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end comparison")
    p.add_argument("--profile", action="store_true", help="print a torch.profiler table")
    p.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    p.add_argument("--quick", action="store_true", help="2 reps x 2 steps, 1 e2e rep")
    args = p.parse_args(argv)
    if args.quick:
        args.reps, args.steps, args.e2e_reps, args.e2e_steps = 2, 2, 1, 1
    for name in ("reps", "steps", "e2e_reps", "e2e_steps"):
        if getattr(args, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    ensure_venv(SPARSIFY)
    faults = page_fault_cost()
    log.info("page faults: %s", faults)
    versions = (read_stamp(SPARSIFY) or {}).get("versions", {})
    e2e_windows = (args.e2e_reps * args.e2e_steps + 12) * LM_BATCH  # + buffer fill
    windows_BT = bench_windows(max(e2e_windows, 1024))
    acts_path = cached_activations(windows_BT, num_batches=8)
    print(
        f"activations: {acts_path} (position 0 of each window excluded, as our "
        f"data.exclude_first={EXCLUDE_FIRST})",
        flush=True,
    )
    sae = bench_sae_step(acts_path, threads, args.reps, args.steps)
    e2e = None
    if not args.no_e2e:
        e2e = bench_end_to_end(windows_BT, threads, args.e2e_reps, args.e2e_steps)
    prof = profile_sae_step(acts_path) if args.profile else None
    if prof is not None:
        print(prof["table"], flush=True)
    section = render(args, sae, e2e, prof, faults, threads, versions)
    print("\n" + section, flush=True)
    if not args.no_write:
        write_results(section)
        print(f"wrote {RESULTS}", flush=True)


if __name__ == "__main__":
    main()
