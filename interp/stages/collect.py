"""collect: one token slice of the collect split -> dictionary latents -> one slice group.

Task ``[start, stop)`` indexes the flattened collect windows. A task serves one sweep
point, or a group of points (:func:`run_group`) sharing model, data and slices: one LM
forward per batch, up to the deepest hookpoint any member reads, feeds every member's
dictionary at its input hookpoint (``cfg.hookpoint``), and each member's slice group and
manifest are committed on their own (memory is bounded by the slice). The encoding is
:func:`interp.sae.encode.encode_windows`; a pretrained dictionary is read by
:mod:`interp.pretrained_point`, and its reconstruction sums are kept per slice (gather
turns them into its FVU and L0: it has no training figures).
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from interp.config import RunConfig
from interp.plan import Task
from interp.pretrained_point import measured_target
from interp.runs import RunPaths, atomic_write_json, commit_task, is_committed
from interp.sae.encode import EncodeRange, encode_windows
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


def run(ctx: StageContext) -> None:
    """Collect slice ``ctx.task`` for the point (a group of one) or every group member."""
    run_group(ctx.pairs(), ctx.task, ctx.should_stop)


def run_group(members: Members, task: Task, should_stop: Callable[[], bool]) -> None:
    """Collect slice ``task`` for every member not committed yet, from one LM forward."""
    todo = [(c, p) for c, p in members if not is_committed(p.manifest_file("collect", task.index))]
    if not todo:
        return log.info("collect slice %d [%d, %d) already committed", task.index, task.start, task.stop)  # fmt: skip
    t0 = time.perf_counter()
    from interp.data import load_windows
    from interp.models import resolve_device
    from interp.stages.inputs import token_source

    cfg0, paths0 = todo[0]
    windows = load_windows(token_source(paths0), "collect")  # members share the data id
    _check_windows(cfg0, windows, task)
    device = resolve_device(cfg0.model.device)
    token_dtype = token_dtype_for(int(windows.max()))  # same for every slice of a store
    encode = _pending(todo, task, device, token_dtype)
    if encode:
        span = EncodeRange(cfg0.data.ctx_len, cfg0.data.exclude_first, cfg0.collect.lm_batch_size,
                           task.start, task.stop, f"collect s{task.index}")  # fmt: skip
        dictionaries = [(c.hookpoint, sae) for c, _, sae in encode]
        targets = [measured_target(c) for c, _, _ in encode]  # pretrained points only
        codes = encode_windows(cfg0.model, windows, dictionaries, span, device, should_stop, targets)  # fmt: skip
        gc.collect()  # HF models hold reference cycles: free the LM before writing
        if codes is None:
            return log.info("collect slice %d stopped before the end: nothing committed", task.index)  # fmt: skip
        for (_, paths, sae), acts in zip(encode, codes):
            if acts.recon is not None:  # before the slice: a slice found written is not redone
                atomic_write_json(paths.collect_recon_file(task.index), acts.recon.to_json())
            write_slice(paths.slice_group(task.index), token_start=task.start,
                        token_stop=task.stop, n_latents=sae.num_latents,
                        token_dtype=token_dtype, **acts.store_columns())  # fmt: skip
    _commit_all(todo, task, time.perf_counter() - t0)


def _pending(todo: Members, task: Task, device: Any, token_dtype: str) -> list[tuple]:
    """(cfg, paths, dictionary) of the members whose slice group is still to write; the
    store's meta written (task 0) or checked against theirs."""
    from interp.pretrained_point import load_point_dictionary

    encode = []
    for cfg, paths in todo:
        sae = load_point_dictionary(cfg, paths, device)  # beside the LM: no host round trip
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
    return encode


def _commit_all(todo: Members, task: Task, wall: float) -> None:
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
    if getattr(sae, "transcode", False) != cfg.sae.transcode and not cfg.sae.spec.pretrained:
        raise ValueError(
            f"the saved dictionary has transcode={getattr(sae, 'transcode', False)} but the "
            f"config says sae.transcode={cfg.sae.transcode}: the train stage folder does not "
            "match this point; delete it and rerun train")  # fmt: skip


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
