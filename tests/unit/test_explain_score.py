"""Highlighting, explanation parsing, metrics, and detection/fuzzing end to end (fake LLM)."""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest

from interp.config import ExamplesConfig, ExplainerConfig, RunConfig, load_run_config
from interp.explain import TokenRenderer, explain, explain_messages, highlight, parse_explanation
from interp.explain.prompts import highlight_mask, render_example
from interp.latents import build_examples
from interp.latents.examples import Example, LatentExamples
from interp.llm.base import ChoiceLogprobs, Generation
from interp.plan import Task
from interp.score import auroc, classification_metrics, run_scorers, yes_probability
from interp.score.classifier import as_clause
from interp.stages.interpret import interpret_range

pytestmark = pytest.mark.unit

WORDS = ["<s>", " the", " cat", " sat", " on", " mat", " dog", " ran", "\n", " a", " big"]
CAT = 2


class WordTokenizer:
    """Token id -> word; id 0 is special."""

    all_special_ids = [0]

    def decode(self, ids: list[int]) -> str:
        return "".join(WORDS[i] for i in ids)


RENDER = TokenRenderer(WordTokenizer())


# --------------------------------------------------------------------------- highlighting
def test_highlight_merges_runs_and_keeps_spaces_outside() -> None:
    strings = [" was", " over", " the", " moon", " to", " find"]
    mask = np.array([0, 1, 1, 1, 0, 1], dtype=bool)
    assert highlight(strings, mask) == " was <<over the moon>> to <<find>>"
    assert highlight(strings, np.zeros(6, bool)) == "".join(strings)


def test_highlight_threshold_is_relative_to_the_example_max() -> None:
    acts = np.array([0.0, 0.2, 0.3, 1.0, 0.29], dtype=np.float32)
    assert highlight_mask(acts, 0.3).tolist() == [False, False, True, True, False]
    assert not highlight_mask(np.zeros(3, np.float32), 0.3).any()


def test_rendering_decodes_per_token_and_hides_specials() -> None:
    ex = Example(np.array([0, 1, 2, 3, 8, 4, 1, 5]), np.array([0, 0, 5, 0, 0, 0, 0, 2.0]), 0, 0)
    text = render_example(ex, RENDER, highlight_mask(ex.acts, 0.3))
    assert text == "the <<cat>> sat↵ on the <<mat>>"
    with_acts = render_example(ex, RENDER, highlight_mask(ex.acts, 0.3), scale=5.0)
    assert with_acts.endswith("[activations: cat=10, mat=4]")
    msgs = explain_messages([ex, ex], RENDER, 0.3, show_activations=False)
    user = msgs[1]["content"]
    assert msgs[0]["role"] == "system" and "1. the <<cat>> sat" in user
    assert 'Most frequent marked tokens: "cat" (2), "mat" (2).' in user
    assert user.endswith("names what the marked tokens are.")  # the question comes last


# --------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "text, expected",
    [
        ("Explanation: the word cat", "the word cat"),
        ('Some thoughts.\n**Explanation:** "animals, mostly cats"\n', "animals, mostly cats"),
        ("explanation : `<<cat>>` tokens", "cat tokens"),
        ("Explanation: first\nExplanation: second one", "second one"),
        ("Explanation: The marked tokens are all related to the sea.", "words related to the sea"),
        ("Explanation: These tokens are question marks.", "question marks"),
        ("Explanation: The feature responds to Python keywords", "Python keywords"),
    ],
)
def test_parse_good(text: str, expected: str) -> None:
    assert parse_explanation(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The feature is about cats.",
        'Reply with "Explanation:" followed by a noun phrase',  # an echo of the instructions
        'Explanation: "Explanation:" followed by a noun phrase',
        "Explanation: The marked tokens have the following features:",
        "Explanation:",
        "Explanation: ''",
        "Explanation: " + "x" * 300,
    ],
)
def test_parse_rejects_missing_empty_or_rambling(text: str) -> None:
    assert parse_explanation(text) is None


