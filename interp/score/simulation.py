"""Simulation scorer (OpenAI's all-at-once method): predict every token's activation.

The LLM sees the explanation and one held-out example as a reply of lines
``token<TAB>0`` (one per token of the example), after a one-shot demonstration with
real values. The reply is teacher-forced in ONE call per example
(``continuation_logprobs``), and at every slot (the position right after a tab) the
log-probabilities of the digits are read: the prediction is the expected value of the
distribution renormalised over the valid digits. The score is the Pearson correlation
between predicted and true activations over all tokens of the held-out activating and
non-activating examples pooled (OpenAI's ``ev_correlation_score``), beside the
correlation on the activating examples alone and per quantile, and a bootstrap interval
of the pooled correlation (activating and non-activating examples resampled apart).

Tokenization: OpenAI's 0-10 scale has a two-token "10" in most current tokenizers
(Qwen and SmolLM split digits, so "10" starts with the token of "1"); a 0-9 scale keeps
every value one digit token everywhere, and a correlation does not depend on the
scale. The teacher-forced slot value is a digit, which no pre-tokenizer merges with the
tab before it (a letter, e.g. OpenAI's "unknown", joins the tab in Qwen's), so a slot
is exactly "the token after a token ending in a tab". Tabs and newlines inside the
example's own tokens are shown as ``→`` and ``↵``. A reply whose slots cannot be found
one per token (an unusual tokenizer) or whose digits have no probability is a failed
example (``n_failed``), never a guess.

The slot is filled with "0" rather than a placeholder: on Qwen2.5-Coder-1.5B and a
synthetic weather-words latent (4 + 4 examples), "0" gave correlation 0.70 for the true
explanation vs 0.38 for an unrelated one, "?" gave 0.68 vs 0.47 with a mean prediction
of ~2 on silent text (0.6 with "0"). The model never sees its own earlier predictions
either way, as in OpenAI's method.

The expensive reference scorer: one call of ~4 reply tokens per example token.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import softmax
from scipy.stats import pearsonr

from interp.explain.prompts import TokenRenderer
from interp.latents.examples import Example
from interp.llm.base import LLMClient, Message, TextLogprobs
from interp.score.context import ScoreContext
from interp.score.metrics import DEFAULT_CONFIDENCE, stratified_ci
from interp.score.ranking import held_out

MAX_VALUE = 9
DIGITS = [str(d) for d in range(MAX_VALUE + 1)]
SLOT = "0"  # the teacher-forced value at every slot (see above)
SYSTEM = (
    "We study a feature of a language model that is active on some tokens of a text. "
    "Given an explanation of the feature, predict its activation on every token of a text, "
    f"from 0 (inactive) to {MAX_VALUE} (strongest). Most tokens are 0. Answer with one "
    "line per token: the token, a tab, its activation."
)
# (token, value) of the one-shot demonstration: an animal-names feature
DEMO_EXPLANATION = "names of animals"
DEMO = [
    ("The", 0), (" farmer", 0), (" fed", 0), (" the", 0), (" horse", 9), (" and", 0),
    (" two", 0), (" small", 0), (" go", 3), ("ats", 7), (" before", 0), (" dawn", 0),
    (".", 0),
]  # fmt: skip


def request(explanation: str) -> str:
    return f"Explanation: {explanation.strip()}"


VISIBLE = str.maketrans({"\t": "→", "\n": "↵", "\r": "↵"})  # a token's own line breaks


def reply_lines(strings: list[str], values: list[str]) -> str:
    """``token<TAB>value`` lines; tabs and line breaks inside the tokens made visible."""
    return "".join(f"{s.translate(VISIBLE)}\t{v}\n" for s, v in zip(strings, values))


def simulation_messages(explanation: str) -> list[Message]:
    """The prompt shared by every example of a latent (the reply differs)."""
    demo = reply_lines([t for t, _ in DEMO], [str(v) for _, v in DEMO])
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": request(DEMO_EXPLANATION)},
        {"role": "assistant", "content": demo},
        {"role": "user", "content": request(explanation)},
    ]


def slot_positions(tokens: list[str]) -> list[int]:
    """Reply positions right after a token ending in a tab (where a value is predicted)."""
    return [i for i in range(1, len(tokens)) if tokens[i - 1].endswith("\t")]


def expected_values(out: TextLogprobs, n_tokens: int) -> np.ndarray:
    """[n_tokens] expected 0..MAX_VALUE at each slot; all NaN if the slots do not line up.

    The digit log-probs at a slot are renormalised over the digits (mass on any other
    token is ignored, as in OpenAI's simulator).
    """
    slots = slot_positions(out.tokens)
    if len(slots) != n_tokens:
        return np.full(n_tokens, np.nan)
    pred = np.empty(n_tokens)
    for j, i in enumerate(slots):
        lp = np.array([out.candidates[i].get(d, -math.inf) for d in DIGITS], dtype=np.float64)
        pred[j] = np.nan if np.all(np.isneginf(lp)) else float(softmax(lp) @ np.arange(len(lp)))
    return pred


async def simulate(
    client: LLMClient, messages: list[Message], example: Example, render: TokenRenderer
) -> np.ndarray:
    """[W] predicted activations of one example (NaN where the reply was unusable)."""
    strings = render.strings(example.tokens)
    out = await client.continuation_logprobs(
        messages, reply_lines(strings, [SLOT] * len(strings)), DIGITS
    )
    return expected_values(out, len(strings))


def _correlation(true: np.ndarray, pred: np.ndarray) -> float | None:
    if len(true) < 2 or np.ptp(true) == 0 or np.ptp(pred) == 0:
        return None  # undefined on constant input (e.g. only non-activating text)
    return float(pearsonr(true, pred).statistic)


def _pooled_stat(true: list[np.ndarray], pred: list[np.ndarray]) -> Any:
    """A vectorised statistic for ``stratified_ci``: pooled correlation of resampled examples.

    Its inputs are example indices (activating, non-activating) with a batch axis.
    """

    def stat(pos: np.ndarray, neg: np.ndarray, axis: int = -1) -> np.ndarray:
        idx = np.concatenate([np.moveaxis(pos, axis, -1), np.moveaxis(neg, axis, -1)], -1)
        flat = idx.reshape(-1, idx.shape[-1]).astype(np.int64)
        out = np.empty(len(flat))
        for r, row in enumerate(flat):
            c = _correlation(
                np.concatenate([true[i] for i in row]), np.concatenate([pred[i] for i in row])
            )
            out[r] = np.nan if c is None else c
        return out.reshape(idx.shape[:-1])

    return stat


@dataclass(frozen=True)
class SimulationOutput:
    """True and predicted activations of every held-out example of one latent.

    ``true``/``pred`` hold one [W] array per example; ``quantiles`` [n] (-1 = inactive).
    An example with any NaN prediction counts as failed and is left out of every metric.
    """

    name: str
    true: list[np.ndarray]
    pred: list[np.ndarray]
    quantiles: np.ndarray
    n_resamples: int = 0  # bootstrap resamples (of examples) for the interval; 0 = none
    confidence: float = DEFAULT_CONFIDENCE

    def metrics(self) -> dict[str, Any]:
        ok = np.array([not np.isnan(p).any() for p in self.pred], dtype=bool)
        q = self.quantiles
        ci = stratified_ci(
            np.flatnonzero(ok & (q >= 0)),
            np.flatnonzero(ok & (q < 0)),
            _pooled_stat(self.true, self.pred),
            n_resamples=self.n_resamples,
            confidence=self.confidence,
        )

        def pooled(sel: np.ndarray) -> float | None:
            idx = np.flatnonzero(sel & ok)
            if not len(idx):
                return None
            return _correlation(
                np.concatenate([self.true[i] for i in idx]),
                np.concatenate([self.pred[i] for i in idx]),
            )

        def mean_pred(sel: np.ndarray) -> float | None:
            idx = np.flatnonzero(sel & ok)
            return float(np.mean(np.concatenate([self.pred[i] for i in idx]))) if len(idx) else None

        return {
            "correlation": pooled(np.ones(len(q), dtype=bool)),
            "correlation_ci": list(ci),
            "correlation_active": pooled(q >= 0),
            "mean_prediction_active": mean_pred(q >= 0),
            "mean_prediction_inactive": mean_pred(q < 0),
            "n": int(ok.sum()),
            "n_failed": int((~ok).sum()),
            "n_tokens": int(sum(len(self.true[i]) for i in np.flatnonzero(ok))),
            "per_quantile": [
                {"quantile": int(k), "n": int(np.sum((q == k) & ok)), "correlation": pooled(q == k)}
                for k in sorted(set(q[q >= 0].tolist()))
            ],
        }


async def score_simulation(ctx: ScoreContext, explanation: str) -> SimulationOutput:
    """Pearson correlation of simulated and true activations over all held-out tokens."""
    pool = held_out(ctx.examples)
    messages = simulation_messages(explanation)
    preds = await asyncio.gather(*(simulate(ctx.client, messages, e, ctx.render) for e in pool))
    return SimulationOutput(
        "simulation",
        [np.asarray(e.acts, dtype=np.float64) for e in pool],
        list(preds),
        np.array([e.quantile for e in pool], dtype=np.int64),
        ctx.cfg.bootstrap_resamples,
        ctx.cfg.confidence,
    )
