"""LLM client: prefix-batched log-probs equal plain forwards; the response cache."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from interp.config import LLMConfig
from interp.llm import CachedClient, MeteredClient, ResponseCache, build_client
from interp.llm.base import ChoiceLogprobs, Generation
from interp.llm.transformers_backend import TransformersClient, common_prefix_len

pytestmark = pytest.mark.unit

SYSTEM = {"role": "system", "content": "Answer Yes or No."}
TEXTS = [
    "The cat sat on the mat.",
    "Is the sky green?",
    "Two plus two is four, right?",
    "def f(x): return x",
    "A",
    "To be, or not to be, that is the question.",
]


def _prompt(text: str) -> list[dict[str, str]]:
    return [SYSTEM, {"role": "user", "content": f"Does this mention an animal? {text}"}]


@pytest.fixture(scope="module")
def client() -> TransformersClient:
    torch.manual_seed(0)
    return TransformersClient(
        LLMConfig(model="smollm2-135m-instruct", dtype="float32", device="cpu", score_batch_size=4)
    )


def _reference_logprobs(client: TransformersClient, prompt, candidates) -> np.ndarray:
    """Unbatched, unprefixed, no cache: the definition."""
    ids = torch.as_tensor(client.encode_chat(prompt))[None]
    with torch.inference_mode():
        logits = client._model(input_ids=ids).logits[0, -1].float()
    cand = client.candidate_token_ids(candidates)
    return torch.log_softmax(logits, -1)[cand].double().numpy()


def test_prefix_batched_logprobs_match_unbatched(client: TransformersClient) -> None:
    prompts = [_prompt(t) for t in TEXTS]
    got = asyncio.run(client.next_token_logprobs(prompts, ["Yes", "No"]))
    for prompt, res in zip(prompts, got):
        ref = _reference_logprobs(client, prompt, ["Yes", "No"])
        np.testing.assert_allclose([res.logprobs["Yes"], res.logprobs["No"]], ref, atol=1e-4)
    # accounting: the shared prefix is computed once, every prompt is counted in full
    lens = [len(client.encode_chat(p)) for p in prompts]
    assert [r.prompt_tokens for r in got] == lens
    computed = sum(r.prompt_tokens - r.cached_prompt_tokens for r in got)
    assert computed < sum(lens)


def test_concurrent_calls_serialise_and_match(client: TransformersClient) -> None:
    prompts = [_prompt(t) for t in TEXTS[:3]]

    async def both():
        return await asyncio.gather(
            client.next_token_logprobs(prompts, ["Yes", "No"]),
            client.generate(prompts[0], max_new_tokens=3),
            client.next_token_logprobs(prompts[::-1], ["Yes", "No"]),
        )

    a, _, b = asyncio.run(both())
    for x, y in zip(a, b[::-1]):
        assert x.logprobs == pytest.approx(y.logprobs, abs=1e-4)


def test_prefix_store_reused_across_calls(client: TransformersClient) -> None:
    prompts = [_prompt(t) for t in TEXTS[:3]]
    asyncio.run(client.next_token_logprobs(prompts, ["Yes", "No"]))
    again = asyncio.run(client.next_token_logprobs(prompts, ["Yes", "No"]))
    # second time the common prefix comes from the KV store: only suffixes are computed
    ids = [client.encode_chat(p) for p in prompts]
    n_prefix = min(common_prefix_len(ids[0], x) for x in ids[1:])
    computed = sum(r.prompt_tokens - r.cached_prompt_tokens for r in again)
    assert computed == sum(len(x) - n_prefix for x in ids)


def test_generate_greedy_is_deterministic_and_counts(client: TransformersClient) -> None:
    msgs = [{"role": "user", "content": "Say hello."}]
    a = asyncio.run(client.generate(msgs, max_new_tokens=6))
    b = asyncio.run(client.generate(msgs, max_new_tokens=6))
    assert a.text == b.text and 0 < a.completion_tokens <= 6
    assert a.prompt_tokens == len(client.encode_chat(msgs))
    assert b.cached_prompt_tokens == b.prompt_tokens - 1  # only the last prompt token reran
    prefill = [*msgs, {"role": "assistant", "content": "Hello"}]
    ids = client.encode_chat(prefill)
    assert client._tok.decode(ids).endswith("assistant\nHello")  # continued, not closed
    with pytest.raises(ValueError, match="role"):
        asyncio.run(client.generate([{"content": "x"}], max_new_tokens=2))


class CountingClient:
    """A fake backend that records how often it is called."""

    model_id = "fake"

    def __init__(self) -> None:
        self.calls = 0

    async def generate(self, messages, *, max_new_tokens, temperature=0.0) -> Generation:
        self.calls += 1
        return Generation(f"echo {messages[-1]['content']}", 10, 3, 0)

    async def next_token_logprobs(self, prompts, candidates) -> list[ChoiceLogprobs]:
        self.calls += 1
        return [
            ChoiceLogprobs({c: -float(i + j) for j, c in enumerate(candidates)}, 7, 0)
            for i, _ in enumerate(prompts)
        ]

    def close(self) -> None:
        pass


def test_cache_hit_identical_and_counts_as_cached(tmp_path) -> None:
    path = tmp_path / "r00000.jsonl"
    inner = CountingClient()
    cached = CachedClient(inner, ResponseCache(path))
    msgs = [{"role": "user", "content": "hi"}]
    prompts = [_prompt("a"), _prompt("b")]
    g1 = asyncio.run(cached.generate(msgs, max_new_tokens=5))
    l1 = asyncio.run(cached.next_token_logprobs(prompts, ["Yes", "No"]))
    assert inner.calls == 2 and g1.cached_prompt_tokens == 0
    # a fresh process: reload from disk, answer without calling the model
    inner2 = CountingClient()
    again = MeteredClient(CachedClient(inner2, ResponseCache(path)))
    g2 = asyncio.run(again.generate(msgs, max_new_tokens=5))
    l2 = asyncio.run(again.next_token_logprobs(prompts, ["Yes", "No"]))
    assert inner2.calls == 0
    assert g2.text == g1.text and [x.logprobs for x in l2] == [x.logprobs for x in l1]
    assert again.usage.prompt == 10 + 14 and again.usage.prompt_computed == 0
    # different sampling params are a different entry
    asyncio.run(again.generate(msgs, max_new_tokens=6))
    assert inner2.calls == 1


def test_cache_partial_batch_only_computes_missing(tmp_path) -> None:
    inner = CountingClient()
    cached = CachedClient(inner, ResponseCache(tmp_path / "c.jsonl"))
    asyncio.run(cached.next_token_logprobs([_prompt("a")], ["Yes", "No"]))
    out = asyncio.run(cached.next_token_logprobs([_prompt("a"), _prompt("b")], ["Yes", "No"]))
    assert cached.hits == 1 and cached.misses == 2 and len(out) == 2
    assert out[0].cached_prompt_tokens == 7 and out[1].cached_prompt_tokens == 0


def test_cache_ignores_torn_last_line(tmp_path) -> None:
    path = tmp_path / "r00001.jsonl"
    cache = ResponseCache(path)
    cache.put("k1", {"text": "a", "prompt_tokens": 1, "completion_tokens": 1})
    cache.close()
    with open(path, "ab") as f:
        f.write(b'{"key": "k2", "value": {"te')  # killed mid-write
    reloaded = ResponseCache(path)
    assert len(reloaded) == 1 and reloaded.n_skipped == 1
    reloaded.put("k3", {"x": 1})  # appending after a torn line stays readable
    reloaded.close()
    final = ResponseCache(path)
    assert final.get("k1") is not None and final.get("k3") == {"x": 1}
    assert json.loads(path.read_text().splitlines()[-1])["key"] == "k3"


def test_build_client_wraps_cache_only_when_asked(tmp_path) -> None:
    cfg = LLMConfig(model="smollm2-135m-instruct", dtype="float32")
    assert isinstance(build_client(cfg, tmp_path / "x.jsonl"), CachedClient)
    assert isinstance(build_client(cfg, None), TransformersClient)
    off = LLMConfig(model="smollm2-135m-instruct", dtype="float32", cache=False)
    assert isinstance(build_client(off, tmp_path / "x.jsonl"), TransformersClient)
