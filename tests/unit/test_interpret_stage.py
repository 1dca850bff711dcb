"""The interpret stage's two passes with an LLM that misbehaves in every way it can.

A fake client (inside this unit test only) picks its behaviour from the token the
latent fires on: a good answer, garbage, an empty string, an answer cut at the token
cap, an answer good only on the re-ask, an error carrying the raw response, a hang, and
a scorer-side failure. Every latent must get one record, failures recorded with their
raw text and counted, and nothing but a parsed explanation ever scored.
"""

from __future__ import annotations

import asyncio
import math
import re
from dataclasses import fields, replace

import numpy as np
import pytest

from interp.config import RunConfig, ScorerConfig, load_run_config
from interp.explain import TokenRenderer
from interp.interpret.pipeline import LatentRange, interpret_range
from interp.interpret.summary import check_not_all_errors, client_stats, summarize
from interp.llm.base import ChoiceLogprobs, Generation
from interp.stages.interpret import range_config

pytestmark = pytest.mark.unit

WORDS = ["<s>", " the", " on", " a", "\n", " cat", " dog", " mat", " ran", " sat", " big"]
WORDS += [" hot", " boom"]
FILLER = [1, 2, 3, 4]
TRIGGERS = {w.strip(): i for i, w in enumerate(WORDS) if i > 4}
BEHAVIOUR = {
    "cat": "ok",
    "dog": "ok_on_retry",
    "mat": "garbage",
    "ran": "empty",
    "sat": "truncated",
    "big": "raise",
    "hot": "hang",
    "boom": "score_raises",
}
CTX, N_CTX = 16, 160


class Tokenizer:
    all_special_ids = [0]

    def decode(self, ids: list[int]) -> str:
        return "".join(WORDS[i] for i in ids)


RENDER = TokenRenderer(Tokenizer())


class LLMError(RuntimeError):
    """Like an HTTP backend's response error: carries what the server sent."""

    def __init__(self, msg: str, raw: str) -> None:
        super().__init__(msg)
        self.raw = raw


class FaultyClient:
    """Explains by the marked-token tally; scores Yes iff the explained word is in the text."""

    model_id = "faulty"

    def __init__(self) -> None:
        self.scored: list[str] = []  # explanation of every scored prompt
        self.explain_prompts: list[str] = []

    async def generate(self, messages, *, max_new_tokens, temperature=0.0) -> Generation:
        self.explain_prompts.append(messages[1]["content"])
        word = re.search(r'marked tokens: "(\w+)"', messages[1]["content"]).group(1)
        retry = len(messages) > 2
        kind = BEHAVIOUR[word]
        if kind == "raise":
            raise LLMError("server answered 500 three times", raw="<html>500 oops</html>")
        if kind == "hang":
            await asyncio.Event().wait()
        text = {
            "ok": f"Explanation: the word {word}",
            "score_raises": f"Explanation: the word {word}",
            "ok_on_retry": f" the word {word}." if retry else "I think it is about stuff",
            "garbage": "%%%% ???",
            "empty": "",
            "truncated": "Explanation: the word",
        }[kind]
        n = max_new_tokens if kind == "truncated" else 6
        return Generation(text, 120, n, 0)

    async def next_token_logprobs(self, prompts, candidates) -> list[ChoiceLogprobs]:
        out = []
        for p in prompts:
            content = p[-1]["content"]
            m = re.search(r'the (?:word|token) "?(\w+)"?', content)
            word = m.group(1)
            if word == "boom":
                raise LLMError("scorer call failed", raw="boom body")
            self.scored.append(word)
            rest = content.replace(m.group(0), "")
            yes = 0.9 if word in rest else 0.1
            out.append(ChoiceLogprobs({"Yes": math.log(yes), "No": math.log(1 - yes)}, 40, 30))
        return out

    def close(self) -> None:
        pass


class _CSR:
    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.offsets = np.cumsum([0] + [len(t) for t, _ in parts])
        self.tok = np.concatenate([t for t, _ in parts]).astype(np.uint32)
        self.val = np.concatenate([v for _, v in parts]).astype(np.float16)


def _data(words: list[str], rare: bool = True) -> tuple[_CSR, np.ndarray]:
    """One latent per word, firing on every occurrence of it; plus a latent firing once."""
    rng = np.random.default_rng(3)
    ids = rng.choice(FILLER, size=N_CTX * CTX)
    for w in words:
        ctxs = rng.choice(N_CTX, size=24, replace=False)
        ids[ctxs * CTX + rng.integers(2, CTX, size=24)] = TRIGGERS[w]
    parts = []
    for w in words:
        pos = np.flatnonzero(ids == TRIGGERS[w])
        parts.append((pos, 1 + (pos % 3).astype(np.float32)))
    if rare:
        parts.append((np.array([7]), np.ones(1, np.float32)))
    return _CSR(parts), ids


