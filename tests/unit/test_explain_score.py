"""Highlighting, prompts, explanation parsing, explainers, baseline, control (fake LLM).

The scorers and metrics are tested in test_scorers.py and test_metrics.py."""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest
from word_tokens import CAT, RENDER

from interp.config import ExplainerConfig, RunConfig, load_run_config
from interp.explain import (
    TokenRenderer,
    check_reply,
    derangement,
    explain,
    explain_messages,
    highlight,
    parse_explanation,
    single_token_explanation,
    top_marked_tokens,
)
from interp.explain.prompts import highlight_mask, render_example
from interp.interpret.pipeline import LatentRange, interpret_range
from interp.latents.examples import Example
from interp.llm.base import ChoiceLogprobs, Generation
from interp.score.classifier import as_clause
from interp.stages.interpret import range_config

pytestmark = pytest.mark.unit


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
        ("Explanation: words about love. They appear in poems.", "words about love"),
        ("Explanation: e.g. Python keywords", "e.g. Python keywords"),
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
    task = LatentRange(0, 10, 14)
    records = asyncio.run(
        interpret_range(range_config(cfg), task, csr, ids, RENDER, client, lambda: next(stops))
    )
    assert [r.latent for r in records] == [10, 11, 12, 13]
    assert [r.status for r in records] == ["ok", "too_rare", "ok", "error"]
    ok = records[0]
    assert ok.explanation == "the word cat" and ok.n_active_contexts == 30
    assert set(ok.scores) == {"detection", "fuzzing"}
    assert ok.tokens.prompt > ok.tokens.prompt_computed > 0
    assert "ascending" in records[3].error
    # asked to stop: nothing is returned (the task stays uncommitted)
    assert (
        asyncio.run(
            interpret_range(range_config(cfg), task, csr, ids, RENDER, client, lambda: True)
        )
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


# --------------------------------------------------------------------------- explainers
class ListTokenizer:
    """Token id -> the string at that index of ``vocab``."""

    all_special_ids: list[int] = []

    def __init__(self, vocab: list[str]) -> None:
        self.vocab = vocab

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocab[i] for i in ids)


def test_markers_in_the_text_are_escaped_and_tally_tokens_quoted() -> None:
    vocab = [" x", " <<", " 2", " >>", '"', " y", "<", ">", "z"]
    render = TokenRenderer(ListTokenizer(vocab))
    ex = Example(np.array([0, 1, 2, 3, 4, 5]), np.array([0, 0, 1.0, 0, 1.0, 0]), 0, 0)
    msgs = explain_messages([ex], render, 0.3, show_activations=False)
    user = msgs[1]["content"]
    assert '1. x « <<2>> »<<">> y' in user
    assert user.count("<<") == 2 and user.count(">>") == 2  # only our markers
    assert 'Most frequent marked tokens: "2" (1), "\\"" (1).' in user
    # a lone '<' of the text touching one of our markers is escaped too
    ex = Example(np.array([6, 8, 7]), np.array([0, 1.0, 0]), 0, 0)
    assert render_example(ex, render, highlight_mask(ex.acts, 0.3)) == "‹<<z>>›"


def test_contrastive_prompt_shows_unmarked_negatives_and_cot_asks_for_reasoning() -> None:
    pos = Example(np.array([1, 2, 3]), np.array([0, 1.0, 0]), 0, 0)
    neg = Example(np.array([1, 6, 7]), np.zeros(3, np.float32), -1, 5)
    plain = explain_messages([pos], RENDER, 0.3, False)[1]["content"]
    assert "inactive" not in plain and "think" not in plain
    user = explain_messages([pos], RENDER, 0.3, False, negatives=[neg])[1]["content"]
    active, inactive = user.split("Excerpts where it is inactive (nothing marked):\n")
    assert "1. the <<cat>> sat" in active
    assert inactive.startswith("1. the dog ran\n") and "<<" not in inactive
    assert "show what the feature does not respond to" in user
    cot = explain_messages([pos], RENDER, 0.3, False, negatives=[neg], cot=True)[1]["content"]
    assert "at most three short sentences" in cot and cot.endswith("what the marked tokens are.")


