"""compact: one latent range of every committed slice -> one latent-major range group.

Runs only on a complete collect: a range built from a partial set of slices would be
committed as if it held every activation, and nothing downstream could tell. Its
inputs are verified as they are read (``interp.store.format.read_entries``): every
chunk of the range's part of every slice is decoded with its crc32c checked, a
missing shard raises instead of reading as zeros, and the decoded CSR must be
possible; any damage raises naming the file and the collect task to redo, before the
range group is written.
"""

from __future__ import annotations

import logging
import time

from interp.plan import intervals
from interp.runs import commit_task, is_committed
from interp.stages.context import StageContext
from interp.store import StoreCorruptError, committed_slices, compact_range, match_tasks
from interp.verify import store_error

log = logging.getLogger(__name__)


def run(ctx: StageContext) -> None:
    """Compact latent range ``ctx.task`` of the point's store from every committed slice."""
    cfg, paths, task, should_stop = ctx.cfg, ctx.paths, ctx.task, ctx.should_stop
    manifest = paths.manifest_file("compact", task.index)
    if is_committed(manifest):
        log.info("compact range %d [%d, %d) already committed", task.index, task.start, task.stop)
        return
    if should_stop():
        log.info("compact range %d asked to stop before starting", task.index)
        return
    t0 = time.perf_counter()
    store_dir = paths.store_dir()
    slices = committed_slices(store_dir)
    planned = intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens)
    missing, stray = match_tasks(
        [(s.token_start, s.token_stop) for s in slices], planned, cfg.collect.num_tokens, "slice"
    )
    if missing or stray:
        raise ValueError(
            f"compact range {task.index} needs every collect slice of [0, "
            f"{cfg.collect.num_tokens}); missing slice indices {missing}"
            + (f", unexpected {stray}" if stray else "")
            + f" in {store_dir}: rerun collect (launch/rerun.py) first"
        )
    log.info("compacting latents [%d, %d) from %d slices", task.start, task.stop, len(slices))
    try:  # every input chunk is decoded, checksum-verified and checked before the write
        info = compact_range(
            store_dir,
            paths.range_group(task.index),
            latent_start=task.start,
            latent_stop=task.stop,
            slices=[s.path for s in slices],
        )
    except StoreCorruptError as err:
        raise store_error(paths, err) from err
    wall = time.perf_counter() - t0
    commit_task(
        manifest,
        {"latents": task.stop - task.start, "nnz": info.nnz, "wall_s": round(wall, 3)},
    )
    log.info("compact range %d committed: %d entries in %.1f s", task.index, info.nnz, wall)
