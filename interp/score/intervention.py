"""Intervention scorer: does the explanation predict what the model writes when the
latent is turned up?

An output-side test (delphi's "intervention scoring", Paulo et al. 2024 §3): an
explanation of what makes a latent fire is also a guess of what the latent *does*.

1. **Prompts.** Up to ``scorer.intervention_prompts`` of the latent's held-out
   non-activating contexts (random ones first, then hard negatives), each cut to its
   first ``scorer.intervention_prompt_tokens`` tokens: real corpus text where the latent
   is silent, so turning it up is a visible change. A latent without any falls back to
   a few neutral prefixes (``prompt_source`` says which).
2. **Steering.** The latent's decoder row, normalised, is added to the dictionary's
   output hookpoint (``cfg.target``: the residual stream for an SAE, the MLP output
   for a transcoder) at the last position of every forward pass, i.e. from the
   prompt's last token on (see :mod:`interp.models.steer`; strength ``alpha`` is in
   units of the hookpoint's typical norm).
3. **Calibration.** alpha is searched so that the mean KL(clean || steered) of the
   next-token distribution after the prompts equals ``scorer.intervention_kl`` (within
   10 %): every latent is pushed equally hard, measured where it matters, the model's
   output. The default 0.5 nats is delphi's (the paper sweeps 0.1, 0.33, 1, 3).
   Measured on SmolLM2 with a trained TopK SAE at layer 15 (8 random latents x 8
   prompts x 16 greedy tokens): at 0.5 and at 1.0 nats every steered continuation
   differed from the clean one (0 of 64 identical), but at 1.0 many turned repetitive
   or garbled ("that was a big. that was a big."), which a judge cannot read as a
   topic; at 0.5 they stayed fluent. alpha was 0.55-0.71 of the typical norm at 0.5
   nats (0.77-0.92 at 1.0), found in 4-7 forwards.
4. **Generation.** Greedy continuations of ``scorer.intervention_new_tokens`` tokens,
   clean and steered (deterministic: the same for an explanation and its controls, so
   they are computed once per latent and reused).
5. **Judging** (``scorer.intervention_judge``). Nothing is parsed: answers are read
   from next-token log-probabilities, and identical pairs (the steering changed
   nothing) get P = 1/2 without a call. Both modes cost 2 single-token calls per pair
   sharing a prefix (instructions + explanation).

   - ``each`` (default): P(Yes) that a continuation shows the explanation, asked for
     the steered and the clean text separately; P(steered chosen) =
     sigmoid(logit P_yes(steered) - logit P_yes(clean)) (a Bradley-Terry choice).
   - ``pair``: both continuations labelled A and B, "which shows the feature?", asked
     in both orders and averaged, which cancels a preference for a position.

   Measured with the offline judge (Qwen2.5-Coder-1.5B) on SmolLM2 steered toward
   " cats": in ``pair`` mode P(A) was ~0.62 whatever the texts and explanation (mean
   P(steered) 0.50 for "cats" and for unrelated explanations alike); ``each`` ranked
   the steered text higher in 3 of 4 pairs for "cats" and 1 of 4 for an unrelated
   explanation. ``pair`` is the design for strong judges (70B-class).

Metrics: ``score`` = mean P(steered chosen) over pairs (chance 0.5) with a bootstrap
interval, ``accuracy`` = share of pairs where the steered text wins (ties count one
half), ``n`` pairs judged, ``n_failed`` (no usable log-probs), ``n_identical``; with
``each`` also ``text_auroc`` of P(Yes) for steered vs clean texts, the mean P(Yes) of
each; the steering: ``alpha``, ``steer_norm`` (the added vector's L2 norm), ``kl``,
``kl_target``, ``kl_reached``, ``calibration_steps``; ``examples`` keeps two short
(prompt, clean, steered) triples for dashboards. The random-explanation control is
the same computation with another latent's explanation (the steering is reused).

Legend: P pairs (prompts). The subject model and its steering: :mod:`interp.score.steering`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from interp.llm.base import ChoiceLogprobs, Message
from interp.score.context import ScoreContext
from interp.score.intervention_spec import InterventionConfig
from interp.score.metrics import aggregate, auroc
from interp.score.steering import Steered, Subject, load_subject

if TYPE_CHECKING:
    from interp.latents.examples import Example, LatentExamples

__all__ = [
    "InterventionConfig",
    "InterventionOutput",
    "Steered",
    "Subject",
    "choose_prompts",
    "each_messages",
    "judge",
    "load_subject",
    "pair_messages",
    "score_intervention",
]

LABELS = ["A", "B"]  # judge="pair"
YES_NO = ["Yes", "No"]  # judge="each"
PAIR_SYSTEM = (
    "A language model continued the same text twice: once as usual, and once with one of "
    "its internal features turned up. You get a description of that feature and the two "
    "continuations, A and B. Answer with the letter of the continuation that shows the "
    "feature, nothing else."
)
PAIR_QUESTION = "Which continuation shows the feature? Answer A or B."
EACH_SYSTEM = (
    "A language model, with one of its internal features possibly turned up, continued a "
    "text. You get a description of the feature, the start of the text and the "
    "continuation. Answer Yes if the continuation shows the feature, No otherwise."
)
EACH_QUESTION = "Does the continuation show the feature? Answer Yes or No."
NEUTRAL_PROMPTS = (
    "The",
    "In the beginning",
    "Here is what happened next:",
    "I think that",
    "The most important thing is",
    "Once upon a time,",
    "It was a",
    "We found that",
)
EXAMPLES_KEPT = 2  # (prompt, clean, steered) triples kept on the record
TEXT_CHARS = 120  # per kept text


# --------------------------------------------------------------------------- prompts


def choose_prompts(
    examples: LatentExamples, cfg: InterventionConfig, subject: Subject
) -> tuple[list[list[int]], str]:
    """Token-id prompts and where they came from ("inactive" or "neutral").

    Held-out non-activating contexts, random ones first (hard negatives after), one per
    context, cut to ``prompt_tokens``; neutral prefixes when there are none.
    """
    pool: list[Example] = sorted(examples.score_inactive, key=lambda e: e.kind != "random")
    prompts, seen = [], set()
    for e in pool:
        ids = [int(t) for t in e.tokens[: cfg.prompt_tokens]]
        if e.context in seen or not ids:
            continue
        seen.add(e.context)
        prompts.append(ids)
        if len(prompts) == cfg.prompts:
            return prompts, "inactive"
    if prompts:
        return prompts, "inactive"
    neutral = [subject.tokenize(t) for t in NEUTRAL_PROMPTS[: cfg.prompts]]
    return [p for p in neutral if p], "neutral"


# --------------------------------------------------------------------------- judging


def _one_line(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\n", "\\n").strip()


def pair_messages(explanation: str, prompt: str, first: str, second: str) -> list[Message]:
    """judge="pair": A or B? Instructions and explanation first (a prefix shared by all)."""
    user = (
        f"Feature: {explanation.strip()}\n\n"
        f"Text: {_one_line(prompt)}\n\n"
        f"A: ...{_one_line(first)}\n"
        f"B: ...{_one_line(second)}\n\n{PAIR_QUESTION}"
    )
    return [{"role": "system", "content": PAIR_SYSTEM}, {"role": "user", "content": user}]


def each_messages(explanation: str, prompt: str, continuation: str) -> list[Message]:
    """judge="each": does this one continuation show the feature? Yes or No."""
    user = (
        f"Feature: {explanation.strip()}\n\n"
        f"Start: {_one_line(prompt)}\n"
        f"Continuation: ...{_one_line(continuation)}\n\n{EACH_QUESTION}"
    )
    return [{"role": "system", "content": EACH_SYSTEM}, {"role": "user", "content": user}]


def first_of_two(choice: ChoiceLogprobs, labels: list[str]) -> float:
    """P(labels[0]) renormalised over the two labels; NaN when the backend knows neither."""
    lp = np.array([choice.logprobs.get(c, -math.inf) for c in labels], dtype=np.float64)
    lp = np.where(np.isnan(lp), -math.inf, lp)
    if np.all(np.isinf(lp)):
        return math.nan
    p = np.exp(lp - lp.max())
    return float(p[0] / p.sum())


def _mean_of_finite(*x: float) -> float:
    good = [v for v in x if not math.isnan(v)]
    return float(np.mean(good)) if good else math.nan


async def judge_pair(
    ctx: ScoreContext, explanation: str, pairs: list[tuple[str, str, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """judge="pair": p_P = P(steered chosen), the mean of both orders (either alone if the
    other failed; NaN if both did). Also returns yes_P2 = NaN (no per-text answer)."""
    prompts = []
    for prompt, clean, steer in pairs:
        prompts.append(pair_messages(explanation, prompt, steer, clean))  # steered = A
        prompts.append(pair_messages(explanation, prompt, clean, steer))  # steered = B
    choices = await ctx.client.next_token_logprobs(prompts, LABELS) if prompts else []
    p_P = np.array(
        [
            _mean_of_finite(
                first_of_two(choices[2 * k], LABELS), 1 - first_of_two(choices[2 * k + 1], LABELS)
            )
            for k in range(len(pairs))
        ]
    )
    return p_P, np.full((len(pairs), 2), math.nan)


async def judge_each(
    ctx: ScoreContext, explanation: str, pairs: list[tuple[str, str, str]]
) -> tuple[np.ndarray, np.ndarray]:
    """judge="each": yes_P2 = P(Yes) for [steered, clean] of every pair, asked one text at
    a time (no position to prefer); p_P = P(steered chosen) under a Bradley-Terry choice
    between the two, sigmoid(logit P_yes(steered) - logit P_yes(clean))."""
    prompts = [
        each_messages(explanation, prompt, text)
        for prompt, clean, steer in pairs
        for text in (steer, clean)
    ]
    choices = await ctx.client.next_token_logprobs(prompts, YES_NO) if prompts else []
    yes_P2 = np.array([first_of_two(c, YES_NO) for c in choices]).reshape(len(pairs), 2)
    eps = 1e-6
    logit_P2 = np.log(np.clip(yes_P2, eps, 1)) - np.log(np.clip(1 - yes_P2, eps, 1))
    p_P = 1 / (1 + np.exp(logit_P2[:, 1] - logit_P2[:, 0]))
    return p_P, yes_P2


async def judge(
    ctx: ScoreContext, explanation: str, steered: Steered
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_P, yes_P2, identical_P) over the steered result's pairs; identical pairs (the
    steering changed nothing) get p = 1/2 without a call."""
    pairs = list(zip(steered.prompts, steered.clean, steered.steered))
    identical_P = np.array([c.strip() == s.strip() for _, c, s in pairs], dtype=bool)
    asked = [pairs[i] for i in np.flatnonzero(~identical_P)]
    run = judge_each if ctx.cfg.part(InterventionConfig).judge == "each" else judge_pair
    p_asked, yes_asked = await run(ctx, explanation, asked)
    p_P, yes_P2 = np.full(len(pairs), 0.5), np.full((len(pairs), 2), math.nan)
    p_P[~identical_P], yes_P2[~identical_P] = p_asked, yes_asked
    return p_P, yes_P2, identical_P