def _cfg(examples: dict | None = None, **interpret) -> RunConfig:
    scorer: dict = {"names": ["detection", "fuzzing"]}
    known = {f.name for f in fields(ScorerConfig)}
    if "examples_per_prompt" in known:
        scorer["examples_per_prompt"] = 1  # the fake answers one example per prompt
    if "bootstrap_resamples" in known:
        scorer["bootstrap_resamples"] = 50  # confidence intervals are not tested here
    return load_run_config(
        {
            "data": {"ctx_len": CTX},
            "collect": {"num_tokens": N_CTX * CTX, "slice_tokens": N_CTX * CTX},
            "scorer": scorer,
            "interpret": {
                "examples": {
                    "window": 8, "n_explain": 6, "n_score_active": 6, "n_score_inactive": 6,
                    "min_examples": 4, **(examples or {}),
                },
                **interpret,
            },
        }
    )  # fmt: skip


def _run(cfg: RunConfig, words: list[str], client=None, stop=lambda: False, rare=True):
    csr, ids = _data(words, rare)
    n = len(words) + rare
    client = client or FaultyClient()
    task = LatentRange(0, 100, 100 + n)
    return asyncio.run(interpret_range(range_config(cfg), task, csr, ids, RENDER, client, stop))


def test_every_fault_is_recorded_counted_and_never_scored() -> None:
    words = [w for w in BEHAVIOUR if w != "hot"]  # the hang: see the last test
    client = FaultyClient()
    records = _run(_cfg(), words, client)
    by_word = dict(zip([*words, "rare"], records))
    assert [r.latent for r in records] == list(range(100, 100 + len(words) + 1))
    status = {w: r.status for w, r in by_word.items()}
    assert status == {
        "cat": "ok", "dog": "ok", "mat": "explain_failed", "ran": "explain_failed",
        "sat": "explain_failed", "big": "error", "boom": "error",
        "rare": "too_rare",
    }  # fmt: skip
    # explained: parsed text only; the re-ask is counted
    assert by_word["cat"].explanation == "the word cat" and by_word["cat"].retries == 0
    assert by_word["dog"].explanation == "the word dog" and by_word["dog"].retries == 1
    # failures keep every raw reply and say why; nothing of theirs is scored
    mat = by_word["mat"]
    assert mat.raw_explanation.count("%%%% ???") == 2 and mat.retries == 1
    assert "no 'Explanation:' line" in mat.error
    assert "empty reply" in by_word["ran"].error
    assert "truncated at the token cap" in by_word["sat"].error
    assert "Explanation: the word" in by_word["sat"].raw_explanation
    big = by_word["big"]
    assert "<html>500 oops</html>" in big.raw_explanation and "LLMError" in big.error
    assert "scorer detection failed" in by_word["boom"].error
    assert "boom body" in by_word["boom"].error and by_word["boom"].scores == {}
    assert "too_rare" not in by_word["rare"].error and "min_examples" in by_word["rare"].error
    for w in ("mat", "ran", "sat", "big", "rare"):
        r = by_word[w]
        assert r.explanation is None and r.scores == {} and r.control is None
    assert not {"mat", "ran", "sat", "big"} & set(client.scored)
    # token costs are kept for failed latents too
    assert by_word["mat"].tokens.prompt == 240 and by_word["rare"].tokens.prompt == 0
    # the summary counts every outcome
    s = summarize(records, 1.0)
    assert s["n_latents"] == 8 and s["n_ok"] == 2 and s["n_scored"] == 2
    assert s["n_failed"] == 5 and s["n_skipped"] == 1
    assert s["n_retried"] == 4  # dog, mat, ran, sat
    assert s["n_control_failed"] == 1  # the latent whose control is boom's explanation
    assert s["scorer_failed_examples"]["detection"] == {"real": 0, "control": 0}


def test_control_is_another_latents_explanation_scored_like_the_real_one() -> None:
    words = ["cat", "dog", "boom"]
    records = _run(_cfg(), words, rare=False)
    explained = {r.latent: r.explanation for r in records}
    sources = {r.latent: r.control.source_latent for r in records}
    assert sorted(sources.values()) == sorted(sources)  # a permutation of the explained
    assert all(src != latent for latent, src in sources.items())  # never its own
    for r in records:
        c = r.control
        assert c.explanation == explained[c.source_latent]
        if explained[c.source_latent] == "the word boom":
            assert "scorer" in c.error and c.scores == {}
        elif r.status == "ok":
            for name in ("detection", "fuzzing"):
                real, ctrl = r.scores[name], c.scores[name]
                assert real["n"] == ctrl["n"]  # same examples
                assert real["auroc"] == 1.0 and ctrl["auroc"] < 0.8
    scored = [r for r in records if r.control.error is None]
    assert scored and all(r.tokens.parts["control"].prompt > 0 for r in scored)
    # deterministic: the same pairs on a rerun
    again = _run(_cfg(), words, rare=False)
    assert [r.control.source_latent for r in again] == [sources[r.latent] for r in again]
    s = summarize(records, 1.0)["scores"]["detection"]["auroc"]
    assert s["real"] == 1.0 and s["control"] < 0.8 and s["n_real"] == 2


