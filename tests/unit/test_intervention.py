"""Intervention scorer: steering hook, KL calibration, clean/steered generation, judging.

The subject is the tiny random Llama with a random TopK dictionary saved and loaded the
way a run does (``load_subject``); the judge is a scripted client that knows which
continuation was steered. A random model's next-token distribution is nearly uniform,
so KL saturates near 0.1 nats there: targets below that are used. The slow test steers
SmolLM2 along a real direction and asks the real offline scorer LLM.
"""

from __future__ import annotations

import asyncio
import math
import re

import numpy as np
import pytest
import torch

from interp.config import RunConfig, ScorerConfig, load_run_config
from interp.explain.prompts import TokenRenderer
from interp.latents.examples import Example, LatentExamples
from interp.llm.base import ChoiceLogprobs
from interp.models.steer import LastToken, SteerableLM, calibrate_alpha
from interp.runs import RunPaths
from interp.score import get_scorer
from interp.score.context import ScoreContext, ScoreResources
from interp.score.intervention import (
    LABELS,
    YES_NO,
    InterventionOutput,
    Steered,
    Subject,
    choose_prompts,
    each_messages,
    pair_messages,
)
from interp.stages.interpret import build_resources

pytestmark = pytest.mark.unit

KL = 0.05  # reachable on the random model (saturates near 0.1)