# --------------------------------------------------------------------------- scorer


@dataclass(frozen=True)
class InterventionOutput:
    """One latent's intervention result: per-pair judgements and the steering."""

    name: str
    judge: str  # "each" | "pair"
    p_P: np.ndarray  # [P] P(steered continuation chosen); NaN = the judge gave nothing
    yes_P2: np.ndarray  # [P, 2] judge="each": P(Yes) of [steered, clean]; NaN otherwise
    identical_P: np.ndarray  # [P] the clean and steered continuations were the same text
    steered: Steered | None
    prompt_source: str
    n_resamples: int = 1000
    confidence: float = 0.95
    notes: list[str] = field(default_factory=list)  # e.g. the KL target not reached

    def metrics(self) -> dict[str, Any]:
        ok = ~np.isnan(self.p_P)
        p = self.p_P[ok]
        agg = aggregate(p.tolist(), n_resamples=self.n_resamples, confidence=self.confidence)
        wins = (p > 0.5) + 0.5 * (p == 0.5)
        out: dict[str, Any] = {
            "score": agg["mean"],
            "score_ci": [agg["ci_low"], agg["ci_high"]],
            "accuracy": float(wins.mean()) if len(p) else None,
            "n": int(ok.sum()),
            "n_failed": int((~ok).sum()),
            "n_identical": int(self.identical_P.sum()),
            "judge": self.judge,
            "prompt_source": self.prompt_source,
            "notes": self.notes,
        }
        if self.judge == "each":
            out.update(self._each_metrics())
        if self.steered is not None:
            out.update(self._steering_metrics(self.steered))
        return out

    def _each_metrics(self) -> dict[str, Any]:
        """AUROC of P(Yes) for steered vs clean texts (judged pairs, both answered)."""
        asked = ~self.identical_P & ~np.isnan(self.yes_P2).any(axis=1)
        yes_steered, yes_clean = self.yes_P2[asked, 0], self.yes_P2[asked, 1]
        labels = np.r_[np.ones(len(yes_steered), bool), np.zeros(len(yes_clean), bool)]
        return {
            "text_auroc": auroc(labels, np.r_[yes_steered, yes_clean]),
            "mean_yes_steered": float(yes_steered.mean()) if asked.any() else None,
            "mean_yes_clean": float(yes_clean.mean()) if asked.any() else None,
        }

    @staticmethod
    def _steering_metrics(steered: Steered) -> dict[str, Any]:
        cal = steered.calibration
        kept = list(zip(steered.prompts, steered.clean, steered.steered))[:EXAMPLES_KEPT]
        return {
            "alpha": cal.alpha,
            "steer_norm": steered.steer_norm,
            "kl": cal.kl,
            "kl_target": cal.target,
            "kl_reached": cal.reached,
            "calibration_steps": cal.steps,
            "examples": [
                {"prompt": _clip(pr[-TEXT_CHARS:]), "clean": _clip(c), "steered": _clip(s)}
                for pr, c, s in kept
            ],
        }


