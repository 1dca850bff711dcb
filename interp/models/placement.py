"""Placing a subject model bigger than one device: transformers' ``device_map`` with
accelerate doing the dispatch, over the visible GPUs, then CPU, then disk.

Also the cut: a model loaded for hookpoints up to decoder layer L is built from a config
with L + 1 layers, so the weights of the layers above are never read (safetensors are
memory-mapped: an unread tensor costs nothing) and never take a device's memory. The
layers kept are the checkpoint's own, so activations are the same as the whole model's.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.models.config import ModelConfig, parse_max_memory

log = logging.getLogger(__name__)


def gpu_problem(max_memory: str, visible_gpus: int) -> str:
    """Why ``model.max_memory`` cannot be met with ``visible_gpus`` GPUs ('' if it can)."""
    gpus = sorted(k for k in parse_max_memory(max_memory) if isinstance(k, int))
    missing = [g for g in gpus if g >= visible_gpus]
    if not missing:
        return ""
    seen = f"GPUs 0..{visible_gpus - 1}" if visible_gpus else "no GPU"
    return (
        f"model.max_memory={max_memory!r} names GPU {missing[0]} but a task sees {seen}: "
        "name only the GPUs a task gets, or give the stage more GPUs"
    )


def offload_dir(cfg: ModelConfig) -> Path:
    """The folder disk-offloaded weights go under (``model.offload_folder`` or the cache)."""
    from interp.models.provision import cache_dir

    return Path(cfg.offload_folder).expanduser() if cfg.offload_folder else cache_dir() / "offload"


def load_kwargs(cfg: ModelConfig) -> dict[str, Any]:
    """``from_pretrained`` keyword arguments placing the model as ``cfg`` says ({} for
    ``device_map=none``). Raises ``ValueError`` for a GPU ``max_memory`` names that this
    process does not see."""
    if cfg.device_map == "none":
        return {}
    problem = gpu_problem(cfg.max_memory, torch.cuda.device_count())
    if problem:
        raise ValueError(problem)
    kwargs: dict[str, Any] = {"device_map": cfg.device_map}
    if cfg.max_memory:
        kwargs["max_memory"] = parse_max_memory(cfg.max_memory)
    return kwargs


def private_offload_folder(cfg: ModelConfig, model_name: str) -> str:
    """A fresh folder under :func:`offload_dir` for one load: concurrent tasks on a node
    never write the same offloaded file. :func:`own_folder` removes it with the model."""
    base = offload_dir(cfg)
    base.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^\w.-]+", "_", model_name)[-60:]
    return tempfile.mkdtemp(prefix=f"{slug}-", dir=base)


def own_folder(model: nn.Module, folder: str) -> None:
    """Remove ``folder`` when ``model`` is garbage-collected (or at exit)."""
    weakref.finalize(model, shutil.rmtree, folder, True)


def input_device(model: nn.Module) -> torch.device:
    """Where token ids go: the input embedding's (execution) device. With disk or CPU
    offload its weights may sit on the meta device; accelerate's hook knows where it runs."""
    embed = model.get_input_embeddings()
    hook = getattr(embed, "_hf_hook", None)
    device = getattr(hook, "execution_device", None)
    if device is None:
        return next(embed.parameters()).device
    return torch.device(f"cuda:{device}" if isinstance(device, int) else device)


def is_dispatched(model: nn.Module) -> bool:
    """Whether accelerate split ``model`` over several devices or offloaded part of it."""
    return len(set(getattr(model, "hf_device_map", {}).values())) > 1


def cut_config(config: Any, num_layers: int) -> Any:
    """A copy of ``config`` with its first ``num_layers`` decoder layers only; per-layer
    lists (``layer_types``, ...) cut alike."""
    total = int(config.num_hidden_layers)
    out = copy.deepcopy(config)
    if num_layers >= total:
        return out
    for key, value in vars(config).items():
        if isinstance(value, (list, tuple)) and len(value) == total and key != "architectures":
            setattr(out, key, type(value)(value[:num_layers]))
    out.num_hidden_layers = num_layers
    return out


_REPORT_ROW = re.compile(r"^(.+?)\s*\|\s*([A-Z_]+)\s*\|", re.MULTILINE)  # key | STATUS |
# transformers folds layer numbers: "layers.{2, 3}." or "layers.{7...29}."
_LAYER = re.compile(r"(?:^|\.)(?:layers|h)\.(\d+|\{[\d, .]+\})\.")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class _CutReportFilter(logging.Filter):
    """Drops transformers' load report when all it reports is the layers left out by the
    cut (unexpected keys of layers >= ``first_cut``); any other finding stays."""

    def __init__(self, first_cut: int) -> None:
        super().__init__()
        self.first_cut = first_cut

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", record.getMessage())
        if "LOAD REPORT" not in text:
            return True
        rows = _REPORT_ROW.findall(text)
        cut = [self._cut(key) for key, status in rows if status == "UNEXPECTED"]
        return not (rows and all(s == "UNEXPECTED" for _, s in rows) and all(cut))

    def _cut(self, key: str) -> bool:
        match = _LAYER.search(key)
        return (
            match is not None
            and min(map(int, re.findall(r"\d+", match.group(1)))) >= self.first_cut
        )


@contextlib.contextmanager
def quiet_cut_report(first_cut: int | None) -> Iterator[None]:
    """Silence the load report of a cut model's left-out layers for the ``with`` block."""
    if first_cut is None:
        yield
        return
    logger = logging.getLogger("transformers.modeling_utils")
    flt = _CutReportFilter(first_cut)
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)