def run_config(out_dir, **top) -> RunConfig:
    return load_run_config(
        {
            "name": "steer",
            "out_dir": str(out_dir),
            "layer": 1,
            "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
            "data": {"ctx_len": 32, "max_tokens": 8192},
            "train": {"num_tokens": 2048},
            "sae": {"expansion_factor": 2},
            "collect": {"num_tokens": 256, "slice_tokens": 128},
            **top,
        }
    )


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads; on a loaded 2-core machine two
    threads made each forward 10-20x slower (measured 0.09 s vs 0.65-1.9 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def subject(tmp_path_factory, one_thread) -> Subject:
    from interp.sae import build_sae, save_sae

    cfg = run_config(tmp_path_factory.mktemp("run"))
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    save_sae(build_sae(cfg.sae, 256, generator=torch.Generator().manual_seed(0)), paths.sae_dir())
    subject = build_resources(cfg, paths).get("subject")  # the interpret stage's factory
    assert isinstance(subject, Subject) and subject.lm.hookpoint == "layers.1"
    assert subject.num_latents == 512 and subject.lm.bos_id == subject.tokenizer.bos_token_id
    return subject


def token_prompts(n: int, length: int = 10, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(100, 40000, (n, length)).tolist()


def examples(n: int = 4, length: int = 32) -> LatentExamples:
    rng = np.random.default_rng(1)
    inactive = [
        Example(rng.integers(100, 40000, length), np.zeros(length, np.float32), -1, c, "random")
        for c in range(n)
    ]
    return LatentExamples([], [], inactive, 0, "ok")


class Judge:
    """Scripted scorer LLM that knows the steered texts and prefers one side."""

    model_id = "judge"

    def __init__(self, steered: list[str], prefer: str = "steered", fail: bool = False):
        self.steered = {s.replace("\n", "\\n").strip() for s in steered}
        self.prefer, self.fail = prefer, fail
        self.prompts: list[str] = []

    def _likes(self, text: str) -> bool:
        return (text.strip() in self.steered) == (self.prefer == "steered")

    async def next_token_logprobs(self, prompts, candidates):
        out = []
        for p in prompts:
            user = p[-1]["content"]
            self.prompts.append(user)
            if candidates == LABELS:
                a, b = re.search(r"^A: \.\.\.(.*)\nB: \.\.\.(.*)$", user, re.M).groups()
                assert (a.strip() in self.steered) != (b.strip() in self.steered)
                first = self._likes(a)
            else:
                assert candidates == YES_NO
                first = self._likes(re.search(r"^Continuation: \.\.\.(.*)$", user, re.M)[1])
            lp = {candidates[0]: 0.0 if first else -5.0, candidates[1]: -5.0 if first else 0.0}
            out.append(ChoiceLogprobs({} if self.fail else lp, 10, 0))
        return out


def context(
    subject: Subject, client, ex: LatentExamples, latent: int = 3, **scorer
) -> ScoreContext:
    settings = {
        "intervention_kl": KL, "intervention_prompts": 4, "intervention_prompt_tokens": 12,
        "intervention_new_tokens": 6, "bootstrap_resamples": 0, **scorer,
    }  # fmt: skip
    cfg = ScorerConfig(names=("intervention",), **settings)
    return ScoreContext(
        latent=latent,
        client=client,
        examples=ex,
        render=TokenRenderer(subject.tokenizer),
        cfg=cfg,
        highlight_threshold=0.5,
        rng=np.random.default_rng(0),
        resources=ScoreResources({"subject": lambda: subject}),
    )


# --------------------------------------------------------------------------- calibration


def test_calibrate_alpha_hits_a_monotone_target() -> None:
    cal = calibrate_alpha(lambda a: 0.3 * a**2, 1.0, rel_tol=0.05)
    assert cal.reached and abs(cal.kl - 1.0) <= 0.05
    assert cal.alpha == pytest.approx(math.sqrt(1 / 0.3), rel=0.03)
    assert cal.steps == len(cal.trace) <= 16


def test_calibrate_alpha_returns_a_kl_within_tolerance_when_one_was_tried() -> None:
    # 0.551 is nearer 0.5 in log ratio than 0.452, but outside the 10 % tolerance
    cal = calibrate_alpha(lambda a: {0.5: 0.2, 2.0: 0.551, 1.0: 0.452}[a], 0.5)
    assert cal.reached and (cal.alpha, cal.kl) == (1.0, 0.452) and cal.steps == 3


def test_calibrate_alpha_reports_an_unreachable_target() -> None:
    cal = calibrate_alpha(lambda a: 0.1 * (1 - math.exp(-a)), 1.0, alpha_max=64)
    assert not cal.reached
    assert cal.alpha == 64 and cal.kl <= 0.1


def test_calibrate_alpha_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="target > 0"):
        calibrate_alpha(lambda a: a, 0.0)


# --------------------------------------------------------------------------- steering


def test_hook_is_removed_after_use_and_on_error(subject: Subject) -> None:
    lm, prompts = subject.lm, token_prompts(3)
    vector_D = 5.0 * subject.W_dec_MD[0]
    before = lm.next_token_logprobs(prompts)
    steered = lm.next_token_logprobs(prompts, vector_D)
    after = lm.next_token_logprobs(prompts)
    assert torch.equal(before, after)
    assert not torch.allclose(before, steered)
    with pytest.raises(RuntimeError, match="boom"), lm.steering(vector_D):
        raise RuntimeError("boom")
    assert torch.equal(lm.next_token_logprobs(prompts), before)
    assert not lm.module._forward_hooks and not lm.module._forward_pre_hooks


def test_steering_touches_only_the_last_prompt_position(subject: Subject) -> None:
    # the next-token distribution after prompt[:-1] is the same steered or not
    lm, prompts = subject.lm, token_prompts(2, 8)
    full = lm.next_token_logprobs(prompts, 5.0 * subject.W_dec_MD[1])
    ids_BT, mask_BT = lm.batch(prompts)
    seen = []
    with lm.steering(5.0 * subject.W_dec_MD[1]), torch.inference_mode():
        seen.append(lm.model(input_ids=ids_BT, attention_mask=mask_BT).logits)
    clean_logits = lm.model(input_ids=ids_BT, attention_mask=mask_BT).logits
    torch.testing.assert_close(seen[0][:, :-1], clean_logits[:, :-1])
    torch.testing.assert_close(torch.log_softmax(seen[0][:, -1], -1), full)


@pytest.mark.parametrize("lengths", [(10, 10, 10), (9, 9, 4), (9, 1)])
def test_last_token_reuses_the_prefix_and_matches_a_whole_forward(
    subject: Subject, lengths: tuple[int, ...]
) -> None:
    lm = SteerableLM(subject.lm.model, "layers.1", bos_id=None, pad_id=2)  # (9, 1): no prefix
    prompts = [token_prompts(1, n, seed=i)[0] for i, n in enumerate(lengths)]
    last = LastToken(lm, prompts)
    assert last.use_prefix == (min(lengths) >= 2)
    clean, norm = last.clean()
    ref_clean, ref_norm = lm.next_token_logprobs(prompts), _reference_norm(lm, prompts)
    torch.testing.assert_close(clean, ref_clean, rtol=1e-4, atol=1e-4)
    assert norm == pytest.approx(ref_norm, rel=1e-4)
    for scale in (3.0, 0.5, 3.0):  # repeated calls: the cache is cropped back each time
        vector_D = scale * subject.W_dec_MD[2]
        torch.testing.assert_close(
            last(vector_D), lm.next_token_logprobs(prompts, vector_D), rtol=1e-4, atol=1e-4
        )


def _reference_norm(lm: SteerableLM, prompts: list[list[int]]) -> float:
    ids_BT, mask_BT = lm.batch(prompts)
    seen: list[torch.Tensor] = []
    with lm._capturing(seen), torch.inference_mode():
        lm._forward(ids_BT, mask_BT, use_cache=False)
    keep_BT = mask_BT.bool() & (mask_BT.cumsum(-1) > 1)
    return float(seen[0].norm(dim=-1)[keep_BT].mean())


def test_kl_grows_with_alpha(subject: Subject) -> None:
    lm, prompts = subject.lm, token_prompts(4)
    clean, norm = lm.clean_pass(prompts)
    unit_D = subject.W_dec_MD[5] / subject.W_dec_MD[5].norm()
    kls = [lm.mean_kl(clean, prompts, a * norm * unit_D) for a in (0.0, 0.1, 0.3, 1.0, 3.0)]
    assert kls[0] == pytest.approx(0.0, abs=1e-6)
    assert all(b > a for a, b in zip(kls, kls[1:])), kls


def test_calibration_reaches_the_target_kl(subject: Subject) -> None:
    prompts = token_prompts(4)
    cal, vector_D = subject.lm.calibrate(prompts, subject.W_dec_MD[7], KL)
    assert cal.reached and abs(cal.kl - KL) <= 0.1 * KL, cal
    clean, _ = subject.lm.clean_pass(prompts)
    assert subject.lm.mean_kl(clean, prompts, vector_D) == pytest.approx(cal.kl, rel=1e-4)


def test_zero_vector_generates_the_clean_continuations(subject: Subject) -> None:
    lm, prompts = subject.lm, [*token_prompts(2, 9), *token_prompts(1, 5, seed=3)]  # padded
    clean = lm.generate(prompts, 5)
    assert clean == lm.generate(prompts, 5, torch.zeros(256))
    assert all(len(c) == 5 for c in clean)
    # batching and left padding do not change a prompt's continuation
    assert lm.generate(prompts[2:], 5) == clean[2:]


def test_input_hookpoint_and_width_mismatch(subject: Subject) -> None:
    lm = SteerableLM(subject.lm.model, "layers.1.mlp:input", bos_id=1, pad_id=2)
    prompts = token_prompts(2)
    clean = lm.next_token_logprobs(prompts)
    assert not torch.allclose(clean, lm.next_token_logprobs(prompts, 5 * subject.W_dec_MD[0]))
    assert torch.equal(clean, lm.next_token_logprobs(prompts))
    with pytest.raises(ValueError, match="width 255 but hookpoint 'layers.1.mlp:input'"):
        Subject(lm, subject.tokenizer, torch.ones(4, 255))
    with pytest.raises(ValueError, match="unknown hookpoint 'layers.1.nope'"):
        SteerableLM(subject.lm.model, "layers.1.nope", bos_id=1, pad_id=2)


def test_steer_is_memoised_per_latent(subject: Subject) -> None:
    prompts = token_prompts(2)
    first = subject.steer(9, prompts, KL, 4)
    assert subject.steer(9, prompts, KL, 4) is first
    assert subject.steer(9, prompts, KL, 5) is not first
    assert first.calibration.reached and first.clean != first.steered
    with pytest.raises(ValueError, match="outside the dictionary"):
        subject.steer(subject.num_latents, prompts, KL, 4)


# --------------------------------------------------------------------------- scorer


def test_prompts_are_inactive_contexts_else_neutral(subject: Subject) -> None:
    cfg = ScorerConfig(intervention_prompts=3, intervention_prompt_tokens=7)
    prompts, source = choose_prompts(examples(5), cfg, subject)
    assert source == "inactive" and len(prompts) == 3 and all(len(p) == 7 for p in prompts)
    prompts, source = choose_prompts(LatentExamples([], [], [], 0, "ok"), cfg, subject)
    assert source == "neutral" and len(prompts) == 3


@pytest.mark.parametrize("mode", ["each", "pair"])
@pytest.mark.parametrize("prefer, expected", [("steered", 1.0), ("clean", 0.0)])
def test_judge_that_prefers_one_side_scores_one_or_zero(
    subject: Subject, mode: str, prefer: str, expected: float
) -> None:
    ex = examples()
    ctx = context(subject, None, ex, intervention_judge=mode)
    prompts, _ = choose_prompts(ex, ctx.cfg, subject)
    steered = subject.steer(ctx.latent, prompts, KL, ctx.cfg.intervention_new_tokens)
    assert all(c != s for c, s in zip(steered.clean, steered.steered)), steered
    judge = Judge(steered.steered, prefer)
    ctx.client = judge
    m = asyncio.run(get_scorer("intervention")(ctx, "the word cat")).metrics()
    assert m["score"] == pytest.approx(expected, abs=1e-2)
    assert m["accuracy"] == expected and m["judge"] == mode
    assert m.get("text_auroc", expected) == expected
    assert (m["n"], m["n_failed"], m["n_identical"]) == (4, 0, 0)
    assert m["kl_reached"] and abs(m["kl"] - KL) <= 0.1 * KL and m["alpha"] > 0
    assert m["prompt_source"] == "inactive" and len(m["examples"]) == 2
    # two calls per pair, the explanation first in every prompt (a shared prefix)
    assert len(judge.prompts) == 8
    assert all(p.startswith("Feature: the word cat\n") for p in judge.prompts)


def test_failed_and_identical_pairs_are_counted(subject: Subject) -> None:
    ctx = context(subject, None, examples())
    prompts, _ = choose_prompts(ctx.examples, ctx.cfg, subject)
    steered = subject.steer(ctx.latent, prompts, KL, ctx.cfg.intervention_new_tokens)
    ctx.client = Judge(steered.steered, fail=True)
    m = asyncio.run(get_scorer("intervention")(ctx, "x")).metrics()
    assert (m["n"], m["n_failed"], m["score"], m["accuracy"]) == (0, 4, None, None)
    same = Steered(steered.calibration, 1.0, ["p", "q"], ["a", "b"], ["a", "c"])
    yes_P2 = np.array([[np.nan, np.nan], [0.8, 0.2]])
    p_P, identical_P = np.array([0.5, 0.9]), np.array([True, False])
    out = InterventionOutput("intervention", "each", p_P, yes_P2, identical_P, same, "inactive", 0)
    m = out.metrics()
    assert m["n_identical"] == 1 and m["accuracy"] == 0.75 and m["score"] == pytest.approx(0.7)
    assert m["text_auroc"] == 1.0 and m["mean_yes_clean"] == pytest.approx(0.2)


def test_judge_prompts_keep_texts_on_one_line() -> None:
    user = pair_messages("cats", "a\nb", "x\ny", "z")[-1]["content"]
    assert "A: ...x\\ny\nB: ...z" in user and "Text: a\\nb" in user
    user = each_messages("cats", "a\nb", "x\ny")[-1]["content"]
    assert "Start: a\\nb\nContinuation: ...x\\ny\n" in user


class _CSR:
    """Latent-major entries (what the interpret stage reads from a compacted shard)."""

    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.offsets = np.cumsum([0] + [len(t) for t, _ in parts])
        self.tok = np.concatenate([t for t, _ in parts]).astype(np.uint32)
        self.val = np.concatenate([v for _, v in parts]).astype(np.float16)


class ConstantClient:
    """Explains every latent alike and says Yes with P = 0.7 to every question."""

    model_id = "constant"

    async def generate(self, messages, *, max_new_tokens, temperature=0.0):
        from interp.llm.base import Generation

        return Generation("Explanation: repeated random word pieces", 100, 6, 0)

    async def next_token_logprobs(self, prompts, candidates):
        lp = {candidates[0]: math.log(0.7), candidates[1]: math.log(0.3)}
        return [ChoiceLogprobs(lp, 40, 0) for _ in prompts]

    def close(self) -> None:
        pass


def test_interpret_stage_scores_real_and_control_with_one_steering(subject: Subject) -> None:
    """The interpret stage's range loop with scorer.names=[intervention]: records carry
    the metrics for the explanation and its random-explanation control (the same
    steering), JSON-serialisable, and the summary averages the score."""
    import json

    from interp.interpret.pipeline import LatentRange, interpret_range
    from interp.interpret.summary import score_means
    from interp.stages.interpret import range_config

    ctx_len, n_ctx = 16, 40
    rng = np.random.default_rng(0)
    token_ids = rng.integers(100, 40000, n_ctx * ctx_len)
    parts = []
    for _ in range(2):
        pos = np.sort(rng.choice(n_ctx * ctx_len, 24, replace=False))
        parts.append((pos, np.ones(len(pos), np.float32)))
    cfg = load_run_config(
        {
            "data": {"ctx_len": ctx_len},
            "collect": {"num_tokens": n_ctx * ctx_len, "slice_tokens": n_ctx * ctx_len},
            "scorer": {
                "names": ["intervention"], "intervention_kl": KL, "intervention_prompts": 3,
                "intervention_prompt_tokens": 8, "intervention_new_tokens": 4,
                "bootstrap_resamples": 0,
            },
            "interpret": {"examples": {"window": 8, "n_explain": 4, "n_score_active": 4,
                                       "n_score_inactive": 4, "min_examples": 2}},
        }
    )  # fmt: skip
    records = asyncio.run(
        interpret_range(
            range_config(cfg), LatentRange(0, 0, 2), _CSR(parts), token_ids,
            TokenRenderer(subject.tokenizer),
            ConstantClient(), lambda: False, ScoreResources({"subject": lambda: subject}),
        )
    )  # fmt: skip
    assert [r.status for r in records] == ["ok", "ok"], records
    for r in records:
        real, control = r.scores["intervention"], r.control.scores["intervention"]
        assert real["n"] == 3 and real["kl_reached"] and real["prompt_source"] == "inactive"
        assert real["score"] == pytest.approx(0.5)  # the same P(Yes) for both texts
        assert control["examples"] == real["examples"] and control["alpha"] == real["alpha"]
        json.dumps(r.to_dict(), allow_nan=False)
    assert score_means(records)["intervention"]["score"]["n_real"] == 2


# --------------------------------------------------------------------------- real models


def _mean_residual(model, tok, layer: int, texts: list[str]) -> torch.Tensor:
    """[D] mean residual stream after ``layer`` over the texts' tokens (BOS left out)."""
    seen: list[torch.Tensor] = []
    hook = model.model.layers[layer].register_forward_hook(
        lambda _m, _i, o: seen.append((o[0] if isinstance(o, tuple) else o)[0, 1:])
    )
    with torch.inference_mode():
        for t in texts:
            ids = [tok.bos_token_id, *tok(t, add_special_tokens=False)["input_ids"]]
            model(input_ids=torch.tensor([ids]))
    hook.remove()
    return torch.cat(seen).mean(0)


@pytest.mark.slow
def test_steering_smollm2_toward_pets_is_recognised_by_the_real_judge() -> None:
    """SmolLM2 steered along a "cats" direction (mean residual after layer 6 on sentences
    about cats minus on neutral ones; a one-latent dictionary) at the default 0.5 nats
    writes about cats, dogs, pets; the offline scorer LLM (the default Qwen2.5-Coder-1.5B)
    scores a matching explanation clearly above unrelated ones, which reuse the memoised
    steering. Measured here: 0.57 vs 0.35 and 0.31 (68 s on the loaded 2-core VM)."""
    from model_skips import require_model

    from interp.config import LLMConfig
    from interp.llm.transformers_backend import TransformersClient
    from interp.models import load_causal_lm, load_tokenizer

    require_model("qwen2.5-coder-1.5b-instruct")
    model = load_causal_lm("smollm2-135m", "float32", "cpu")
    tok = load_tokenizer("smollm2-135m")
    cats = [
        "My cat sleeps on the sofa all day.",
        "Cats love to chase mice and play with yarn.",
        "The kitten purred and licked its paws.",
        "Our cats meow loudly when they are hungry.",
    ]
    neutral = [
        "The meeting starts at nine tomorrow.",
        "He bought a new car last week.",
        "The report was published in March.",
        "We walked along the river after lunch.",
    ]
    direction_D = _mean_residual(model, tok, 6, cats) - _mean_residual(model, tok, 6, neutral)
    lm = SteerableLM(model, "layers.6", bos_id=tok.bos_token_id, pad_id=tok.eos_token_id)
    subject = Subject(lm, tok, direction_D[None])
    texts = [
        "The history of the city",
        "My favourite recipe uses",
        "In the morning we went",
        "The computer program",
        "She opened the letter and",
        "Yesterday the team",
    ]
    inactive = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    ex = LatentExamples(
        [],
        [],
        [
            Example(np.array(p), np.zeros(len(p), np.float32), -1, c, "random")
            for c, p in enumerate(inactive)
        ],
        0,
        "ok",
    )
    client = TransformersClient(
        LLMConfig(model="qwen2.5-coder-1.5b-instruct", dtype="bfloat16", device="cpu")
    )
    ctx = context(
        subject,
        client,
        ex,
        latent=0,
        intervention_kl=0.5,
        intervention_prompts=6,
        intervention_new_tokens=12,
    )
    score = get_scorer("intervention")
    real = asyncio.run(score(ctx, "animals and pets, such as cats and dogs")).metrics()
    print(real)
    assert real["kl_reached"] and real["n_identical"] == 0 and real["n_failed"] == 0
    assert real["score"] > 0.5 and real["mean_yes_steered"] > real["mean_yes_clean"]
    for unrelated in ("dates and numbers in financial reports", "computer programming"):
        other = asyncio.run(score(ctx, unrelated)).metrics()
        print(other)
        assert other["examples"] == real["examples"]  # the same steering, computed once
        assert real["score"] > other["score"] + 0.1