def test_single_token_baseline_and_kind() -> None:
    records = _run(_cfg(baseline=True), ["cat", "dog"], rare=False)
    cat = records[0]
    assert cat.baseline.explanation == 'the token "cat"'
    assert cat.baseline.scores["detection"]["auroc"] == 1.0
    assert "baseline" in summarize(records, 1.0)["scores"]["detection"]["auroc"]
    # kind=single_token: no generation at all, the baseline is the explanation
    client = FaultyClient()

    async def no_generation(*a, **k):
        raise AssertionError("single_token must not call the LLM to explain")

    client.generate = no_generation
    records = _run(_cfg(explainer={"kind": "single_token"}), ["cat", "dog"], client, rare=False)
    assert [r.explanation for r in records] == ['the token "cat"', 'the token "dog"']
    assert all(r.status == "ok" and r.baseline is None for r in records)


def test_concurrent_latents_give_the_same_records() -> None:
    words = ["cat", "dog", "mat", "big"]

    def strip(records):
        return [replace(r, wall_s=0.0) for r in records]

    one = _run(_cfg(), words)
    many = _run(_cfg(max_concurrent_latents=4), words)
    assert strip(one) == strip(many)


def test_hang_times_out_and_all_errors_fail_the_task() -> None:
    # 'hot' never answers: a latent that hangs forever, cut by latent_timeout_s (only the
    # explain pass runs here, so the limit never races real work)
    records = _run(_cfg(latent_timeout_s=0.2), ["big", "hot"])
    assert [r.status for r in records] == ["error", "error", "too_rare"]
    assert "interpret.latent_timeout_s=0.2" in records[1].error
    with pytest.raises(RuntimeError, match="all 2 latents failed"):
        check_not_all_errors(records, 0)
    check_not_all_errors(_run(_cfg(), ["big", "cat"]), 0)  # one ok: fine


def test_stop_request_returns_nothing() -> None:
    calls = iter(range(1000))
    assert _run(_cfg(), ["cat", "dog"], stop=lambda: next(calls) >= 3) is None  # in pass 2
    assert _run(_cfg(), ["cat", "dog"], stop=lambda: True) is None


def test_contrastive_explainer_gets_the_latents_inactive_examples() -> None:
    client = FaultyClient()
    cfg = _cfg({"n_explain_inactive": 3}, explainer={"kind": "contrastive"})
    records = _run(cfg, ["cat"], client, rare=False)
    assert records[0].status == "ok"
    assert records[0].negatives["explain"] == {"random": 3}
    prompt = client.explain_prompts[0]
    inactive = prompt.split("Excerpts where it is inactive (nothing marked):\n")[1]
    assert [line[:3] for line in inactive.split("\n")[:3]] == ["1. ", "2. ", "3. "]
    assert "cat" not in inactive.split("\n\n")[0]  # the latent never fires there


def test_client_stats_reads_through_wrappers() -> None:
    class Backend:
        stats = {"retries": 3, "failovers": 1, "note": "x"}

    class Cache:
        hits, misses, inner = 5, 2, Backend()

    assert client_stats(Cache()) == {
        "cache_hits": 5, "cache_misses": 2, "retries": 3, "failovers": 1
    }  # fmt: skip
    assert client_stats(FaultyClient()) == {}


def test_unusable_scorer_answers_are_counted_in_the_summary() -> None:
    class NoAnswerSometimes(FaultyClient):
        """Every third scoring prompt gets no usable Yes/No log-probs."""

        calls = 0

        async def next_token_logprobs(self, prompts, candidates):
            out = await super().next_token_logprobs(prompts, candidates)
            for i in range(len(out)):
                NoAnswerSometimes.calls += 1
                if NoAnswerSometimes.calls % 3 == 0:
                    out[i] = ChoiceLogprobs({}, 40, 30)
            return out

    records = _run(_cfg(), ["cat", "dog"], NoAnswerSometimes(), rare=False)
    failed = summarize(records, 1.0)["scorer_failed_examples"]
    for name in ("detection", "fuzzing"):
        real = sum(r.scores[name]["n_failed"] for r in records)
        assert failed[name]["real"] == real > 0
        assert failed[name]["control"] > 0
