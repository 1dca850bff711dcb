"""Scorer registry, detection / fuzzing / fuzzing_active (both prompt modes), intruder.

The LLM is a scripted oracle that knows the latent fires on "cat": it says Yes to a text
containing cat (detection) or whose marked tokens are all cat (fuzzing), and names the
excerpt whose marks are not cat (intruder). Real backends are tested in test_llm.py.
"""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest
from word_tokens import CAT, RENDER

from interp.config import ExamplesConfig, ScorerConfig
from interp.explain.prompts import highlight_mask
from interp.latents import build_examples
from interp.latents.examples import Example, LatentExamples
from interp.llm.base import ChoiceLogprobs, Generation, TextLogprobs
from interp.score import (
    ScoreContext,
    ScorerSpec,
    get_scorer,
    register_scorer,
    run_scorers,
    scorer_names,
    unregister_scorer,
)
from interp.score import classifier as clf
from interp.score.intruder import build_rounds, choice_labels, choice_probs

pytestmark = pytest.mark.unit


def _yes(text: str, explanation: str) -> bool:
    if "cat" not in explanation:
        return False  # a wrong explanation matches nothing
    marked = re.findall(r"<<(.*?)>>", text)
    return all(m.strip() == "cat" for m in marked) if marked else "cat" in text


def _explanation(user: str) -> str:
    return user.split("\n\n")[0]


class Oracle:
    """Scripted LLMClient; records what it was asked."""

    model_id = "oracle"

    def __init__(self, garbage_on: int | None = None) -> None:
        self.calls: dict[str, int] = {"generate": 0, "next": 0, "continuation": 0}
        self.prompts: list[str] = []
        self.garbage_on = garbage_on

    async def next_token_logprobs(self, prompts, candidates):
        self.calls["next"] += len(prompts)
        out = []
        for p in prompts:
            user = p[-1]["content"]
            self.prompts.append(user)
            if candidates == ["Yes", "No"]:
                yes = _yes(user.split("\n\n", 1)[1], _explanation(user))
                lp = {"Yes": 0.0 if yes else -4.0, "No": -4.0 if yes else 0.0}
            else:  # intruder: the numbered excerpt whose marks are not all "cat"
                lines = re.findall(r"^(\d+)\. (.*)$", user, re.M)
                odd = [k for k, t in lines if not _yes(t, "cat")]
                lp = {c: (0.0 if [c] == odd else -3.0) for c in candidates}
            out.append(ChoiceLogprobs(lp, 10, 0))
        return out

    def _answers(self, user: str) -> list[bool]:
        lines = re.findall(r"^(\d+)\. (.*)$", user, re.M)
        return [_yes(t, _explanation(user)) for _, t in lines]

    async def generate(self, messages, *, max_new_tokens, temperature=0.0):
        self.calls["generate"] += 1
        assert messages[-1] == {"role": "assistant", "content": "1:"}  # the prefill
        user = messages[-2]["content"]
        self.prompts.append(user)
        if self.garbage_on == self.calls["generate"]:
            return Generation("I cannot tell.", 50, 4, 0)
        reply = clf.canonical_reply(self._answers(user))
        return Generation(reply.removeprefix("1:"), 50, 12, 0)

    async def continuation_logprobs(self, messages, continuation, candidates=()):
        self.calls["continuation"] += 1
        answers = iter(self._answers(messages[-1]["content"]))
        tokens = re.findall(r"\d+|:| Yes| No|\n", continuation)
        assert "".join(tokens) == continuation
        cands = []
        for t in tokens:
            if t.strip() in ("Yes", "No"):
                yes = next(answers)
                lp = {c: -9.0 for c in candidates}
                lp[" Yes"], lp[" No"] = (-0.1, -2.5) if yes else (-2.5, -0.1)
                cands.append(lp)
            else:
                cands.append({c: -9.0 for c in candidates})
        return TextLogprobs(tokens, [-0.1] * len(tokens), cands, 60, 50)

    def close(self) -> None:
        pass


