"""Teacher-forced reply log-probs (backend, cache, meter) and the LM-based scorers."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from interp.config import LLMConfig, ScorerConfig
from interp.explain.prompts import TokenRenderer
from interp.latents.examples import Example, LatentExamples
from interp.llm import CachedClient, MeteredClient, ResponseCache
from interp.llm.base import TextLogprobs
from interp.llm.transformers_backend import TransformersClient
from interp.score import embedding, surprisal
from interp.score import simulation as sim
from interp.score.context import ScoreContext, ScoreResources

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
        LLMConfig(model="tiny-random-llama", dtype="float32", device="cpu", score_batch_size=4)
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
        "usage_tokenizer": 0,
        "usage_missing": 0,
    }
    # other candidates or another reply are other entries
    asyncio.run(again.continuation_logprobs(CHAT, "a b c", ["0"]))
    asyncio.run(again.continuation_logprobs(CHAT, "a b", ["0", "9"]))
    assert inner.calls == 2 and again.usage.prompt_computed == 40


# ---------------------------------------------------------------------- scorers
class WordTokenizer:
    """A stand-in tokenizer: token id i is ``VOCAB[i]`` (enough for TokenRenderer)."""

    all_special_ids: list[int] = []

    def decode(self, ids) -> str:
        return "".join(VOCAB[i] for i in ids)


VOCAB = ["The", " cat", " sat", " on", " a", " mat", " stock", " prices", " fell", " kitten", "."]
CAT_WORDS = {" cat", " kitten"}


def _example(words: list[str], quantile: int) -> Example:
    ids = np.array([VOCAB.index(w) for w in words])
    acts = np.array([5.0 if w in CAT_WORDS else 0.0 for w in words], dtype=np.float32)
    if quantile < 0:
        acts[:] = 0.0
    return Example(ids, acts, quantile, 0)


def _ctx(client=None, resources: ScoreResources | None = None) -> ScoreContext:
    active = [
        _example(["The", " cat", " sat", " on", " a", " mat", "."], 0),
        _example(["The", " kitten", " sat", "."], 0),
        _example([" a", " cat", " fell", " on", " a", " kitten", "."], 1),
    ]
    inactive = [
        _example(["The", " stock", " prices", " fell", "."], -1),
        _example([" stock", " prices", " sat", " on", " a", " mat", "."], -1),
    ]
    return ScoreContext(
        latent=3,
        client=client,
        examples=LatentExamples([], active, inactive, 3, "ok"),
        render=TokenRenderer(WordTokenizer()),
        cfg=ScorerConfig(names=("simulation",)),
        highlight_threshold=0.3,
        rng=np.random.default_rng(0),
        resources=resources or ScoreResources(),
    )


def _slot_reply(continuation: str) -> list[str]:
    """Split a simulation reply like a tokenizer would: token, tab, placeholder line end."""
    toks = []
    for line in continuation.splitlines(keepends=True):
        word, rest = line.split("\t")
        toks += [word, "\t", rest]
    return toks


def _digit_lps(probs: dict[int, float]) -> dict[str, float]:
    return {d: (np.log(probs[int(d)]) if int(d) in probs else -np.inf) for d in sim.DIGITS}


def test_expected_values_read_renormalised_digit_distributions() -> None:
    tokens = _slot_reply(" cat\t?\n dog\t?\n.\t?\n")
    cands = [{} for _ in tokens]
    cands[2] = _digit_lps({9: 0.5})  # half the mass elsewhere: renormalised -> 9
    cands[5] = _digit_lps({0: 0.2, 5: 0.2})  # -> 2.5
    cands[8] = {d: -np.inf for d in sim.DIGITS}  # no digit at all -> NaN
    out = TextLogprobs(tokens, [0.0] * len(tokens), cands, 30, 0)
    pred = sim.expected_values(out, 3)
    np.testing.assert_allclose(pred[:2], [9.0, 2.5])
    assert np.isnan(pred[2])
    # a reply whose slots do not line up with the example's tokens fails as a whole
    assert np.isnan(sim.expected_values(out, 4)).all()
    assert sim.slot_positions(tokens) == [2, 5, 8]


class OracleSimulator:
    """Predicts 9 on cat words, 0 elsewhere, through continuation log-probs."""

    model_id = "oracle"

    def __init__(self) -> None:
        self.calls: list[tuple[list, str]] = []

    async def continuation_logprobs(self, messages, continuation, candidates=()):
        self.calls.append((messages, continuation))
        tokens = _slot_reply(continuation)
        cands = []
        for i, _ in enumerate(tokens):
            fires = i % 3 == 2 and tokens[i - 2] in CAT_WORDS
            cands.append(_digit_lps({9: 0.9} if fires else {0: 0.6, 1: 1e-9}))
        return TextLogprobs(tokens, [-1.0] * len(tokens), cands, 50, 0)


def test_perfect_simulator_correlates_one_and_shares_a_prompt() -> None:
    client = OracleSimulator()
    out = asyncio.run(sim.score_simulation(_ctx(client), "cats and kittens"))
    m = out.metrics()
    assert m["correlation"] == pytest.approx(1.0, abs=1e-6)
    assert m["correlation_active"] == pytest.approx(1.0, abs=1e-6)
    assert m["correlation_ci"] == pytest.approx([1.0, 1.0], abs=1e-6)  # every resample
    assert m["n"] == 5 and m["n_failed"] == 0 and m["n_tokens"] == 7 + 4 + 7 + 5 + 7
    assert m["mean_prediction_inactive"] == pytest.approx(0.0, abs=1e-6)
    assert [q["quantile"] for q in m["per_quantile"]] == [0, 1]
    # one call per example, all with the same prompt (a prefix cache computes it once)
    assert len(client.calls) == 5 and all(c[0] == client.calls[0][0] for c in client.calls)
    assert "cats and kittens" in client.calls[0][0][-1]["content"]
    assert client.calls[0][1] == "The\t0\n cat\t0\n sat\t0\n on\t0\n a\t0\n mat\t0\n.\t0\n"


def test_simulation_failed_example_is_counted_not_scored() -> None:
    class Broken(OracleSimulator):
        async def continuation_logprobs(self, messages, continuation, candidates=()):
            out = await super().continuation_logprobs(messages, continuation, candidates)
            if " kitten" in continuation and "The" in continuation:  # merge two slots
                return TextLogprobs(out.tokens[:-3], out.logprobs[:-3], out.candidates[:-3], 1, 0)
            return out

    m = asyncio.run(sim.score_simulation(_ctx(Broken()), "cats")).metrics()
    assert m["n_failed"] == 1 and m["n"] == 4 and m["correlation"] == pytest.approx(1.0)
    assert m["per_quantile"][0]["n"] == 1


class KeywordLM:
    """log P(token) = -1 when the prompt mentions cats and the text is about cats, else -2."""

    model_id = "keyword"

    async def continuation_logprobs(self, messages, continuation, candidates=()):
        helped = "cat" in messages[-1]["content"] and (
            "cat" in continuation or "kitten" in continuation
        )
        toks = continuation.split(" ")
        return TextLogprobs(toks, [-1.0 if helped else -2.0] * len(toks), [{}] * len(toks), 9, 0)


def test_surprisal_sign_a_helpful_explanation_reduces_loss_on_activating_text() -> None:
    m = asyncio.run(surprisal.score_surprisal(_ctx(KeywordLM()), "cats")).metrics()
    assert m["auroc"] == 1.0 and m["n"] == 5 and m["n_failed"] == 0
    assert m["auroc_ci"] == [1.0, 1.0]
    assert m["mean_loss_reduction_active"] == pytest.approx(1.0)
    assert m["mean_loss_reduction_inactive"] == pytest.approx(0.0)
    # an unrelated explanation helps nothing: no separation
    m = asyncio.run(surprisal.score_surprisal(_ctx(KeywordLM()), "finance")).metrics()
    assert m["auroc"] == 0.5 and m["mean_loss_reduction_active"] == pytest.approx(0.0)


def test_embedding_scorer_with_real_minilm_ranks_matching_text_first() -> None:
    from interp.models.embedder import load_embedder

    resources = ScoreResources(factories={"embedder": load_embedder})
    good = asyncio.run(embedding.score_embedding(_ctx(None, resources), "cats and kittens"))
    m = good.metrics()
    assert m["auroc"] == 1.0 and m["n"] == 5
    assert m["mean_similarity_active"] > m["mean_similarity_inactive"] + 0.1
    assert [q["quantile"] for q in m["per_quantile"]] == [0, 1]
    bad = asyncio.run(embedding.score_embedding(_ctx(None, resources), "falling stock prices"))
    assert bad.metrics()["auroc"] == 0.0  # the embedder is reused, not reloaded
    assert len(resources._built) == 1


# ---------------------------------------------------------------------- real LLMs (slow)
WEATHER = {" rain", " snow", " storm", " wind", " thunder", " fog", " hail", " sunshine"}
WEATHER_TEXT = [
    "By noon the rain had turned to snow and the wind picked up.",
    "A storm rolled in from the coast with thunder and hail.",
    "Thick fog covered the valley until the sunshine broke through.",
    "The farmers prayed for rain after months of dry wind.",
]
OTHER_TEXT = [
    "The quarterly report showed revenue growth of twelve percent.",
    "Please restart the server after installing the security update.",
    "He parked the car and climbed the stairs to his office.",
    "The committee will vote on the new budget next Tuesday.",
]
TRUE_EXPLANATION = "weather words like rain and storm"
WRONG_EXPLANATION = "words about money and business"


def _weather_ctx(llm: str) -> ScoreContext:
    """A synthetic weather-words latent on the subject tokenizer, scored by ``llm``."""
    from interp.models.load import load_tokenizer

    subject = load_tokenizer("smollm2-135m")

    def example(text: str, quantile: int) -> Example:
        ids = np.array(subject(text, add_special_tokens=False)["input_ids"])
        fires = [subject.decode([i]) in WEATHER for i in ids]
        return Example(ids, np.where(fires, 6.0, 0.0).astype(np.float32), quantile, 0)

    active = [example(t, i // 2) for i, t in enumerate(WEATHER_TEXT)]
    inactive = [example(t, -1) for t in OTHER_TEXT]
    assert all(e.acts.any() for e in active) and not any(e.acts.any() for e in inactive)
    cfg = LLMConfig(model=llm, dtype="float32", device="cpu")
    return ScoreContext(
        latent=0,
        client=MeteredClient(TransformersClient(cfg)),
        examples=LatentExamples([], active, inactive, 4, "ok"),
        render=TokenRenderer(subject),
        cfg=ScorerConfig(names=("surprisal",), bootstrap_resamples=0),
        highlight_threshold=0.3,
        rng=np.random.default_rng(0),
    )


@pytest.mark.slow
def test_surprisal_real_llm_prefers_the_true_explanation() -> None:
    """SmolLM2-135M-Instruct (~1 min on 2 busy cores): measured AUROC 1.0 vs 0.25."""
    ctx = _weather_ctx("smollm2-135m-instruct")
    good = asyncio.run(surprisal.score_surprisal(ctx, TRUE_EXPLANATION)).metrics()
    bad = asyncio.run(surprisal.score_surprisal(ctx, WRONG_EXPLANATION)).metrics()
    assert good["n_failed"] == bad["n_failed"] == 0
    assert good["auroc"] >= 0.9 and bad["auroc"] <= 0.5
    assert good["mean_loss_reduction_active"] > 0 > bad["mean_loss_reduction_active"]


@pytest.mark.slow
def test_simulation_real_llm_prefers_the_true_explanation() -> None:
    """Qwen2.5-Coder-1.5B (the default scorer; ~5 min on 2 busy cores): 0.70 vs 0.38.

    SmolLM2-135M cannot simulate (0.16 vs 0.18), so this check needs the larger model.
    """
    from model_skips import require_model

    require_model("qwen2.5-coder-1.5b-instruct")
    ctx = _weather_ctx("qwen2.5-coder-1.5b-instruct")
    good = asyncio.run(sim.score_simulation(ctx, TRUE_EXPLANATION)).metrics()
    bad = asyncio.run(sim.score_simulation(ctx, WRONG_EXPLANATION)).metrics()
    assert good["n_failed"] == bad["n_failed"] == 0 and good["n_tokens"] > 40
    assert good["correlation"] >= 0.5 and good["correlation"] - bad["correlation"] >= 0.15
    # the prompt is computed once per explanation, every reply token is computed
    usage = ctx.client.usage
    assert usage.calls == 16 and usage.prompt_computed < usage.prompt / 2


def test_registered_by_name_and_metrics_are_strict_json() -> None:
    from interp.score import get_scorer, run_scorers

    assert get_scorer("surprisal") is surprisal.score_surprisal
    assert get_scorer("simulation") is sim.score_simulation
    assert get_scorer("embedding") is embedding.score_embedding

    class Both(OracleSimulator, KeywordLM):
        async def continuation_logprobs(self, messages, continuation, candidates=()):
            if candidates:
                return await OracleSimulator.continuation_logprobs(
                    self, messages, continuation, candidates
                )
            return await KeywordLM.continuation_logprobs(self, messages, continuation)

    out = asyncio.run(run_scorers(["simulation", "surprisal"], _ctx(Both()), "cats"))
    for name, o in out.items():
        assert o.name == name
        json.dumps(o.metrics(), allow_nan=False)  # None, never NaN, for undefined values
