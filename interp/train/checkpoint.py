"""Training checkpoints of one train group: a folder per save, committed by a rename.

Layout, under the group's checkpoint folder (``RunPaths.train_group_checkpoint_dir``)::

    step-00000123/           committed: every rank's file is in, meta.json written
      meta.json              {step, world_size, members: [train ids]}
      rank-00000.pt          rank 0's state (see below)
      rank-00001.pt          ...
    step-00000130.partial/   being written (or left by a killed attempt)

Each rank writes its own file (atomically, tmp + rename): the data position and shuffle
buffer of its data shard, the step, the RNG states, and for every member it trains the
SAE weights, optimizer and scheduler state, dead-latent counters and metric sums. So a
resumed rank reloads exactly its own optimiser state (sparsify's distribute_modules
resume gives every rank rank 0's). After a barrier the main rank writes ``meta.json``
and renames the folder into place: a checkpoint exists only once it is complete. The
newest ``keep`` committed checkpoints are kept. The save path is the resume path.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from interp.runs import atomic_write_json, tmp_name

log = logging.getLogger(__name__)

_COMMITTED = re.compile(r"^step-(\d{8})$")
META_FILE = "meta.json"


def checkpoint_dir_of(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}"


def _partial(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.partial"


def rank_file(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rank-{rank:05d}.pt"


def committed_checkpoints(directory: Path) -> list[Path]:
    """Committed checkpoint folders, oldest first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _COMMITTED.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    """The committed checkpoint with the highest step, or None."""
    found = committed_checkpoints(directory)
    return found[-1] if found else None


def write_rank_state(directory: Path, step: int, rank: int, state: dict[str, Any]) -> None:
    """This rank's part of the checkpoint of ``step`` (atomic within the partial folder)."""
    part = _partial(directory, step)
    part.mkdir(parents=True, exist_ok=True)
    final = rank_file(part, rank)
    tmp = tmp_name(final)
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)


def commit_checkpoint(directory: Path, step: int, meta: dict[str, Any], keep: int) -> Path:
    """Main rank, after every rank wrote its state: seal and rename, then prune.

    Returns the committed folder. Partial folders of other steps (killed attempts) and
    all but the newest ``keep`` committed checkpoints are deleted.
    """
    part, final = _partial(directory, step), checkpoint_dir_of(directory, step)
    missing = [r for r in range(meta["world_size"]) if not rank_file(part, r).is_file()]
    assert not missing, f"ranks {missing} did not write their state for step {step}"
    atomic_write_json(part / META_FILE, {"step": step, **meta})
    if final.exists():  # this step was committed before (a resumed run re-saving it)
        shutil.rmtree(part)
    else:
        os.rename(part, final)
    for p in directory.iterdir():
        if p.name.endswith(".partial") and p != part:
            shutil.rmtree(p, ignore_errors=True)
    for old in committed_checkpoints(directory)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def read_meta(checkpoint: Path) -> dict[str, Any]:
    return json.loads((checkpoint / META_FILE).read_text())


def load_rank_state(checkpoint: Path, rank: int) -> dict[str, Any]:
    """Load on the CPU (each owner moves its part to its device; RNG states must stay on
    the CPU). weights_only: a checkpoint is data, never code."""
    return torch.load(rank_file(checkpoint, rank), map_location="cpu", weights_only=True)
