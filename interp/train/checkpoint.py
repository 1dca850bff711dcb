"""Training checkpoints: one file per save, written under a temporary name and renamed.

``<train dir>/checkpoints/step-00000123.pt`` holds everything a resumed run needs to
continue bit for bit: SAE weights, optimizer and scheduler state, step, tokens seen,
the data position, the shuffle buffer and its RNG, the firing counters and the metric
accumulators. The save path is the resume path; only the newest file is kept.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch

from interp.runs import remove_stale_tmp, tmp_name

_NAME = re.compile(r"^step-(\d{8})\.pt$")


def checkpoint_file(directory: Path, step: int) -> Path:
    return directory / f"step-{step:08d}.pt"


def latest_checkpoint(directory: Path) -> Path | None:
    """The committed checkpoint with the highest step, or None."""
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return max(found)[1] if found else None


def save_checkpoint(directory: Path, step: int, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``, then drop older ones."""
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(directory)
    final = checkpoint_file(directory, step)
    tmp = tmp_name(final)
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    for p in directory.iterdir():
        if _NAME.match(p.name) and p != final:
            p.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load on the CPU (each owner moves its part to its device; RNG states must stay on
    the CPU). weights_only: a checkpoint is data, never code."""
    return torch.load(path, map_location="cpu", weights_only=True)