class ScriptedClient:
    """Fake LLM: generation from a script; Yes when the excerpt (or its marks) has 'cat'."""

    model_id = "fake"

    def __init__(self, replies: list[str] | None = None) -> None:
        self.replies = list(replies or ["Explanation: the word cat"])
        self.prompts: list[list[dict]] = []

    async def generate(self, messages, *, max_new_tokens, temperature=0.0) -> Generation:
        self.prompts.append(messages)
        text = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
        return Generation(text, 100, 8, 0)

    async def next_token_logprobs(self, prompts, candidates) -> list[ChoiceLogprobs]:
        out = []
        for p in prompts:
            excerpt = p[-1]["content"].split("\n\n", 1)[1]
            marked = re.findall(r"<<(.*?)>>", excerpt)
            hit = any("cat" in m for m in marked) if marked else "cat" in excerpt
            lp = {"Yes": math.log(0.9), "No": math.log(0.1)}
            if not hit:
                lp = {"Yes": math.log(0.2), "No": math.log(0.8)}
            out.append(ChoiceLogprobs(lp, 50, 40))
        return out

    def close(self) -> None:
        pass


def test_explanation_reads_inside_a_question() -> None:
    assert as_clause("Question marks.") == "question marks"
    assert as_clause("DNA sequences") == "DNA sequences"


def test_explain_retries_once_then_fails_with_raw_text() -> None:
    ex = [Example(np.array([1, 2]), np.array([0, 1.0]), 0, 0)]
    cfg = ExplainerConfig()
    client = ScriptedClient(["rambling", " cats"])
    ok = asyncio.run(explain(client, ex, RENDER, cfg))
    assert ok.status == "ok" and ok.explanation == "cats"
    assert ok.raw == "Explanation: The marked tokens are cats"
    # the retry reminds, and opens the reply with the marker (a prefill)
    assert [m["role"] for m in client.prompts[1]] == [
        "system", "user", "assistant", "user", "assistant"
    ]  # fmt: skip
    assert client.prompts[1][-1]["content"] == "Explanation: The marked tokens are"
    client = ScriptedClient(["no marker here", "  "])
    bad = asyncio.run(explain(client, ex, RENDER, cfg))
    assert bad.status == "explain_failed" and bad.explanation is None
    assert "no marker here" in bad.raw and "Explanation:" in bad.raw


# --------------------------------------------------------------------------- metrics
def test_metrics_hand_checked_case() -> None:
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    probs = np.array([0.9, 0.8, 0.4, 0.6, 0.1, 0.7, 0.2, 0.3])
    q = np.array([0, 0, 1, 1, -1, -1, -1, -1])
    m = classification_metrics(labels, probs, q)
    # predictions at 0.5: TP=3 FN=1 FP=1 TN=3
    assert m["recall"] == 0.75 and m["precision"] == 0.75 and m["f1"] == 0.75
    assert m["balanced_accuracy"] == 0.75 and m["n"] == 8 and m["n_failed"] == 0
    # AUROC: of 16 (pos, neg) pairs, the positive is higher in 14
    assert m["auroc"] == pytest.approx(14 / 16)
    assert m["per_quantile"] == [
        {"quantile": 0, "n": 2, "accuracy": 1.0},
        {"quantile": 1, "n": 2, "accuracy": 0.5},
        {"quantile": -1, "n": 4, "accuracy": 0.75},
    ]


