"""Intruder: which excerpt does not belong? (scores the latent, not its explanation)

Each prompt shows ``scorer.intruder_examples`` held-out activating examples of ONE
quantile, with their real highlights, and one intruder at a random position: a
non-activating example with as many random tokens marked as the others carry on
average (``intruder_source="inactive"``), or an activating example of another quantile
(``"other_quantile"``, delphi's "internal" mode). The model names the odd one out; its
answer is read from the next-token log-probabilities over the choice numbers, so
nothing is parsed: accuracy = argmax is the intruder, and P(correct) = the intruder's
probability renormalised over the choices.

Following "Evaluating SAE interpretability without explanations" (Paulo & Belrose
2025); the explanation is not shown, the scorer only takes it for the common signature.
Legend: ``k`` activating examples per prompt, ``P`` prompts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import softmax

from interp.explain.prompts import highlight_mask, render_example
from interp.latents.examples import Example
from interp.llm.base import ChoiceLogprobs, Message
from interp.score.classifier import random_mask, visible_positions
from interp.score.context import ScoreContext
from interp.score.intruder_spec import IntruderConfig
from interp.score.metrics import aggregate

SYSTEM = (
    "Below are numbered text excerpts with some tokens marked <<like this>>. In all but one "
    "excerpt the marked tokens share a common feature. Answer with the number of the one "
    "excerpt that does not fit."
)
QUESTION = "Which excerpt does not fit? Answer with its number only."


@dataclass(frozen=True)
class IntruderOutput:
    """Per-prompt outcome: where the intruder was and how the model answered."""

    name: str
    answer_PC: np.ndarray  # [P, k+1] renormalised P(choice); NaN rows = no usable answer
    intruder_P: np.ndarray  # [P] index of the intruder in each prompt
    quantile_P: np.ndarray  # [P] quantile of the prompt's activating examples
    n_resamples: int = 1000
    confidence: float = 0.95
    skipped: list[str] = field(default_factory=list)  # why fewer prompts than asked

    def metrics(self) -> dict[str, Any]:
        ok = ~np.isnan(self.answer_PC).any(axis=1)
        correct = self.answer_PC[ok].argmax(axis=1) == self.intruder_P[ok]
        p_correct = self.answer_PC[ok, :][np.arange(ok.sum()), self.intruder_P[ok]]
        kw = {"n_resamples": self.n_resamples, "confidence": self.confidence}
        acc = aggregate(correct.astype(float).tolist(), **kw)
        per_q = []
        for q in sorted(set(self.quantile_P[ok].tolist())):
            here = self.quantile_P[ok] == q
            per_q.append(
                {
                    "quantile": int(q),
                    "n": int(here.sum()),
                    "accuracy": float(correct[here].mean()),
                    "mean_p_correct": float(p_correct[here].mean()),
                }
            )
        return {
            "accuracy": acc["mean"],
            "accuracy_ci": [acc["ci_low"], acc["ci_high"]],
            "mean_p_correct": float(p_correct.mean()) if ok.any() else None,
            "chance": 1.0 / self.answer_PC.shape[1] if self.answer_PC.size else None,
            "n": int(ok.sum()),
            "n_failed": int((~ok).sum()),
            "per_quantile": per_q,
            "skipped": self.skipped,
        }


def choice_labels(n: int) -> list[str]:
    """'1'..'n': single tokens in every tokenizer the project uses (n <= 9)."""
    if not 2 <= n <= 9:
        raise ValueError(f"an intruder prompt needs 2..9 excerpts, got {n}")
    return [str(i) for i in range(1, n + 1)]


def choice_probs(choice: ChoiceLogprobs, labels: list[str]) -> np.ndarray:
    """[C] P(each label) renormalised over the labels; NaN when the backend knows none."""
    lp = np.array([choice.logprobs.get(c, -math.inf) for c in labels], dtype=np.float64)
    if np.all(lp == -math.inf):
        return np.full(len(labels), np.nan)
    return softmax(lp)


def intruder_messages(texts: list[str]) -> list[Message]:
    lines = "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"{lines}\n\n{QUESTION}"},
    ]


@dataclass(frozen=True)
class Round:
    """One intruder prompt before rendering."""

    examples: list[Example]  # k + 1, the intruder at ``intruder``
    masks: list[np.ndarray]
    intruder: int
    quantile: int


def build_rounds(ctx: ScoreContext) -> tuple[list[Round], list[str]]:
    """The prompts' examples: quantiles in turn, each example used at most once per role."""
    icfg = ctx.cfg.part(IntruderConfig)
    k, t, rng = icfg.examples, ctx.highlight_threshold, ctx.rng
    active = [e for e in ctx.examples.score_active if highlight_mask(e.acts, t).any()]
    by_q: dict[int, list[Example]] = {}
    for e in active:
        by_q.setdefault(e.quantile, []).append(e)
    pools = {q: list(rng.permutation(len(es))) for q, es in by_q.items()}
    if icfg.source == "inactive":
        outsiders = [
            ctx.examples.score_inactive[i]
            for i in rng.permutation(len(ctx.examples.score_inactive))
        ]
    else:
        outsiders = []
    mean_marks = (
        max(1, math.ceil(np.mean([highlight_mask(e.acts, t).sum() for e in active])))
        if active
        else 1
    )
    rounds, skipped = [], []
    quantiles = sorted(by_q)
    while len(rounds) < icfg.prompts and quantiles:
        for q in list(quantiles):
            if len(rounds) >= icfg.prompts:
                break
            if len(pools[q]) < k:
                quantiles.remove(q)
                continue
            chosen = [by_q[q][pools[q].pop()] for _ in range(k)]
            intruder = _pick_intruder(ctx, q, by_q, outsiders, rng)
            if intruder is None:
                skipped.append(f"no intruder left for quantile {q}")
                quantiles.remove(q)
                continue
            masks = [highlight_mask(e.acts, t) for e in chosen]
            if intruder.quantile < 0:
                imask = random_mask(
                    len(intruder.tokens), mean_marks, visible_positions(intruder, ctx.render), rng
                )
            else:
                imask = highlight_mask(intruder.acts, t)
            at = int(rng.integers(0, k + 1))
            chosen.insert(at, intruder)
            masks.insert(at, imask)
            rounds.append(Round(chosen, masks, at, q))
    if len(rounds) < icfg.prompts:
        skipped.append(
            f"{len(rounds)} of {icfg.prompts} prompts: too few held-out examples "
            f"(need {k} per quantile per prompt)"
        )
    return rounds, skipped


