"""A subject model split over the visible GPUs (and the CPU) by ``model.device_map`` gives
the sparse codes of the same model whole on GPU 0.

tiny-random-llama in float32: the tied embedding (~50 MB) and about one layer fit the
56 MB GPU 0 is given, each further GPU takes ~2 layers (5 MB), the CPU the rest
(CPU-offloaded layers run on GPU 0, their weights copied in per forward). Every layer
runs whole on one CUDA device, so the codes are expected to match to float noise;
the largest difference is recorded. Run by bench/gpu_check.sh; skipped without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.config import ModelConfig
from interp.models import load_subject
from interp.sae.build import build_sae
from interp.sae.config import SAEConfig
from interp.sae.encode import EncodeRange, encode_windows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CTX, WINDOWS, HOOKS, D = 32, 6, ["layers.1.mlp", "layers.3"], 256


def _split_memory() -> str:
    gpus = torch.cuda.device_count()
    return ",".join(["0=56MB", *(f"{i}=5MB" for i in range(1, gpus)), "cpu=1GiB"])


def _model(split: bool) -> ModelConfig:
    if not split:
        return ModelConfig(name="tiny-random-llama", dtype="float32", device="cuda")
    return ModelConfig(name="tiny-random-llama", dtype="float32", device="cuda",
                       device_map="sequential", max_memory=_split_memory())  # fmt: skip


def _dense(acts, num_latents: int) -> np.ndarray:
    out = np.zeros((acts.latent_idx.shape[0], num_latents), np.float32)
    np.put_along_axis(out, acts.latent_idx, acts.latent_val, axis=1)
    return out


def _codes(model: ModelConfig) -> list[np.ndarray]:
    windows = np.random.default_rng(0).integers(0, 49152, size=(WINDOWS, CTX))
    dictionaries = []
    for i, hook in enumerate(HOOKS):
        gen = torch.Generator().manual_seed(i)
        sae = build_sae(SAEConfig(architecture="topk", k=8, expansion_factor=2), D, generator=gen)
        dictionaries.append((hook, sae.to("cuda")))
    span = EncodeRange(CTX, 1, 2, 0, WINDOWS * CTX, "dispatch")
    codes = encode_windows(model, windows, dictionaries, span, "cuda", lambda: False)
    return [_dense(acts, 2 * D) for acts in codes]


def test_split_over_gpus_matches_the_whole_model(record_property) -> None:
    subject = load_subject(_model(True), hookpoints=HOOKS)
    placed = set(subject.model.hf_device_map.values())
    record_property("placed_on", ",".join(map(str, sorted(placed, key=str))))
    assert len(placed) > 1 and subject.device.type == "cuda"
    del subject
    whole, split = _codes(_model(False)), _codes(_model(True))
    diff = max(float(np.abs(a - b).max()) for a, b in zip(whole, split))
    same = min(float(((a != 0) == (b != 0)).all(axis=1).mean()) for a, b in zip(whole, split))
    record_property("max_abs_diff", f"{diff:.2e}")
    record_property("same_support", f"{same:.3f}")
    assert same > 0.99 and diff < 1e-3
