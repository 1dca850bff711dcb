"""Collect's encoding pass on CUDA gives the CPU's sparse codes.

One forward of the subject model (tiny-random-llama, float32) per batch of windows,
a seeded TopK dictionary on its residual stream, through
:func:`interp.sae.encode.encode_windows` (the collect stage's pass) on both devices, with
the torch and the Triton TopK kernels on CUDA. Run by bench/gpu_check.sh; skipped
without CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.config import ModelConfig
from interp.sae.build import build_sae
from interp.sae.config import SAEConfig
from interp.sae.encode import EncodeRange, encode_windows

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CTX, WINDOWS, HOOK, D = 32, 6, "layers.2", 256


def _dense(acts, num_latents: int) -> np.ndarray:
    out = np.zeros((acts.latent_idx.shape[0], num_latents), np.float32)
    np.put_along_axis(out, acts.latent_idx, acts.latent_val, axis=1)  # padding: value 0
    return out


def _encode(device: str, backend: str) -> tuple[np.ndarray, np.ndarray]:
    gen = torch.Generator().manual_seed(0)
    sae = build_sae(SAEConfig(architecture="topk", k=8, expansion_factor=2), D, generator=gen,
                    backend=backend).to(device)  # fmt: skip
    windows = np.random.default_rng(0).integers(0, 49152, size=(WINDOWS, CTX))
    span = EncodeRange(CTX, 1, 2, 0, WINDOWS * CTX, f"{device}/{backend}")
    model = ModelConfig(name="tiny-random-llama", dtype="float32", device=device)
    (acts,) = encode_windows(model, windows, [(HOOK, sae)], span, device, lambda: False)
    return _dense(acts, sae.num_latents), acts.keep


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_cuda_codes_match_cpu(backend: str, record_property) -> None:
    cpu, keep_cpu = _encode("cpu", "torch")
    cuda, keep_cuda = _encode("cuda", backend)
    assert (keep_cpu == keep_cuda).all()
    diff = float(np.abs(cpu - cuda).max())
    same_support = float(((cpu != 0) == (cuda != 0)).all(axis=1).mean())
    record_property("max_abs_diff", f"{diff:.2e}")
    record_property("same_support", f"{same_support:.3f}")
    assert same_support > 0.99 and diff < 1e-3