def _clip(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


async def score_intervention(ctx: ScoreContext, explanation: str) -> InterventionOutput:
    """P(the judge picks the steered continuation as the one the explanation describes)."""
    subject: Subject = ctx.resources.get("subject")
    cfg = ctx.cfg.part(InterventionConfig)
    prompts, source = choose_prompts(ctx.examples, cfg, subject)
    kw = {"n_resamples": ctx.cfg.bootstrap_resamples, "confidence": ctx.cfg.confidence}
    if not prompts:
        return InterventionOutput(
            "intervention", cfg.judge, np.zeros(0), np.zeros((0, 2)),
            np.zeros(0, bool), None, source, **kw,
            notes=["no prompt: no non-activating context and no neutral prefix tokenised"],
        )  # fmt: skip
    # off the event loop: the LLM scorers of this latent keep running meanwhile
    steered = await asyncio.to_thread(
        subject.steer,
        ctx.latent,
        prompts,
        cfg.kl,
        cfg.new_tokens,
    )
    notes = []
    if not steered.calibration.reached:
        notes.append(
            f"KL target {cfg.kl} not reached: got {steered.calibration.kl:.3g} "
            f"at alpha {steered.calibration.alpha:.3g}"
        )
    p_P, yes_P2, identical_P = await judge(ctx, explanation, steered)
    return InterventionOutput(
        "intervention", cfg.judge, p_P, yes_P2, identical_P, steered, source,
        **kw, notes=notes,
    )  # fmt: skip