def test_explain_kinds_cot_budget_and_retry_count() -> None:
    pos = [Example(np.array([1, 2, 3]), np.array([0, 1.0, 0]), 0, 0)]
    neg = [Example(np.array([1, 6, 7]), np.zeros(3, np.float32), -1, 5)]
    caps: list[int] = []

    class Capped(ScriptedClient):
        async def generate(self, messages, *, max_new_tokens, temperature=0.0):
            caps.append(max_new_tokens)
            return await super().generate(messages, max_new_tokens=max_new_tokens)

    reply = "The marked tokens are all cats. So it is about cats.\nExplanation: the word cat"
    client = Capped([reply])
    cfg = ExplainerConfig(kind="contrastive", cot=True, cot_max_new_tokens=99)
    out = asyncio.run(explain(client, pos, RENDER, cfg, negatives=neg))
    assert out.status == "ok" and out.explanation == "the word cat" and out.attempts == 1
    assert caps == [99] and "the dog ran" in client.prompts[0][1]["content"]
    # the default kind ignores negatives; max_retries bounds the attempts
    client = Capped(["???"])
    out = asyncio.run(explain(client, pos, RENDER, ExplainerConfig(max_retries=2), negatives=neg))
    assert out.status == "explain_failed" and out.attempts == 3 and len(client.prompts) == 3
    assert "dog" not in client.prompts[0][1]["content"]
    assert all(len(p) == 5 for p in client.prompts[1:])  # each re-ask: one reply, one reminder
    with pytest.raises(ValueError, match="single_token"):
        asyncio.run(explain(client, pos, RENDER, ExplainerConfig(kind="single_token")))


@pytest.mark.parametrize(
    "text, truncated, expected",
    [
        ("Explanation: the word cat", False, ("the word cat", "")),
        ("Explanation: the word cat. Also dogs and", True, ("the word cat", "")),
        ("Explanation: the word cat and", True, (None, "truncated at the token cap")),
        ("Reasoning first.\nExplanation: cats\nmore", True, ("cats", "")),
        ("", False, (None, "empty reply")),
        ("   \n", True, (None, "empty reply")),
        ("I am not sure.", False, (None, "no 'Explanation:' line")),
        ("Explanation: %%% ???", False, (None, "unusable 'Explanation:' line")),
    ],
)
def test_check_reply(text: str, truncated: bool, expected: tuple) -> None:
    assert check_reply(text, truncated) == expected


def test_single_token_baseline_on_known_data() -> None:
    def ex(ids: list[int], acts: list[float]) -> Example:
        return Example(np.array(ids), np.array(acts, np.float32), 0, 0)

    # 'cat' marked 3 times, 'mat' twice, 'dog' once (below half of 3), 'sat' never marked
    examples = [
        ex([1, 2, 3], [0, 1.0, 0.1]),
        ex([2, 5, 3], [0.9, 0.5, 0]),
        ex([2, 5, 6], [0.8, 0.4, 0.3]),
    ]
    assert top_marked_tokens(examples, RENDER, 0.3, 3) == ["cat", "mat"]
    assert single_token_explanation(examples, RENDER, 0.5, 3) == 'the tokens "cat" or "mat"'
    assert single_token_explanation(examples, RENDER, 0.5, 1) == 'the token "cat"'
    assert single_token_explanation([ex([1, 2], [0, 0])], RENDER, 0.3) is None


def test_derangement_has_no_fixed_point_and_is_deterministic() -> None:
    for n in range(2, 40):
        latents = list(range(100, 100 + 3 * n, 3))
        d = derangement(latents, (0, n))
        assert sorted(d) == latents and sorted(d.values()) == latents  # a permutation
        assert all(k != v for k, v in d.items())
        assert d == derangement(latents, (0, n))
    assert derangement([5], 0) == {} and derangement([], 0) == {}
    assert derangement([1, 2], 0) == {1: 2, 2: 1}
    many = [derangement(list(range(10)), s)[0] for s in range(50)]
    assert len(set(many)) > 3  # the seed matters
    with pytest.raises(ValueError, match="distinct"):
        derangement([1, 1], 0)
