"""Surprisal scorer: does the explanation make the activating examples easier to predict?

Each held-out example's text is teacher-forced as the reply to "write text matching
<description>", once with the explanation as the description and once with a null one
(``NULL_EXPLANATION``). Its *loss reduction* is the mean per-token log-probability gain,
mean(log P(text | explanation)) - mean(log P(text | null)): positive when the
explanation helps. A good explanation helps activating examples more than
non-activating ones, so the score is the AUROC of the loss reduction separating the
two, with the mean reduction per class and per quantile beside it.

The paper scored with a *base* model (Llama-3.1-70B) and a few-shot "Description: ...
Sentences: ..." prompt; here the LM is the run's scorer LLM (an instruct model) through
``continuation_logprobs``, with a chat prompt. Both conditions share every token of the
reply, so the per-token difference is exact; each condition's prompt is the same for
every example, so a prefix-caching backend computes it once per latent.
"""

from __future__ import annotations

import asyncio

import numpy as np

from interp.llm.base import LLMClient, Message
from interp.score.context import ScoreContext
from interp.score.ranking import RankingOutput, held_out, plain_text, ranking_output

NULL_EXPLANATION = "various unrelated text"
SYSTEM = "You write short excerpts of text that match a given description."
REQUEST = (
    "Description: {}\n\nWrite an excerpt of text that matches the description. It may "
    "start and end in the middle of a sentence."
)


def surprisal_messages(description: str) -> list[Message]:
    """The prompt whose reply is the example's text (the description last in the prompt)."""
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": REQUEST.format(description.strip())},
    ]


async def mean_logprob(client: LLMClient, messages: list[Message], text: str) -> float:
    """Mean per-token log P(text | messages) as the reply; NaN for no text or no tokens."""
    if not text:
        return float("nan")
    out = await client.continuation_logprobs(messages, text)
    lp = np.asarray(out.logprobs, dtype=np.float64)
    return float(np.mean(lp)) if len(lp) and np.all(np.isfinite(lp)) else float("nan")


async def score_surprisal(ctx: ScoreContext, explanation: str) -> RankingOutput:
    """AUROC of the loss reduction (explanation vs null) for activating vs other examples."""
    pool = held_out(ctx.examples)
    texts = [plain_text(e, ctx.render) for e in pool]
    given, null = surprisal_messages(explanation), surprisal_messages(NULL_EXPLANATION)
    with_expl = await asyncio.gather(*(mean_logprob(ctx.client, given, t) for t in texts))
    with_null = await asyncio.gather(*(mean_logprob(ctx.client, null, t) for t in texts))
    reduction_N = np.asarray(with_expl) - np.asarray(with_null)
    return ranking_output(ctx, "surprisal", "loss_reduction", pool, reduction_N)
