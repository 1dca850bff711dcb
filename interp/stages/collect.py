"""collect: one token slice of the collect split -> dictionary latents -> one slice group.

Task ``[start, stop)`` indexes the flattened collect windows. A task serves one sweep
point, or a group of points (:func:`run_group`) that share the model, the data and the
slices: one LM forward per batch, up to the deepest hookpoint any member reads, feeds
every member's dictionary, and each member's slice group and manifest are committed on
their own. Memory is bounded by the slice: its sparse codes are held until the groups
are written. Each dictionary reads its input hookpoint (``cfg.hookpoint``: ``layers.N``
by default; any module or ``module:input`` for transcoders and MLP dictionaries).

Tensor legend: B windows per forward, T = ctx_len, D = d_in, N = tokens, K = active
latents per token in a batch's code (TopK: k; threshold architectures: the most active
of any token of the batch, shorter rows padded with 0 = absent).
"""

from __future__ import annotations

import gc
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from interp.config import RunConfig
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed
from interp.stages.context import StageContext
from interp.store import (
    StoreMeta,
    check_store_meta,
    read_slice_info,
    token_dtype_for,
    write_slice,
    write_store_meta,
)

log = logging.getLogger(__name__)

Members = Sequence[tuple[RunConfig, RunPaths]]


class SliceActs(NamedTuple):
    """Sparse codes of every token of one slice, for one dictionary."""

    latent_idx: np.ndarray  # [N, K] int
    latent_val: np.ndarray  # [N, K] float32
    token_ids: np.ndarray  # [N]
    keep: np.ndarray  # [N] bool: position in window >= data.exclude_first


def run(ctx: StageContext) -> None:
    """Collect slice ``ctx.task`` for the point (a group of one) or every group member."""
    run_group(ctx.pairs(), ctx.task, ctx.should_stop)


def run_group(members: Members, task: Task, should_stop: Callable[[], bool]) -> None:
    """Collect slice ``task`` for every member not committed yet, from one LM forward."""
    todo = [(c, p) for c, p in members if not is_committed(p.manifest_file("collect", task.index))]
    if not todo:
        log.info("collect slice %d [%d, %d) already committed", task.index, task.start, task.stop)
        return
    t0 = time.perf_counter()
    from interp.data import load_windows
    from interp.models import resolve_device
    from interp.sae import load_sae

    cfg0, paths0 = todo[0]
    windows = load_windows(paths0, "collect")  # members share the data id: same windows
    _check_windows(cfg0, windows, task)
    device = resolve_device(cfg0.model.device)
    token_dtype = token_dtype_for(int(windows.max()))  # same for every slice of a store
    encode: list[tuple[RunConfig, RunPaths, Any]] = []
    for cfg, paths in todo:
        sae = load_sae(paths.sae_dir(), device=device)  # beside the LM: no host round trip
        _check_sae(cfg, sae)
        # store.json has one writer (task 0), so no two tasks share a file; the others
        # only refuse a store that an earlier run wrote for a different dictionary.
        meta = _store_meta(cfg, sae, token_dtype)
        if task.index == 0:
            write_store_meta(paths.store_dir(), meta)
        else:
            check_store_meta(paths.store_dir(), meta)
        if read_slice_info(paths.slice_group(task.index)) is None:
            encode.append((cfg, paths, sae))
        else:
            name = paths.slice_group(task.index).name
            log.info("slice group %s was committed by an earlier attempt; recording it", name)
    if encode:
        codes = _encode_slice(cfg0, windows, encode, device, task, should_stop)
        gc.collect()  # HF models hold reference cycles: free the LM before writing
        if codes is None:
            log.info("collect slice %d stopped before the end; nothing committed", task.index)
            return
        for (_, paths, sae), acts in zip(encode, codes):
            write_slice(
                paths.slice_group(task.index),
                token_start=task.start,
                token_stop=task.stop,
                n_latents=sae.num_latents,
                token_dtype=token_dtype,
                **acts._asdict(),
            )
    wall = time.perf_counter() - t0
    for _, paths in todo:
        info = read_slice_info(paths.slice_group(task.index))
        assert info is not None, f"{paths.slice_group(task.index)} missing after write"
        commit_task(
            paths.manifest_file("collect", task.index),
            {"tokens": task.stop - task.start, "nnz": info.nnz, "wall_s": round(wall, 3)},
        )
        log.info(
            "collect slice %d committed in %s: %d entries", task.index, paths.store_dir(), info.nnz
        )
    log.info("collect slice %d: %d dictionar(y/ies) in %.1f s", task.index, len(todo), wall)


