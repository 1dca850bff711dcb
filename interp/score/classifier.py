"""Detection and fuzzing: can an explanation tell activating examples from others?

* detection: plain text. Does the excerpt contain what the explanation describes?
  Positives are held-out activating examples, negatives non-activating ones.
* fuzzing: highlighted text. Are the marked tokens instances of it? Positives carry
  their real highlights; negatives are non-activating examples with as many random
  tokens marked as the positives have on average (delphi's default fuzzing).
* fuzzing_active: the negatives are the same held-out ACTIVATING examples with wrong
  tokens marked (as many as their real highlights, never one of them): the topic of
  the text no longer gives the answer away, only the marked tokens do.

Two ways to ask, chosen by ``scorer.examples_per_prompt``:

* 1 (one example per prompt): the instructions and the explanation come FIRST and the
  example LAST, so all of a latent's prompts share one prefix that the backend computes
  once; p = P(Yes) / (P(Yes) + P(No)) is read from the next-token log-probabilities,
  so nothing is parsed and nothing can fail to parse.
* n > 1 (numbered examples): one prompt holds n examples and the model answers one
  ``i: Yes|No`` line each. ``scorer.batch_read`` says how the answers are read:
  ``generate``: the reply (prefilled with ``1:`` so it starts in format) is parsed
  strictly (every number once, in order) and its answers count as p = 1 or 0; a reply
  that does not parse leaves its n examples without a probability (NaN, counted as
  failed) and is kept with its raw text. ``generate_logprobs``: the parsed reply is then
  teacher-forced (``continuation_logprobs``, its prompt a cached prefix) to read P(Yes)
  at each answer. ``forced``: no generation; a fixed reply is teacher-forced and P(Yes)
  read at each answer line, one call per prompt (each answer then follows fixed, not
  the model's own, earlier answers).

delphi asks for a Python list after a 3-shot block, with no probabilities by default,
and its detection prompt reuses fuzzing's "correctly labeled" wording.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import expit, logsumexp

from interp.explain.prompts import TokenRenderer, highlight_mask, render_example
from interp.latents.examples import Example
from interp.llm.base import ChoiceLogprobs, LLMClient, Message
from interp.score.context import ScoreContext
from interp.score.metrics import classification_metrics

ANSWERS = ["Yes", "No"]
# In a numbered reply ("1: Yes") the answer token usually carries its leading space.
LIST_ANSWERS = ["Yes", " Yes", "No", " No"]
MAX_RAW = 400  # characters of a failed reply kept on the record
BatchRead = Literal["forced", "generate", "generate_logprobs"]
# batch_read="forced" teacher-forces this answer on every line and reads P(Yes) at each
FORCED_ANSWER = False

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
LIST_SYSTEM = (
    "For each numbered text answer Yes or No on its own line, numbered like the texts "
    "('1: Yes', '2: No', ...). Say Yes only if the text clearly contains what is asked for."
)
LIST_FUZZING_SYSTEM = (
    "Some tokens are marked <<like this>>. For each numbered text answer Yes or No on its "
    "own line, numbered like the texts ('1: Yes', '2: No', ...). Say Yes only if the "
    "marked tokens clearly are what is asked for."
)
LIST_DETECTION_QUESTION = "Does each text contain {}?"
LIST_FUZZING_QUESTION = "In each text, are the marked tokens {}?"


@dataclass(frozen=True)
class ClassifierOutput:
    """Per-example outcome of one classification scorer on one latent."""

    name: str
    labels: np.ndarray  # [n] bool, True = the example should be answered Yes
    probs: np.ndarray  # [n] float P(Yes) from the LLM; NaN = no usable answer
    quantiles: np.ndarray  # [n] int activation quantile, -1 = non-activating
    failures: list[dict[str, Any]] = field(default_factory=list)  # unparsed replies
    n_resamples: int = 1000  # bootstrap resamples for the confidence intervals
    confidence: float = 0.95

    def metrics(self) -> dict[str, Any]:
        m = classification_metrics(
            self.labels,
            self.probs,
            self.quantiles,
            n_resamples=self.n_resamples,
            confidence=self.confidence,
        )
        m["failures"] = self.failures
        return m


# ---------------------------------------------------------------------------- helpers
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


def list_messages(
    system: str, question: str, explanation: str, texts: Sequence[str]
) -> list[Message]:
    """n numbered texts after the shared instructions and explanation."""
    lines = "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))
    user = f"{question.format(as_clause(explanation))}\n\n{lines}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def yes_probability(choice: ChoiceLogprobs | dict[str, float]) -> float:
    """P(Yes) / (P(Yes) + P(No)), either spelling (with or without a leading space).

    NaN when the backend knows neither answer.
    """
    lp = choice.logprobs if isinstance(choice, ChoiceLogprobs) else choice
    ly = logsumexp([v for k, v in lp.items() if k.strip() == "Yes"] or [-math.inf])
    ln = logsumexp([v for k, v in lp.items() if k.strip() == "No"] or [-math.inf])
    if ly == -math.inf and ln == -math.inf:
        return math.nan
    return float(expit(ly - ln))


_LINE = re.compile(r"^\s*(\d+)\s*[:.)\-]\s*\**\s*(yes|no)\b", re.IGNORECASE)


def parse_answers(reply: str, n: int) -> list[bool]:
    """Strictly parse 'i: Yes|No' lines for i = 1..n, in order; ValueError saying why not.

    Lines that are not answers (blank, a closing remark) are ignored; a missing,
    repeated or out-of-order number is an error. Answers that go on numbering past n (a
    small model that does not stop after the last text) are dropped.
    """
    found: list[tuple[int, bool]] = []
    for line in reply.splitlines():
        m = _LINE.match(line)
        if m:
            found.append((int(m.group(1)), m.group(2).lower() == "yes"))
    numbers = [k for k, _ in found]
    if len(numbers) < n or numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"expected answers numbered 1..{n}, got {numbers or 'none'}")
    return [yes for _, yes in found[:n]]


def canonical_reply(answers: Sequence[bool]) -> str:
    """The parsed answers written back in the exact format the prompt asks for."""
    return "\n".join(f"{i}: {'Yes' if a else 'No'}" for i, a in enumerate(answers, 1))


def answer_positions(tokens: Sequence[str], n: int) -> list[int]:
    """Indices of the n Yes/No answer tokens in a teacher-forced canonical reply."""
    pos = [i for i, t in enumerate(tokens) if t.strip() in ("Yes", "No")]
    if len(pos) != n:
        raise ValueError(f"found {len(pos)} Yes/No tokens in the reply, expected {n}")
    return pos


# ---------------------------------------------------------------------------- asking
@dataclass(frozen=True)
class Item:
    """One example as a scorer shows it: the text, the right answer, its quantile."""

    text: str
    label: bool
    quantile: int


@dataclass(frozen=True)
class Wording:
    system: str
    question: str
    list_system: str
    list_question: str


DETECTION = Wording(SYSTEM, DETECTION_QUESTION, LIST_SYSTEM, LIST_DETECTION_QUESTION)
FUZZING = Wording(FUZZING_SYSTEM, FUZZING_QUESTION, LIST_FUZZING_SYSTEM, LIST_FUZZING_QUESTION)


async def ask_one_per_prompt(
    client: LLMClient, wording: Wording, explanation: str, items: Sequence[Item]
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """[n] P(Yes) per item, one prompt each, read from next-token log-probabilities."""
    prompts = [
        classifier_messages(wording.system, wording.question, explanation, it.text) for it in items
    ]
    choices = await client.next_token_logprobs(prompts, ANSWERS)
    return np.array([yes_probability(c) for c in choices], dtype=np.float64), []


async def ask_batched(
    client: LLMClient,
    wording: Wording,
    explanation: str,
    items: Sequence[Item],
    per_prompt: int,
    read: BatchRead,
    max_new_tokens_per_item: int = 6,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """[n] P(Yes) per item, ``per_prompt`` numbered items per prompt; failures recorded."""
    groups = [
        list(range(i, min(i + per_prompt, len(items)))) for i in range(0, len(items), per_prompt)
    ]
    probs = np.full(len(items), np.nan)

    async def one(idx: list[int]) -> dict[str, Any] | None:
        texts = [items[i].text for i in idx]
        messages = list_messages(wording.list_system, wording.list_question, explanation, texts)
        if read == "forced":
            answers = [FORCED_ANSWER] * len(idx)
            reply = canonical_reply(answers)
        else:
            prefill = [*messages, {"role": "assistant", "content": "1:"}]
            gen = await client.generate(
                prefill, max_new_tokens=max_new_tokens_per_item * len(idx) + 4, temperature=0.0
            )
            reply = "1:" + gen.text
            try:
                answers = parse_answers(reply, len(idx))
            except ValueError as e:
                return {"examples": idx, "reason": str(e), "raw": reply[:MAX_RAW]}
            if read == "generate":
                probs[idx] = np.array(answers, dtype=np.float64)
                return None
        forced = await client.continuation_logprobs(
            messages, canonical_reply(answers), LIST_ANSWERS
        )
        try:
            pos = answer_positions(forced.tokens, len(idx))
        except ValueError as e:
            return {"examples": idx, "reason": str(e), "raw": reply[:MAX_RAW]}
        probs[idx] = [yes_probability(forced.candidates[j]) for j in pos]
        return None

    results = await asyncio.gather(*(one(g) for g in groups))
    return probs, [r for r in results if r is not None]


async def classify(
    ctx: ScoreContext, name: str, wording: Wording, explanation: str, items: list[Item]
) -> ClassifierOutput:
    """Ask about every item (shuffled when batched, so classes mix within prompts)."""
    per_prompt = ctx.cfg.examples_per_prompt
    if per_prompt > 1:
        order = ctx.rng.permutation(len(items))
        items = [items[i] for i in order]
        probs, failures = await ask_batched(
            ctx.client, wording, explanation, items, per_prompt, ctx.cfg.batch_read
        )
    else:
        probs, failures = await ask_one_per_prompt(ctx.client, wording, explanation, items)
    return ClassifierOutput(
        name,
        np.array([it.label for it in items], dtype=bool),
        probs,
        np.array([it.quantile for it in items], dtype=np.int64),
        failures,
        ctx.cfg.bootstrap_resamples,
        ctx.cfg.confidence,
    )


# ---------------------------------------------------------------------------- masks
def visible_positions(ex: Example, render: TokenRenderer) -> np.ndarray:
    """[W] bool: tokens that render as something (marking a blank token shows nothing)."""
    return np.array([bool(s.strip()) for s in render.strings(ex.tokens)], dtype=bool)


def random_mask(
    n_tokens: int, n_marked: int, allowed: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """A mask marking ``n_marked`` random allowed positions (all of them if fewer)."""
    where = np.flatnonzero(allowed)
    mask = np.zeros(n_tokens, dtype=bool)
    mask[rng.choice(where, size=min(n_marked, len(where)), replace=False)] = True
    return mask


def wrong_mask(real: np.ndarray, visible: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """As many marks as ``real`` has, on visible tokens outside it (fewer if too few)."""
    return random_mask(len(real), int(real.sum()), visible & ~real, rng)


# ---------------------------------------------------------------------------- scorers
async def score_detection(ctx: ScoreContext, explanation: str) -> ClassifierOutput:
    """Detection on the held-out activating and the non-activating examples, plain text."""
    items = [
        Item(render_example(e, ctx.render), e.quantile >= 0, e.quantile)
        for e in [*ctx.examples.score_active, *ctx.examples.score_inactive]
    ]
    return await classify(ctx, "detection", DETECTION, explanation, items)


async def score_fuzzing(ctx: ScoreContext, explanation: str) -> ClassifierOutput:
    """Fuzzing: real highlights on activating examples, random ones on non-activating."""
    t = ctx.highlight_threshold
    active = ctx.examples.score_active
    masks = [highlight_mask(e.acts, t) for e in active]
    n_marked = max(1, math.ceil(np.mean([m.sum() for m in masks]))) if masks else 1
    items = [
        Item(render_example(e, ctx.render, m), True, e.quantile) for e, m in zip(active, masks)
    ]
    for e in ctx.examples.score_inactive:
        m = random_mask(len(e.tokens), n_marked, visible_positions(e, ctx.render), ctx.rng)
        items.append(Item(render_example(e, ctx.render, m), False, -1))
    return await classify(ctx, "fuzzing", FUZZING, explanation, items)


def active_negatives(
    examples: Sequence[Example], threshold: float, render: TokenRenderer, rng: np.random.Generator
) -> list[tuple[Example, np.ndarray, np.ndarray]]:
    """(example, real mask, wrong mask) for each activating example with a real mark."""
    out = []
    for e in examples:
        real = highlight_mask(e.acts, threshold)
        if real.any():
            out.append((e, real, wrong_mask(real, visible_positions(e, render), rng)))
    return out


async def score_fuzzing_active(ctx: ScoreContext, explanation: str) -> ClassifierOutput:
    """Fuzzing whose negatives are activating examples with wrong tokens marked.

    Each held-out activating example appears twice: with its real highlights (Yes) and
    with as many wrong tokens marked (No). The negative's quantile is -1 (it is scored as
    a non-activating item), so per-quantile rows read as in the other scorers.
    """
    items = []
    for e, real, wrong in active_negatives(
        ctx.examples.score_active, ctx.highlight_threshold, ctx.render, ctx.rng
    ):
        items.append(Item(render_example(e, ctx.render, real), True, e.quantile))
        if wrong.any():
            items.append(Item(render_example(e, ctx.render, wrong), False, -1))
    return await classify(ctx, "fuzzing_active", FUZZING, explanation, items)
