"""The in-process transformers backend on CUDA gives the CPU's log-probabilities.

Run by bench/gpu_check.sh on a GPU machine (tiny-random-llama, rebuilt there); skipped
elsewhere. The prefix-reuse path (shared prompt prefix, batched suffixes) is the one the
detection and fuzzing scorers take, so it is the one compared.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from interp.config import LLMConfig
from interp.llm.transformers_backend import TransformersClient

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

SYSTEM = {"role": "system", "content": "Answer Yes or No."}
TEXTS = ["the cat sat on the mat", "def f(x): return x", "O Romeo, Romeo", "3 + 4 = 7"]


def _prompts() -> list[list[dict[str, str]]]:
    return [[SYSTEM, {"role": "user", "content": f"Is this code? {t}"}] for t in TEXTS]


def _client(device: str, dtype: str = "float32") -> TransformersClient:
    cfg = LLMConfig(model="tiny-random-llama", dtype=dtype, device=device, score_batch_size=2)
    return TransformersClient(cfg)


def _logprobs(client: TransformersClient) -> np.ndarray:
    out = asyncio.run(client.next_token_logprobs(_prompts(), ["Yes", "No"]))
    return np.array([[o.logprobs["Yes"], o.logprobs["No"]] for o in out])


def test_next_token_logprobs_cuda_match_cpu(record_property) -> None:
    cpu, cuda = _logprobs(_client("cpu")), _logprobs(_client("cuda"))
    diff = float(np.abs(cpu - cuda).max())
    record_property("max_abs_diff", f"{diff:.2e}")
    assert diff < 1e-3, (cpu, cuda)


def test_continuation_logprobs_and_greedy_generation_match(record_property) -> None:
    cpu, cuda = _client("cpu"), _client("cuda")
    reply = "Yes, it is code."
    a = asyncio.run(cpu.continuation_logprobs(_prompts()[1], reply, ["Yes"]))
    b = asyncio.run(cuda.continuation_logprobs(_prompts()[1], reply, ["Yes"]))
    assert a.tokens == b.tokens
    diff = float(np.abs(np.array(a.logprobs) - np.array(b.logprobs)).max())
    record_property("max_abs_diff", f"{diff:.2e}")
    assert diff < 1e-3
    ga = asyncio.run(cpu.generate(_prompts()[0], max_new_tokens=8))
    gb = asyncio.run(cuda.generate(_prompts()[0], max_new_tokens=8))
    assert ga.completion_tokens == gb.completion_tokens > 0


def test_bfloat16_on_cuda_stays_close_to_float32_cpu(record_property) -> None:
    cpu, bf16 = _logprobs(_client("cpu")), _logprobs(_client("cuda", "bfloat16"))
    diff = float(np.abs(cpu - bf16).max())
    record_property("max_abs_diff", f"{diff:.2e}")
    assert np.isfinite(bf16).all() and diff < 0.25
