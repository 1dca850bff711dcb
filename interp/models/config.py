"""The subject model's config (``model.*`` keys of the run config).

Placement keys (``device_map``, ``max_memory``, ``offload_folder``) do not enter run ids:
where a layer's weights sit changes no activation beyond float noise (disk/CPU offload
runs each layer on its execution device with the same weights; a split over GPUs runs
each layer whole on one of them), and a point that ran out of memory must resume under a
new ``max_memory``, not start over under a new id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from interp.typed import meta as _meta

Dtype = Literal["float32", "bfloat16", "float16"]
DeviceMap = Literal["none", "auto", "balanced", "sequential"]

MAX_MEMORY_SYNTAX = (
    "'0=20GiB,1=20GiB,cpu=64GiB' (GPU index or cpu = size in B/KB/MB/GB/TB or KiB..TiB)"
)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}  # fmt: skip
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?", re.IGNORECASE)


def parse_max_memory(text: str) -> dict[int | str, int]:
    """``"0=20GiB,cpu=64GiB"`` -> ``{0: 21474836480, "cpu": 68719476736}`` (bytes); {} for
    "". Raises ``ValueError`` naming ``model.max_memory`` and the syntax."""
    out: dict[int | str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, eq, size = (s.strip() for s in part.partition("="))
        match = _SIZE.fullmatch(size)
        if not eq or not (key.isdigit() or key == "cpu") or match is None:
            raise ValueError(
                f"model.max_memory={text!r}: cannot read {part!r}; write {MAX_MEMORY_SYNTAX}"
            )
        device: int | str = int(key) if key.isdigit() else key
        if device in out:
            raise ValueError(f"model.max_memory={text!r} names {key!r} twice: name it once")
        out[device] = int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
    return out


@dataclass(frozen=True)
class ModelConfig:
    """The subject model whose activations are studied."""

    name: str = field(
        default="smollm2-135m",
        metadata=_meta(
            "Bundled offline name (smollm2-135m, smollm2-135m-instruct, "
            "qwen2.5-coder-1.5b-instruct, tiny-random-llama), a local HF model folder, "
            "or a Hugging Face hub id."
        ),
    )
    dtype: Dtype = field(
        default="bfloat16",
        metadata=_meta("Weights and forward dtype. SAEs always train in float32."),
    )
    device: str = field(
        default="auto",
        metadata=_meta(
            "'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1'. With "
            "model.device_map set: where dictionaries run and activations are delivered."
        ),
    )
    device_map: DeviceMap = field(
        default="none",
        metadata=_meta(
            "'none': the whole model on model.device. 'auto'/'balanced' spread the layers "
            "over the visible GPUs evenly, 'sequential' fills GPU 0 first; what does not fit "
            "goes to CPU, then disk (accelerate). For models bigger than one device.",
            id=False,
        ),
    )
    max_memory: str = field(
        default="",
        metadata=_meta(
            f"Per-device limits for model.device_map, e.g. {MAX_MEMORY_SYNTAX}; '' = what "
            "each device has free.",
            id=False,
        ),
    )
    offload_folder: str = field(
        default="",
        metadata=_meta(
            "Where weights that fit neither GPU nor CPU are written when they must be "
            "re-saved (safetensors checkpoints are read in place); '' = <cache>/offload.",
            id=False,
        ),
    )

    def __post_init__(self) -> None:
        parse_max_memory(self.max_memory)
        if self.device_map == "none" and (self.max_memory or self.offload_folder):
            set_keys = [k for k in ("max_memory", "offload_folder") if getattr(self, k)]
            raise ValueError(
                f"model.{set_keys[0]} is set but model.device_map=none places the whole model "
                "on model.device: set model.device_map=auto (or sequential/balanced)"
            )
