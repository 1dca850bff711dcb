"""Teacher-forced reply log-probs (backend, cache, meter) and the LM-based scorers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from interp.config import LLMConfig
from interp.llm import CachedClient, MeteredClient, ResponseCache
from interp.llm.base import TextLogprobs
from interp.llm.transformers_backend import TransformersClient

pytestmark = pytest.mark.unit

CHAT = [
    {"role": "system", "content": "Continue the text."},
    {"role": "user", "content": "Write a line about cats."},
]
REPLY = "The cat\tsat on 10 mats, purring."
DIGITS = [str(d) for d in range(10)]


@pytest.fixture(scope="module")
def client() -> TransformersClient:
    torch.manual_seed(0)
    return TransformersClient(
        LLMConfig(model="smollm2-135m-instruct", dtype="float32", device="cpu", score_batch_size=4)
    )


def _reference(client: TransformersClient, messages, reply: str) -> tuple[list[int], np.ndarray]:
    """One plain forward over prompt + reply, no prefix store: the definition."""
    prompt = client.encode_chat(messages).tolist()
    ids = client._tok(reply, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = client._model(input_ids=torch.tensor([prompt + ids])).logits[0].float()
    lp_RV = torch.log_softmax(logits[len(prompt) - 1 : -1], -1).double().numpy()
    return ids, lp_RV


def test_continuation_logprobs_equal_a_full_forward(client: TransformersClient) -> None:
    # twice: the second call finds the prompt in the prefix store and must agree.
    # float32 with the prompt and reply in separate forwards: ~1e-5 relative noise
    for attempt in range(2):
        got = asyncio.run(client.continuation_logprobs(CHAT, REPLY, DIGITS))
        ids, lp_RV = _reference(client, CHAT, REPLY)
        assert got.tokens == [client._tok.decode([t]) for t in ids]
        assert "".join(got.tokens) == REPLY
        np.testing.assert_allclose(
            got.logprobs, lp_RV[np.arange(len(ids)), ids], rtol=1e-5, atol=1e-5
        )
        cand = client.candidate_token_ids(DIGITS)
        for i, row in enumerate(got.candidates):
            assert list(row) == DIGITS
            np.testing.assert_allclose(
                [row[d] for d in DIGITS], lp_RV[i, cand], rtol=1e-5, atol=1e-5
            )
        n_prompt = len(client.encode_chat(CHAT))
        assert got.prompt_tokens == n_prompt + len(ids)
        # first call: nothing cached yet; second: the whole prompt but its last token
        assert got.cached_prompt_tokens == (0 if attempt == 0 else n_prompt - 1)


def test_continuation_without_candidates_and_bad_input(client: TransformersClient) -> None:
    got = asyncio.run(client.continuation_logprobs(CHAT, "Hi"))
    assert got.candidates == [{} for _ in got.tokens] and len(got.logprobs) == len(got.tokens)
    assert all(lp <= 0 for lp in got.logprobs)
    with pytest.raises(ValueError, match="continuation is empty"):
        asyncio.run(client.continuation_logprobs(CHAT, ""))
    with pytest.raises(ValueError, match="share a first token"):
        asyncio.run(client.continuation_logprobs(CHAT, "x", ["1", "10"]))


class FakeText:
    """A backend whose teacher-forced replies are fixed numbers; counts its calls."""

    model_id = "fake"

    def __init__(self) -> None:
        self.calls = 0

    async def continuation_logprobs(self, messages, continuation, candidates=()) -> TextLogprobs:
        self.calls += 1
        toks = continuation.split(" ")
        cands = [
            {c: (-float("inf") if c == "9" else -1.0 - j) for j, c in enumerate(candidates)}
            for _ in toks
        ]
        return TextLogprobs(toks, [-0.5 * (i + 1) for i in range(len(toks))], cands, 20, 0)

    def close(self) -> None:
        pass


def test_cache_answers_continuations_for_free_and_meter_counts(tmp_path) -> None:
    path = tmp_path / "r.jsonl"
    first = MeteredClient(CachedClient(FakeText(), ResponseCache(path)))
    a = asyncio.run(first.continuation_logprobs(CHAT, "a b c", ["0", "9"]))
    assert first.usage.prompt == 20 and first.usage.prompt_computed == 20
    inner = FakeText()
    again = MeteredClient(CachedClient(inner, ResponseCache(path)))  # a fresh process
    b = asyncio.run(again.continuation_logprobs(CHAT, "a b c", ["0", "9"]))
    assert inner.calls == 0
    assert (b.tokens, b.logprobs, b.candidates) == (a.tokens, a.logprobs, a.candidates)
    assert b.candidates[0]["9"] == -float("inf")  # survives JSON as null
    assert again.usage.as_dict() == {
        "prompt": 20,
        "completion": 0,
        "prompt_computed": 0,
        "calls": 1,
    }
    # other candidates or another reply are other entries
    asyncio.run(again.continuation_logprobs(CHAT, "a b c", ["0"]))
    asyncio.run(again.continuation_logprobs(CHAT, "a b", ["0", "9"]))
    assert inner.calls == 2 and again.usage.prompt_computed == 40
