"""Embedding scorer: the explanation as a search query over the held-out examples.

A sentence embedder (the task-wide ``"embedder"`` resource, all-MiniLM-L6-v2 offline by
default) embeds the explanation and every held-out example; the score is the AUROC of
cosine similarity separating activating from non-activating examples. No LLM call at
all: the cheapest scorer. The paper used an instruction-tuned embedder
(stella_en_400M_v5) with a retrieval instruction on the query; MiniLM is symmetric and
takes plain text on both sides. An embedder that needs a query prompt exposes
``encode_query(texts)``, which is used when present.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from interp.score.context import ScoreContext
from interp.score.ranking import RankingOutput, held_out, plain_text, ranking_output


async def score_embedding(ctx: ScoreContext, explanation: str) -> RankingOutput:
    """AUROC of cos(explanation, example) for activating vs non-activating examples."""
    embedder = ctx.resources.get("embedder")
    pool = held_out(ctx.examples)
    docs = [plain_text(e, ctx.render) for e in pool]
    encode_query = getattr(embedder, "encode_query", embedder.encode)
    # off the event loop: the LLM scorers of this latent keep running meanwhile
    q_1D = await asyncio.to_thread(encode_query, [explanation])
    d_ND = await asyncio.to_thread(embedder.encode, docs)
    sim_N = np.asarray(d_ND, np.float64) @ np.asarray(q_1D, np.float64)[0] if docs else []
    return ranking_output(ctx, "embedding", "similarity", pool, sim_N)


def load_embedder(inputs: Any = None) -> Any:
    """The ``embedder`` resource (the offline sentence embedder); the task's inputs are
    not needed."""
    del inputs
    from interp.models.embedder import load_embedder as load

    return load()
