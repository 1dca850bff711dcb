"""The HTTP backend against the REAL llama-cpp-python server serving SmolLM2-135M-Instruct.

The server is started by ``interp.llm.server`` on a free loopback port (``--logits_all
true``). The client's log-probs are checked against the in-process transformers
backend on the same weights (the GGUF dequantised): both must render the same chat
template and align the teacher-forced reply the same way. Skipped only when
llama-cpp-python is not installed (``bash launch/setup.sh`` builds it).
"""

from __future__ import annotations

import asyncio
import math

import pytest

from interp.config import LLMConfig
from interp.llm.server import LlamaServer, ServerStartError, llama_cpp_available

pytestmark = pytest.mark.e2e

if not llama_cpp_available():
    pytest.skip(
        "llama-cpp-python[server] is not installed: run `bash launch/setup.sh`",
        allow_module_level=True,
    )

MODEL = "smollm2-135m-instruct"
CHAT = [
    {"role": "system", "content": "Answer Yes or No."},
    {"role": "user", "content": "Is Paris in France?"},
]
# llama-cpp-python sorts the whole vocabulary in Python for every echoed token (~0.1 s
# each on 2 cores), so teacher-forced prompts stay short here.
REPLY = "Yes, Paris is in France."


@pytest.fixture(scope="module")
def server():
    with LlamaServer(MODEL, alias="smollm2", n_ctx=1024, n_threads=2) as srv:
        yield srv


@pytest.fixture(scope="module")
def cfg(server) -> LLMConfig:
    return LLMConfig(
        backend="http", base_urls=(server.base_url,), served_model="smollm2", tokenizer=MODEL,
        max_retries=1, timeout_s=60, max_concurrency=2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference():
    """The same weights in-process (transformers, fp32): the expected log-probs."""
    from interp.llm.transformers_backend import TransformersClient

    client = TransformersClient(LLMConfig(model=MODEL, dtype="float32", device="cpu"))
    yield client
    client.close()


def test_generate(cfg):
    from interp.llm.http import OpenAIClient

    client = OpenAIClient(cfg)
    g = asyncio.run(client.generate(CHAT, max_new_tokens=8))
    assert g.text.strip() and 0 < g.completion_tokens <= 8
    assert g.prompt_tokens > 20  # the system + user turns, template included
    assert client.stats["retries"] == 0


def test_next_token_logprobs_match_the_reference(cfg, reference):
    from interp.llm.http import OpenAIClient

    client = OpenAIClient(cfg)
    other = [{"role": "user", "content": "Is the sea made of cheese? Answer Yes or No."}]
    got = asyncio.run(client.next_token_logprobs([CHAT, other], ["Yes", "No"]))
    want = asyncio.run(reference.next_token_logprobs([CHAT, other], ["Yes", "No"]))
    for g, w in zip(got, want):
        yes, no = g.logprobs["Yes"], g.logprobs["No"]
        assert math.isfinite(yes) and math.isfinite(no)
        p_yes = math.exp(yes) / (math.exp(yes) + math.exp(no))
        assert 0 < p_yes < 1
        for c in ("Yes", "No"):  # same weights: Q4_1 dequantised vs llama.cpp kernels
            assert g.logprobs[c] == pytest.approx(w.logprobs[c], abs=0.25)
        assert g.prompt_tokens == w.prompt_tokens


def test_continuation_logprobs_match_the_reference(cfg, reference):
    from interp.llm.http import OpenAIClient

    client = OpenAIClient(cfg)
    got = asyncio.run(client.continuation_logprobs(CHAT, REPLY, ["Yes", "No"]))
    want = asyncio.run(reference.continuation_logprobs(CHAT, REPLY, ["Yes", "No"]))
    assert "".join(got.tokens) == REPLY
    assert len(got.logprobs) == len(want.logprobs) == len(got.candidates)
    assert all(math.isfinite(x) and x <= 0 for x in got.logprobs)
    diff = [abs(a - b) for a, b in zip(got.logprobs, want.logprobs)]
    # llama.cpp's quantised-activation kernels vs fp32 on the dequantised weights:
    # measured max 0.33, mean 0.05 on a longer reply; a misalignment by one token or a
    # different template gives errors of several nats
    assert max(diff) < 0.5 and sum(diff) / len(diff) < 0.15, diff
    assert all(set(c) == {"Yes", "No"} for c in got.candidates)
    # position 0 predicts the reply's first token, "Yes": listed and consistent
    assert got.candidates[0]["Yes"] == pytest.approx(got.logprobs[0], abs=1e-4)


def test_response_cache_makes_the_second_call_free(cfg, tmp_path):
    from interp.llm.cache import CachedClient, ResponseCache
    from interp.llm.http import OpenAIClient

    inner = OpenAIClient(cfg)

    async def calls(client):
        g = await client.generate(CHAT, max_new_tokens=4)
        lp = await client.next_token_logprobs([CHAT], ["Yes", "No"])
        t = await client.continuation_logprobs(CHAT, "Yes.", ["Yes"])
        return g, lp, t

    first = asyncio.run(calls(CachedClient(inner, ResponseCache(tmp_path / "c.jsonl"))))
    n = inner.stats["requests"]
    second_client = CachedClient(inner, ResponseCache(tmp_path / "c.jsonl"))  # a rerun
    second = asyncio.run(calls(second_client))
    assert inner.stats["requests"] == n == 3  # nothing reached the server the 2nd time
    assert second_client.hits == 3
    assert second[0].text == first[0].text and second[2].logprobs == first[2].logprobs
    assert second[0].cached_prompt_tokens == second[0].prompt_tokens


def test_stopped_server_fails_over_then_gives_up(cfg, tmp_path):
    from interp.llm.http import LLMUnavailableError, OpenAIClient

    with LlamaServer(MODEL, alias="smollm2", n_ctx=512, n_threads=1) as extra:
        url = extra.base_url
        assert extra.running()
    assert not extra.running()
    client = OpenAIClient(
        LLMConfig(**{**cfg.__dict__, "base_urls": (url, cfg.base_urls[0]), "max_retries": 0})
    )
    assert asyncio.run(client.generate(CHAT, max_new_tokens=2)).text  # the live one answered
    dead_only = OpenAIClient(LLMConfig(**{**cfg.__dict__, "base_urls": (url,), "max_retries": 0}))
    with pytest.raises(LLMUnavailableError):
        asyncio.run(dead_only.generate(CHAT, max_new_tokens=2))


def test_a_broken_gguf_fails_with_the_server_log(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(ServerStartError, match="exited with code") as err:
        LlamaServer(bad, n_threads=1).start(timeout_s=60)
    assert "log" in str(err.value)