def _pick_intruder(
    ctx: ScoreContext,
    q: int,
    by_q: dict[int, list[Example]],
    outsiders: list[Example],
    rng: np.random.Generator,
) -> Example | None:
    if ctx.cfg.part(IntruderConfig).source == "inactive":
        return outsiders.pop() if outsiders else None
    others = [e for p, es in by_q.items() if p != q for e in es]
    return others[int(rng.integers(len(others)))] if others else None


async def score_intruder(ctx: ScoreContext, explanation: str) -> IntruderOutput:
    """Odd-one-out accuracy of the latent's held-out examples (``explanation`` unused)."""
    del explanation
    labels = choice_labels(ctx.cfg.part(IntruderConfig).examples + 1)
    rounds, skipped = build_rounds(ctx)
    prompts = [
        intruder_messages([render_example(e, ctx.render, m) for e, m in zip(r.examples, r.masks)])
        for r in rounds
    ]
    choices = await ctx.client.next_token_logprobs(prompts, labels) if prompts else []
    answers = np.array([choice_probs(c, labels) for c in choices]).reshape(len(rounds), len(labels))
    return IntruderOutput(
        "intruder",
        answers,
        np.array([r.intruder for r in rounds], dtype=np.int64),
        np.array([r.quantile for r in rounds], dtype=np.int64),
        ctx.cfg.bootstrap_resamples,
        ctx.cfg.confidence,
        skipped,
    )