def _cat_latent(n_active: int = 16, n_inactive: int = 16) -> LatentExamples:
    """Contexts of 8 tokens; the latent fires on 'cat' (id 2) only."""
    rng = np.random.default_rng(1)
    n_ctx, ctx = 160, 8
    ids = rng.choice([1, 3, 4, 5, 6, 7, 9, 10], size=n_ctx * ctx)
    cat_ctx = rng.choice(n_ctx, size=60, replace=False)
    pos = cat_ctx * ctx + rng.integers(1, ctx, size=60)
    ids[pos] = CAT
    tok = np.sort(pos).astype(np.uint32)
    val = (1 + rng.random(60)).astype(np.float16)
    cfg = ExamplesConfig(
        window=6, n_quantiles=2, n_explain=8, n_score_active=n_active, n_score_inactive=n_inactive
    )
    return build_examples(tok, val, ids, ctx, cfg, latent=0)


def _ctx(client, examples=None, **cfg) -> ScoreContext:
    return ScoreContext(
        latent=0,
        client=client,
        examples=examples or _cat_latent(),
        render=RENDER,
        cfg=ScorerConfig(**cfg),
        highlight_threshold=0.3,
        rng=np.random.default_rng(0),
    )


# --------------------------------------------------------------------------- registry
def test_registry_names_every_scorer_and_refuses_unknown_ones() -> None:
    assert {"detection", "fuzzing", "fuzzing_active", "intruder", "surprisal"} <= set(
        scorer_names()
    )
    assert get_scorer("detection") is clf.score_detection
    with pytest.raises(ValueError, match=r"unknown scorer\(s\) \['detect'\].*'detection'"):
        asyncio.run(run_scorers(("detect",), _ctx(Oracle()), "cat"))
    with pytest.raises(ValueError, match="repeat"):
        asyncio.run(run_scorers(("detection", "detection"), _ctx(Oracle()), "cat"))
    with pytest.raises(ValueError, match="unknown scorer 'nope'"):
        get_scorer("nope")


def test_registered_module_that_cannot_load_says_what_to_do() -> None:
    register_scorer(ScorerSpec("broken", "interp.score.no_such_module:score_x", "auroc"))
    try:
        with pytest.raises(ImportError, match="scorer 'broken'.*drop it from scorer.names"):
            get_scorer("broken")
    finally:
        unregister_scorer("broken")
    assert "broken" not in scorer_names()


def test_config_validates_scorer_settings() -> None:
    with pytest.raises(ValueError, match="examples_per_prompt"):
        ScorerConfig(examples_per_prompt=0)
    with pytest.raises(ValueError, match=r"scorer.intruder_examples=9 must be in 1\.\.8"):
        ScorerConfig(intruder_examples=9)
    with pytest.raises(ValueError, match=r"scorer.intervention_prompts=0 must be in 1\.\.256"):
        ScorerConfig(intervention_prompts=0)
    with pytest.raises(ValueError, match="repeats"):
        ScorerConfig(names=("detection", "detection"))


# --------------------------------------------------------------------------- classifiers
NAMES = ("detection", "fuzzing", "fuzzing_active")


@pytest.mark.parametrize(
    "per_prompt, read",
    [(1, "forced"), (5, "generate_logprobs"), (5, "generate"), (5, "forced")],
    ids=["single", "list-logprobs", "list-hard", "list-forced"],
)
def test_classifiers_separate_with_the_true_explanation(per_prompt: int, read: str) -> None:
    client = Oracle()
    ctx = _ctx(client, examples_per_prompt=per_prompt, batch_read=read)
    good = asyncio.run(run_scorers(NAMES, ctx, "the word cat"))
    bad = asyncio.run(run_scorers(NAMES, _ctx(Oracle(), examples_per_prompt=per_prompt), "dogs"))
    for name in NAMES:
        m = good[name].metrics()
        assert m["n_failed"] == 0 and m["failures"] == []
        assert m["balanced_accuracy"] == 1.0 and m["auroc"] == 1.0, name
        assert bad[name].metrics()["balanced_accuracy"] == 0.5
    d = good["detection"].metrics()
    assert (d["n_active"], d["n_inactive"]) == (16, 16)
    n_prompts = 2 * math.ceil(32 / 5) + math.ceil(good["fuzzing_active"].labels.size / 5)
    if per_prompt == 1:
        assert client.calls["generate"] == client.calls["continuation"] == 0
    else:
        assert client.calls["generate"] == (0 if read == "forced" else n_prompts)
        assert client.calls["continuation"] == (0 if read == "generate" else n_prompts)
    if read == "generate":
        assert set(np.unique(good["detection"].probs)) <= {0.0, 1.0}


