"""Detection and fuzzing: can an explanation tell activating examples from others?

Each example is its own prompt with a one-word answer, and the scorer reads
p = P(Yes) / (P(Yes) + P(No)) from the next-token log-probabilities: no list parsing
that can fail, and a probability per example for AUROC. The explanation and the
instructions come FIRST and the example LAST, so all of a latent's prompts share one
prefix that the backend computes once (delphi puts 5 examples after a few-shot block
and asks for a Python list; its detection prompt also reuses fuzzing's "correctly
labeled" wording).

* detection: plain text. Does the excerpt contain what the explanation describes?
  Positives are held-out activating examples, negatives non-activating ones.
* fuzzing: highlighted text. Are the marked tokens instances of it? Positives carry
  their real highlights; negatives are non-activating examples with as many random
  tokens marked as the positives have on average (delphi's default fuzzing).
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy.special import expit

from interp.explain.prompts import TokenRenderer, highlight_mask, render_example
from interp.latents.examples import Example, LatentExamples
from interp.llm.base import ChoiceLogprobs, LLMClient, Message
from interp.score.metrics import classification_metrics

ANSWERS = ["Yes", "No"]
ScorerName = Literal["detection", "fuzzing"]

# Wording chosen on Qwen2.5-Coder-1.5B over 6 synthetic latents x 32 examples: short,
# strict system prompts and the explanation inlined into the question gave the best
# balanced accuracy at p >= 0.5 for ~70-80 prompt tokens per example (few-shot turns raised
# AUROC a little but biased the model towards Yes and doubled the prompt tokens).
SYSTEM = "Answer Yes or No. Say Yes only if the text clearly contains what is asked for."
FUZZING_SYSTEM = (
    "Answer Yes or No. Some tokens are marked <<like this>>. Say Yes only if the marked "
    "tokens clearly are what is asked for."
)
DETECTION_QUESTION = "Does the following text contain {}?"
FUZZING_QUESTION = "Are the marked tokens {}?"


@dataclass(frozen=True)
class ScorerOutput:
    """Per-example outcome of one scorer on one latent."""

    name: str
    labels: np.ndarray  # [n] bool, True = activating example
    probs: np.ndarray  # [n] float P(activating) from the LLM; NaN = no usable answer
    quantiles: np.ndarray  # [n] int activation quantile, -1 = non-activating

    def metrics(self) -> dict[str, Any]:
        return classification_metrics(self.labels, self.probs, self.quantiles)


def as_clause(explanation: str) -> str:
    """'Words about death.' -> 'words about death', to read inside a question."""
    e = explanation.strip().rstrip(".")
    if len(e) > 1 and e[0].isupper() and not e[1].isupper():
        e = e[0].lower() + e[1:]
    return e


def classifier_messages(system: str, question: str, explanation: str, text: str) -> list[Message]:
    """Instructions and explanation first, the text last (a prefix shared by all examples)."""
    user = f"{question.format(as_clause(explanation))}\n\n{text}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def yes_probability(choice: ChoiceLogprobs) -> float:
    """P(Yes) / (P(Yes) + P(No)); NaN when the backend knows neither answer."""
    ly = choice.logprobs.get("Yes", -math.inf)
    ln = choice.logprobs.get("No", -math.inf)
    if ly == -math.inf and ln == -math.inf:
        return math.nan
    return float(expit(ly - ln))


async def _classify(
    client: LLMClient,
    name: str,
    prompts: list[list[Message]],
    examples: Sequence[Example],
) -> ScorerOutput:
    choices = await client.next_token_logprobs(prompts, ANSWERS)
    return ScorerOutput(
        name,
        np.array([e.quantile >= 0 for e in examples], dtype=bool),
        np.array([yes_probability(c) for c in choices], dtype=np.float64),
        np.array([e.quantile for e in examples], dtype=np.int64),
    )


async def score_detection(
    client: LLMClient, explanation: str, examples: LatentExamples, render: TokenRenderer
) -> ScorerOutput:
    """Detection on the held-out activating and the non-activating examples, plain text."""
    pool = [*examples.score_active, *examples.score_inactive]
    prompts = [
        classifier_messages(SYSTEM, DETECTION_QUESTION, explanation, render_example(e, render))
        for e in pool
    ]
    return await _classify(client, "detection", prompts, pool)


def random_mask(
    n_tokens: int, n_marked: int, allowed: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A mask marking ``n_marked`` random allowed positions (all of them if fewer)."""
    where = np.flatnonzero(allowed)
    mask = np.zeros(n_tokens, dtype=bool)
    mask[rng.choice(where, size=min(n_marked, len(where)), replace=False)] = True
    return mask


async def score_fuzzing(
    client: LLMClient,
    explanation: str,
    examples: LatentExamples,
    render: TokenRenderer,
    threshold: float,
    rng: np.random.Generator,
    negatives: Literal["inactive", "active"] = "inactive",
) -> ScorerOutput:
    """Fuzzing: real highlights on activating examples, random ones on non-activating.

    ``negatives="active"`` (activating examples with wrong tokens marked, which controls
    for topic cues) is the seam for a later variant.
    """
    if negatives != "inactive":
        raise ValueError(f"fuzzing negatives={negatives!r} is not implemented yet; use 'inactive'")
    masks = [highlight_mask(e.acts, threshold) for e in examples.score_active]
    n_marked = max(1, math.ceil(np.mean([m.sum() for m in masks]))) if masks else 1
    for e in examples.score_inactive:
        visible = np.array([bool(s.strip()) for s in render.strings(e.tokens)])
        masks.append(random_mask(len(e.tokens), n_marked, visible, rng))
    pool = [*examples.score_active, *examples.score_inactive]
    prompts = [
        classifier_messages(
            FUZZING_SYSTEM, FUZZING_QUESTION, explanation, render_example(e, render, m)
        )
        for e, m in zip(pool, masks)
    ]
    return await _classify(client, "fuzzing", prompts, pool)


async def run_scorers(
    names: Sequence[ScorerName],
    client: LLMClient,
    explanation: str,
    examples: LatentExamples,
    render: TokenRenderer,
    threshold: float,
    rng: np.random.Generator,
) -> dict[str, ScorerOutput]:
    """Every requested scorer on one latent, concurrently (the backend bounds it)."""
    jobs = {
        "detection": lambda: score_detection(client, explanation, examples, render),
        "fuzzing": lambda: score_fuzzing(client, explanation, examples, render, threshold, rng),
    }
    unknown = [n for n in names if n not in jobs]
    if unknown:
        raise ValueError(f"unknown scorer(s) {unknown}; choose from {sorted(jobs)}")
    outputs = await asyncio.gather(*(jobs[n]() for n in names))
    return dict(zip(names, outputs))
