"""collect: one token slice of the collect split -> SAE latents -> one slice group.

Task ``[start, stop)`` indexes the flattened collect windows. Memory is bounded by the
slice: its sparse codes are held until the group is written. The LM runs up to the
dictionary's input hookpoint (``cfg.hookpoint``: ``layers.N`` by default, any module or
``module:input`` for transcoders and MLP dictionaries).

Tensor legend: B windows per forward, T = ctx_len, D = d_in, N = tokens, K = active
latents per token in a batch's code (TopK: k; threshold architectures: the most active
of any token of the batch, shorter rows padded with 0 = absent).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from interp.config import RunConfig
from interp.plan import Task
from interp.runs import RunPaths, commit_task, is_committed
from interp.store import (
    StoreMeta,
    read_slice_info,
    token_dtype_for,
    write_slice,
    write_store_meta,
)

log = logging.getLogger(__name__)


class SliceActs(NamedTuple):
    """TopK outputs of every token of one slice."""

    latent_idx: np.ndarray  # [N, K] int
    latent_val: np.ndarray  # [N, K] float32
    token_ids: np.ndarray  # [N]
    keep: np.ndarray  # [N] bool: position in window >= data.exclude_first


def run(cfg: RunConfig, paths: RunPaths, task: Task, should_stop: Callable[[], bool]) -> None:
    manifest = paths.manifest_file("collect", task.index)
    if is_committed(manifest):
        log.info("collect slice %d [%d, %d) already committed", task.index, task.start, task.stop)
        return
    t0 = time.perf_counter()
    from interp.data import load_windows
    from interp.models import resolve_device
    from interp.sae import load_sae

    windows = load_windows(paths, "collect")
    _check_windows(cfg, windows, task)
    device = resolve_device(cfg.model.device)
    sae = load_sae(paths.sae_dir(), device=device)  # beside the LM: no host round trip
    token_dtype = token_dtype_for(int(windows.max()))  # same for every slice of the store
    # store.json before any slice: whoever finds a slice also finds the store's facts.
    write_store_meta(paths.store_dir(), _store_meta(cfg, sae, token_dtype))
    group = paths.slice_group(task.index)
    info = read_slice_info(group)
    if info is None:
        acts = _encode_slice(cfg, windows, sae, device, task, should_stop)
        if acts is None:
            log.info("collect slice %d stopped before the end; nothing committed", task.index)
            return
        info = write_slice(
            group,
            token_start=task.start,
            token_stop=task.stop,
            n_latents=sae.num_latents,
            token_dtype=token_dtype,
            **acts._asdict(),
        )
    else:
        log.info("slice group %s was committed by an earlier attempt; recording it", group.name)
    wall = time.perf_counter() - t0
    commit_task(
        manifest,
        {"tokens": task.stop - task.start, "nnz": info.nnz, "wall_s": round(wall, 3)},
    )
    log.info("collect slice %d committed: %d entries in %.1f s", task.index, info.nnz, wall)


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


def _store_meta(cfg: RunConfig, sae: Any, token_dtype: str) -> StoreMeta:
    return StoreMeta(
        n_latents=int(sae.num_latents),
        k=int(sae.max_active or 0),
        ctx_len=cfg.data.ctx_len,
        n_tokens=cfg.collect.num_tokens,
        d_in=int(sae.d_in),
        hookpoint=cfg.hookpoint,
        token_dtype=token_dtype,
    )


def _encode_slice(
    cfg: RunConfig,
    windows: np.ndarray,
    sae: Any,
    device: Any,
    task: Task,
    should_stop: Callable[[], bool],
) -> SliceActs | None:
    """Run subject model + SAE over the slice's windows; None if asked to stop."""
    import torch
    from tqdm import tqdm

    from interp.models import load_subject

    subject = load_subject(cfg.model, hookpoints=[cfg.hookpoint])
    ctx, batch = cfg.data.ctx_len, cfg.collect.lm_batch_size
    w0, w1 = task.start // ctx, task.stop // ctx
    n = task.stop - task.start
    codes: list[tuple[np.ndarray, np.ndarray]] = []  # per forward: idx [rows, K], val
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
            hidden_BTD = subject.hidden(ids_BT)
            x_ND = hidden_BTD.reshape(-1, hidden_BTD.shape[-1])
            acts_NK, idx_NK = sae.encode(x_ND.to(device))
            codes.append((idx_NK.cpu().numpy(), acts_NK.float().cpu().numpy()))
            bar.update((b1 - b0) * ctx)
    latent_idx, latent_val = _stack_codes(codes, n)
    keep = np.arange(n) % ctx >= cfg.data.exclude_first
    return SliceActs(latent_idx, latent_val, np.asarray(windows[w0:w1]).reshape(-1), keep)


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