def test_single_prompts_share_their_prefix_and_end_with_the_example() -> None:
    client = Oracle()
    asyncio.run(run_scorers(("fuzzing",), _ctx(client), "cats"))
    prefix = client.prompts[0].split("\n\n")[0] + "\n\n"
    assert all(p.startswith(prefix) for p in client.prompts)
    negatives = client.prompts[16:]
    assert all(p.count("<<") == 1 for p in negatives)  # positives mark one token each


def test_batched_parse_failure_is_recorded_with_raw_text() -> None:
    client = Oracle(garbage_on=2)
    out = asyncio.run(run_scorers(("detection",), _ctx(client, examples_per_prompt=5), "cat"))
    m = out["detection"].metrics()
    assert m["n_failed"] == 5 and m["n"] == 27  # one prompt of 5 lost, the rest scored
    (failure,) = m["failures"]
    assert failure["raw"] == "1:I cannot tell." and "numbered 1..5" in failure["reason"]
    assert np.isnan(out["detection"].probs[failure["examples"]]).all()
    assert m["balanced_accuracy"] == 1.0


@pytest.mark.parametrize(
    "reply, n, ok",
    [
        ("1: Yes\n2: no\n3: YES", 3, [True, False, True]),
        ("1. Yes\n\n2) No\nThat is all.", 2, [True, False]),
        ("1: Yes\n3: No", 3, None),  # a number missing
        ("1: Yes\n2: No\n2: Yes", 2, None),  # repeated
        ("2: Yes\n1: No", 2, None),  # out of order
        ("1: Yes\n2: No\n3: No", 2, [True, False]),  # answers past n: dropped
        ("1: Yes\n1: Yes\n1: Yes", 3, None),  # every line numbered 1
        ("1: Maybe\n2: No", 2, None),
        ("", 1, None),
    ],
)
def test_parse_answers_is_strict(reply: str, n: int, ok: list[bool] | None) -> None:
    if ok is None:
        with pytest.raises(ValueError, match="expected answers"):
            clf.parse_answers(reply, n)
    else:
        assert clf.parse_answers(reply, n) == ok


def test_answer_positions_and_yes_probability_spellings() -> None:
    toks = ["1", ":", " Yes", "\n", "2", ":", " No"]
    assert clf.answer_positions(toks, 2) == [2, 6]
    with pytest.raises(ValueError, match="expected 3"):
        clf.answer_positions(toks, 3)
    both = {"Yes": math.log(0.2), " Yes": math.log(0.2), "No": math.log(0.1), " No": -math.inf}
    assert clf.yes_probability(both) == pytest.approx(0.8)
    assert math.isnan(clf.yes_probability({"Yes": -math.inf, "No": -math.inf}))


# --------------------------------------------------------------------------- fuzzing_active
def test_wrong_mask_has_the_real_count_and_never_overlaps() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(4, 30))
        real = rng.random(n) < 0.3
        visible = rng.random(n) < 0.8
        wrong = clf.wrong_mask(real, visible, rng)
        assert not (wrong & real).any() and not (wrong & ~visible).any()
        assert wrong.sum() == min(real.sum(), (visible & ~real).sum())


