"""A one-range sweep point whose interpret stage runs for real against an LLM at ``url``
(tests/fake_openai.py): a tiny Zarr store of 4 latents on tiny-random-llama's tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from interp.config import RunConfig, load_run_config
from interp.runs import RunPaths
from interp.store import StoreMeta, write_slice, write_store_meta

CTX, N_CTX, N_LATENTS = 32, 32, 4


def interpret_point(tmp_path: Path, url: str, name: str = "outage", **llm: Any) -> RunConfig:
    """Detection only, no control, one range of N_LATENTS; ``llm`` overrides llm.*."""
    return load_run_config(
        {
            "out_dir": str(tmp_path), "name": name, "model": {"name": "tiny-random-llama"},
            "data": {"ctx_len": CTX},
            "collect": {"num_tokens": N_CTX * CTX, "slice_tokens": N_CTX * CTX},
            "scorer": {"names": ["detection"]},
            "interpret": {"range_latents": N_LATENTS, "control": False, "examples": {
                "window": 8, "n_explain": 3, "n_score_active": 2, "n_score_inactive": 2,
                "min_examples": 2}},
            "llm": {"backend": "http", "base_urls": [url], "served_model": "fake",
                    "max_retries": 1, "timeout_s": 60, **llm},  # no load-induced retry
        }
    )  # fmt: skip


def write_store(
    paths: RunPaths, *, n_latents: int = N_LATENTS, firing: int = 0, n_ctx: int = N_CTX
) -> None:
    """Latent j < ``firing`` (default: every latent) fires on every token of contexts c with
    c % firing == j (after the first); latents from ``firing`` on never fire."""
    firing = firing or n_latents
    n = n_ctx * CTX
    t = np.arange(n)
    write_store_meta(paths.store_dir(), StoreMeta(n_latents, 1, CTX, n, 16, "layers.6", "uint16"))
    write_slice(
        paths.slice_group(0), token_start=0, token_stop=n,
        latent_idx=((t // CTX) % firing)[:, None], latent_val=np.ones((n, 1), np.float32),
        token_ids=np.random.default_rng(0).integers(100, 2000, n), keep=t % CTX >= 1,
        n_latents=n_latents, token_dtype="uint16",
    )  # fmt: skip