def _check_windows(cfg: RunConfig, windows: np.ndarray, task: Task) -> None:
    ctx = cfg.data.ctx_len
    if windows.ndim != 2 or windows.shape[1] != ctx:
        raise ValueError(f"collect windows have shape {windows.shape}, expected [n, {ctx}]")
    if task.start % ctx or task.stop % ctx:
        raise ValueError(f"slice [{task.start}, {task.stop}) is not aligned to ctx_len={ctx}")
    if task.stop > windows.size:
        raise ValueError(
            f"collect slice ends at token {task.stop} but the collect split holds "
            f"{windows.size}: lower collect.num_tokens or raise data.max_tokens"
        )


def _check_sae(cfg: RunConfig, sae: Any) -> None:
    if getattr(sae, "transcode", False) != cfg.sae.transcode:
        raise ValueError(
            f"the saved dictionary has transcode={getattr(sae, 'transcode', False)} but the "
            f"config says sae.transcode={cfg.sae.transcode}: the train stage folder does not "
            "match this point; delete it and rerun train"
        )


def _store_meta(cfg: RunConfig, sae: Any, token_dtype: str) -> StoreMeta:
    return StoreMeta(
        n_latents=int(sae.num_latents),
        k=int(getattr(sae, "max_active", None) or 0),
        ctx_len=cfg.data.ctx_len,
        n_tokens=cfg.collect.num_tokens,
        d_in=int(sae.d_in),
        hookpoint=cfg.hookpoint,
        token_dtype=token_dtype,
    )


def _encode_slice(
    cfg: RunConfig,
    windows: np.ndarray,
    encode: list[tuple[RunConfig, RunPaths, Any]],
    device: Any,
    task: Task,
    should_stop: Callable[[], bool],
) -> list[SliceActs] | None:
    """Run the subject model once per batch and every dictionary on its hookpoint; None
    if asked to stop."""
    import torch
    from tqdm import tqdm

    from interp.models import load_subject

    hookpoints = list(dict.fromkeys(c.hookpoint for c, _, _ in encode))
    subject = load_subject(cfg.model, hookpoints=hookpoints)
    widths = getattr(subject, "widths", {})
    for c, _, sae in encode:
        width = widths.get(c.hookpoint, sae.d_in)
        if width != sae.d_in:
            raise ValueError(
                f"hookpoint {c.hookpoint!r} has width {width} but the dictionary has "
                f"d_in={sae.d_in}: the point's hook does not match its trained SAE"
            )
    ctx, batch = cfg.data.ctx_len, cfg.collect.lm_batch_size
    w0, w1 = task.start // ctx, task.stop // ctx
    n = task.stop - task.start
    codes: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in encode]
    quiet = not sys.stderr.isatty()  # batch logs: a line every 30 s, not every 0.1 s
    bar = tqdm(
        total=n,
        unit="tok",
        unit_scale=True,
        desc=f"collect s{task.index}",
        mininterval=30 if quiet else 0.1,
    )
    with torch.inference_mode(), bar:
        for b0 in range(w0, w1, batch):
            if should_stop():
                return None
            b1 = min(b0 + batch, w1)
            ids_BT = torch.from_numpy(np.asarray(windows[b0:b1], np.int64))
            captured = _capture(subject, ids_BT, hookpoints)
            for i, (c, _, sae) in enumerate(encode):
                hidden_BTD = captured[c.hookpoint]
                x_ND = hidden_BTD.reshape(-1, hidden_BTD.shape[-1])
                acts_NK, idx_NK = sae.encode(x_ND.to(device))
                codes[i].append((idx_NK.cpu().numpy(), acts_NK.float().cpu().numpy()))
            bar.update((b1 - b0) * ctx)
    token_ids = np.asarray(windows[w0:w1]).reshape(-1)
    keep = np.arange(n) % ctx >= cfg.data.exclude_first
    return [SliceActs(*_stack_codes(member, n), token_ids, keep) for member in codes]


def _capture(subject: Any, ids_BT: Any, hookpoints: list[str]) -> dict[str, Any]:
    """{hookpoint: [B, T, D]} from one forward (``hidden`` when only one is read)."""
    if len(hookpoints) == 1:
        return {hookpoints[0]: subject.hidden(ids_BT)}
    return subject.capture(ids_BT)


def _stack_codes(codes: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, ...]:
    """Per-forward [rows, K_b] codes -> one [n, max K_b] pair, padded with value 0."""
    k = max((idx.shape[1] for idx, _ in codes), default=1)
    latent_idx = np.zeros((n, k), np.int64)
    latent_val = np.zeros((n, k), np.float32)
    r0 = 0
    for idx, val in codes:
        r1 = r0 + idx.shape[0]
        latent_idx[r0:r1, : idx.shape[1]] = idx
        latent_val[r0:r1, : val.shape[1]] = val
        r0 = r1
    assert r0 == n, f"encoded {r0} tokens, expected {n}"
    return latent_idx, latent_val