def test_fuzzing_active_negatives_are_the_activating_examples_marked_wrong() -> None:
    acts = np.array([0, 0.5, 2.0, 0, 1.5, 0.1, 0, 0, 0, 0], dtype=np.float32)  # 3 real marks
    ex = [Example(np.array([1, 2, 2, 3, 2, 4, 5, 6, 7, 9]), acts, 0, 0)] * 20
    triples = clf.active_negatives(ex, 0.2, RENDER, np.random.default_rng(0))
    assert len(triples) == 20
    for e, real, wrong in triples:
        assert real.tolist() == highlight_mask(e.acts, 0.2).tolist() and real.sum() == 3
        assert wrong.sum() == 3 and not (wrong & real).any()
    assert len({tuple(w) for _, _, w in triples}) > 1  # drawn, not fixed
    silent = Example(np.array([1, 3]), np.zeros(2, np.float32), 0, 1)
    assert clf.active_negatives([silent], 0.3, RENDER, np.random.default_rng(0)) == []


# --------------------------------------------------------------------------- intruder
def test_intruder_labels_and_answer_mapping() -> None:
    assert choice_labels(5) == ["1", "2", "3", "4", "5"]
    with pytest.raises(ValueError, match="2..9"):
        choice_labels(10)
    p = choice_probs(ChoiceLogprobs({"1": -math.inf, "2": 0.0, "3": 0.0}, 5, 0), ["1", "2", "3"])
    assert p.tolist() == [0.0, 0.5, 0.5]
    assert np.isnan(choice_probs(ChoiceLogprobs({}, 5, 0), ["1", "2"])).all()


def test_intruder_rounds_put_one_outsider_among_one_quantile() -> None:
    ctx = _ctx(Oracle(), intruder_examples=3, intruder_prompts=4)
    rounds, skipped = build_rounds(ctx)
    assert len(rounds) == 4 and not skipped
    for r in rounds:
        assert len(r.examples) == 4
        assert r.examples[r.intruder].quantile == -1
        assert {e.quantile for i, e in enumerate(r.examples) if i != r.intruder} == {r.quantile}
        assert r.masks[r.intruder].sum() >= 1  # the outsider is marked too
    assert {r.quantile for r in rounds} == {0, 1}  # quantiles in turn
    assert len({r.intruder for r in rounds}) > 1


def test_intruder_scores_the_oracle_and_a_fixed_guesser() -> None:
    out = asyncio.run(run_scorers(("intruder",), _ctx(Oracle()), "unused"))["intruder"]
    m = out.metrics()
    assert m["accuracy"] == 1.0 and m["n"] == 4  # 2 quantiles x 8 held-out / 4 per prompt
    assert m["mean_p_correct"] == pytest.approx(1 / (1 + 4 * math.exp(-3)))
    assert m["chance"] == 0.2 and m["accuracy_ci"][0] == 1.0

    class AlwaysFirst(Oracle):
        async def next_token_logprobs(self, prompts, candidates):
            return [ChoiceLogprobs({"1": 0.0}, 10, 0) for _ in prompts]

    guess = asyncio.run(run_scorers(("intruder",), _ctx(AlwaysFirst()), "x"))["intruder"]
    assert guess.metrics()["accuracy"] == pytest.approx(np.mean(guess.intruder_P == 0))


def test_intruder_with_too_few_examples_says_so() -> None:
    ctx = _ctx(Oracle(), examples=_cat_latent(n_active=4, n_inactive=1), intruder_examples=2)
    out = asyncio.run(run_scorers(("intruder",), ctx, "x"))["intruder"]
    m = out.metrics()
    assert m["n"] == 1 and m["skipped"]  # one outsider -> one prompt
    assert "1 of 8 prompts" in m["skipped"][-1]


def test_intruder_from_another_quantile_keeps_its_real_marks() -> None:
    ctx = _ctx(Oracle(), intruder_examples=3, intruder_prompts=4, intruder_source="other_quantile")
    rounds, _ = build_rounds(ctx)
    assert rounds
    for r in rounds:
        odd = r.examples[r.intruder]
        assert odd.quantile >= 0 and odd.quantile != r.quantile
        assert r.masks[r.intruder].tolist() == highlight_mask(odd.acts, 0.3).tolist()