def _auroc_by_pairs(labels: np.ndarray, probs: np.ndarray) -> float:
    pos, neg = probs[labels], probs[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (len(pos) * len(neg))


def test_auroc_matches_pair_counting_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.random(30) < 0.5
        labels[:2] = [True, False]
        probs = rng.integers(0, 5, size=30) / 4  # many ties
        assert auroc(labels, probs) == pytest.approx(_auroc_by_pairs(labels, probs))


def test_metrics_undefined_and_failed_examples() -> None:
    m = classification_metrics(
        np.array([1, 1, 0], bool), np.array([0.1, np.nan, 0.2]), np.array([0, 0, -1])
    )
    assert m["n"] == 2 and m["n_failed"] == 1
    assert m["precision"] is None and m["recall"] == 0.0 and m["balanced_accuracy"] == 0.5
    only_pos = classification_metrics(np.array([1], bool), np.array([0.9]), np.array([0]))
    assert only_pos["auroc"] is None and only_pos["balanced_accuracy"] is None
    assert math.isnan(yes_probability(ChoiceLogprobs({}, 1, 0)))
    assert yes_probability(ChoiceLogprobs({"Yes": 0.0, "No": -math.inf}, 1, 0)) == 1.0


# --------------------------------------------------------------------------- scorers
def _cat_latent() -> LatentExamples:
    """Contexts of 8 tokens; the latent fires on 'cat' (id 2) only."""
    rng = np.random.default_rng(1)
    n_ctx, ctx = 120, 8
    ids = rng.choice([1, 3, 4, 5, 6, 7, 9, 10], size=n_ctx * ctx)
    cat_ctx = rng.choice(n_ctx, size=40, replace=False)
    pos = cat_ctx * ctx + rng.integers(1, ctx, size=40)
    ids[pos] = CAT
    tok = np.sort(pos).astype(np.uint32)
    val = (1 + rng.random(40)).astype(np.float16)
    cfg = ExamplesConfig(window=6, n_explain=8, n_score_active=8, n_score_inactive=8)
    return build_examples(tok, val, ids, ctx, cfg, latent=0)


@pytest.mark.parametrize("explanation, good", [("the word cat", True), ("dogs", False)])
def test_detection_and_fuzzing_end_to_end(explanation: str, good: bool) -> None:
    examples = _cat_latent()
    client = ScriptedClient()
    out = asyncio.run(
        run_scorers(("detection", "fuzzing"), client, explanation, examples, RENDER, 0.3,
                    np.random.default_rng(0))
    )  # fmt: skip
    for name in ("detection", "fuzzing"):
        m = out[name].metrics()
        assert m["n"] == 16 and out[name].labels.sum() == 8
        assert m["balanced_accuracy"] == 1.0 and m["auroc"] == 1.0
    assert not client.prompts  # scorers read log-probs, they never generate


def test_fuzzing_negatives_get_random_highlights_of_matching_count() -> None:
    examples = _cat_latent()
    seen: list[str] = []

    class Spy(ScriptedClient):
        async def next_token_logprobs(self, prompts, candidates):
            seen.extend(p[-1]["content"] for p in prompts)
            return await super().next_token_logprobs(prompts, candidates)

    asyncio.run(
        run_scorers(("fuzzing",), Spy(), "cats", examples, RENDER, 0.3, np.random.default_rng(0))
    )
    negatives = seen[8:]
    assert all(s.count("<<") == 1 for s in negatives)  # positives mark one token each
    prefix = seen[0].split("\n\n")[0] + "\n\n"
    assert all(s.startswith(prefix) for s in seen)  # instructions first, example last


# --------------------------------------------------------------------------- the stage loop
class _CSR:
    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.offsets = np.cumsum([0] + [len(t) for t, _ in parts])
        self.tok = np.concatenate([t for t, _ in parts]).astype(np.uint32)
        self.val = np.concatenate([v for _, v in parts]).astype(np.float16)


def test_interpret_range_gives_one_record_per_latent() -> None:
    rng = np.random.default_rng(2)
    n_ctx, ctx = 100, 16
    ids = rng.choice([1, 3, 4, 5, 6, 7, 9, 10], size=n_ctx * ctx)
    cat_pos = np.sort(rng.choice(n_ctx, size=30, replace=False) * ctx + 5)
    ids[cat_pos] = CAT
    common = (cat_pos.astype(np.uint32), np.ones(30, np.float16))
    rare = (np.array([17], np.uint32), np.ones(1, np.float16))
    broken = (np.array([5, 3], np.uint32), np.ones(2, np.float16))  # not ascending
    csr = _CSR([common, rare, common, broken])
    cfg = _cfg(ctx)
    client = ScriptedClient(["Explanation: the word cat"])
    stops = iter([False] * 10)
    records = asyncio.run(
        interpret_range(cfg, Task(0, 10, 14), csr, ids, RENDER, client, lambda: next(stops))
    )
    assert [r["latent"] for r in records] == [10, 11, 12, 13]
    assert [r["status"] for r in records] == ["ok", "too_rare", "ok", "error"]
    ok = records[0]
    assert ok["explanation"] == "the word cat" and ok["n_active_contexts"] == 30
    assert set(ok["scores"]) == {"detection", "fuzzing"}
    assert ok["tokens"]["prompt"] > ok["tokens"]["prompt_computed"] > 0
    assert "ascending" in records[3]["error"]
    # asked to stop: nothing is returned (the task stays uncommitted)
    assert (
        asyncio.run(interpret_range(cfg, Task(0, 10, 14), csr, ids, RENDER, client, lambda: True))
        is None
    )


def _cfg(ctx: int) -> RunConfig:
    return load_run_config(
        {
            "data": {"ctx_len": ctx},
            "collect": {"num_tokens": 1600, "slice_tokens": 1600},
            "interpret": {"examples": {"window": 8, "min_examples": 4}},
        }
    )
