"""Non-activating examples of one latent: random, co-firing neighbours, or embedding-similar.

Every non-activating example comes from a context where the latent never fires, each
context at most once across the explainer's and the scorers' sets (so the two are
disjoint). ``examples.negatives`` picks the hard candidates:

- ``random``: none; every example is a random silent context (random window start);
- ``neighbours``: contexts where the latent's strongest co-firing latents fire (from a
  :class:`~interp.latents.cooccurrence.CooccurrenceIndex`), the window centred on the
  neighbour's token, neighbours taken round-robin so several are represented;
- ``similar``: the windows of a :class:`SimilarPool` (random silent windows embedded
  once per task) nearest in embedding to the mean of the latent's activating examples.

The hard candidates, best first, are cut to the total wanted, shuffled, and dealt to the
explainer and scorers in proportion to their counts; a shortfall is filled from random
silent contexts. Each example's ``kind`` says where it came from.

Legend: ``P`` pool windows, ``D`` embedding width, ``W`` window tokens.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
from tqdm import tqdm

from interp.latents.config import ExamplesConfig
from interp.latents.cooccurrence import CooccurrenceIndex
from interp.latents.windows import ActiveContexts, Cutter, Example

log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    """``interp.models.embedder.Embedder`` satisfies it."""

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray: ...


class SimilarPool:
    """Random candidate windows, embedded once per task, for 'similar' hard negatives.

    The pool depends only on (``seed``, corpus, ``window``), not on the task's latent
    range, so a latent gets the same negatives however the latents are split into tasks.
    """

    def __init__(
        self,
        context_P: np.ndarray,
        start_P: np.ndarray,
        emb_PD: np.ndarray,
        window: int,
        embed: Callable[[list[np.ndarray]], np.ndarray],
    ) -> None:
        self.context_P = context_P  # int64 context of each candidate window
        self.start_P = start_P  # int64 window start within its context
        self.emb_PD = emb_PD  # float32 unit-norm embeddings
        self.window = window
        self.embed = embed  # [W] token windows -> [n, D] unit-norm embeddings

    @classmethod
    def build(
        cls,
        token_ids: np.ndarray,
        ctx_len: int,
        cfg: ExamplesConfig,
        embedder: TextEmbedder,
        decode: Callable[[list[int]], str],
        batch_size: int = 64,
    ) -> SimilarPool:
        """Draw ``cfg.similar_pool`` distinct contexts, one random window each, and embed them.

        ``decode`` turns a window's token ids (a list of ints) into text, e.g. the
        subject tokenizer's ``decode``; ``embedder`` is loaded by the caller
        (``interp.models.embedder.load_embedder()``) and kept for the per-latent queries.
        """
        if cfg.window > ctx_len:
            raise ValueError(f"examples.window={cfg.window} exceeds data.ctx_len={ctx_len}")

        def embed(windows: list[np.ndarray]) -> np.ndarray:
            texts = [decode(np.asarray(w).tolist()) for w in windows]
            return embedder.encode(texts, batch_size=batch_size)

        n_ctx = len(token_ids) // ctx_len
        rng = np.random.default_rng((cfg.seed, 0x51A1))
        context = np.sort(rng.choice(n_ctx, size=min(cfg.similar_pool, n_ctx), replace=False))
        start = rng.integers(0, ctx_len - cfg.window + 1, size=len(context))
        lo = context * ctx_len + start
        windows = [np.asarray(token_ids[a : a + cfg.window]) for a in lo]
        log.info("embedding %d candidate windows for 'similar' negatives", len(windows))
        chunks = [windows[i : i + 512] for i in range(0, len(windows), 512)]
        parts = [embed(c) for c in tqdm(chunks, desc="similar pool", unit="chunk", leave=False)]
        emb = np.concatenate(parts) if parts else np.zeros((0, 1), np.float32)
        return cls(context.astype(np.int64), start.astype(np.int64), emb, cfg.window, embed)

    def ranked(self, active: ActiveContexts, examples: Sequence[Example]) -> np.ndarray:
        """Pool rows silent for the latent, nearest to the mean of ``examples`` first."""
        silent = np.flatnonzero(~np.isin(self.context_P, active.context))
        if not len(silent) or not examples:
            return silent
        target_D = self.embed([e.tokens for e in examples]).mean(axis=0)
        target_D /= max(float(np.linalg.norm(target_D)), 1e-12)
        sim = self.emb_PD[silent] @ target_D
        return silent[np.lexsort((silent, -sim))]


def choose_negatives(
    found: ActiveContexts,
    n_ctx: int,
    cut: Cutter,
    cfg: ExamplesConfig,
    latent: int,
    tok: np.ndarray,
    active_examples: Sequence[Example],
    rng: np.random.Generator,
    cooccurrence: CooccurrenceIndex | None = None,
    similar: SimilarPool | None = None,
) -> tuple[list[Example], list[Example]]:
    """(explainer's, scorers') non-activating examples: disjoint, silent contexts only."""
    n_e, n_s = cfg.n_explain_inactive, cfg.n_score_inactive
    total = n_e + n_s
    check_resources(cfg, cut.window, cooccurrence, similar)
    if cfg.negatives == "neighbours":
        assert cooccurrence is not None
        hard = _neighbour_examples(cooccurrence, latent, tok, found, cut, cfg.n_neighbours, total)
    elif cfg.negatives == "similar":
        assert similar is not None
        rows = similar.ranked(found, active_examples)[:total]
        hard = [
            cut.at(int(similar.context_P[r]), int(similar.start_P[r]), -1, "similar") for r in rows
        ]
    else:
        hard = []
    hard = [hard[i] for i in rng.permutation(len(hard))]
    n_hard_e = round(len(hard) * n_e / total) if total else 0
    used = {e.context for e in hard}
    silent = np.setdiff1d(np.arange(n_ctx), found.context, assume_unique=True)
    fill = silent[~np.isin(silent, list(used))]
    want_e, want_s = n_e - n_hard_e, n_s - (len(hard) - n_hard_e)
    fill = rng.choice(fill, size=min(want_e + want_s, len(fill)), replace=False)
    random = [cut.at(int(c), _random_start(cut, rng), -1, "random") for c in fill]
    # scarce silent contexts go to the scorers first: they cannot score without them
    score = hard[n_hard_e:] + random[:want_s]
    explain = hard[:n_hard_e] + random[want_s:]
    _check_negatives(explain, score, found)
    return explain, score


def check_resources(
    cfg: ExamplesConfig,
    window: int,
    cooccurrence: CooccurrenceIndex | None,
    similar: SimilarPool | None,
) -> None:
    """ValueError naming the fix when ``cfg.negatives`` lacks what it needs."""
    if cfg.negatives == "neighbours" and cooccurrence is None:
        raise ValueError(
            "examples.negatives='neighbours' needs a co-occurrence index: build one per "
            "task (interp.latents.index_for_range(reader, csr, cfg.neighbour_tokens)) and "
            "pass it as build_examples(..., cooccurrence=index)"
        )
    if cfg.negatives == "similar":
        if similar is None:
            raise ValueError(
                "examples.negatives='similar' needs an embedded candidate pool: build one per "
                "task (interp.latents.SimilarPool.build(token_ids, ctx_len, cfg, "
                "load_embedder(), decode)) and pass it as build_examples(..., similar=pool)"
            )
        if similar.window != window:
            raise ValueError(
                f"the similar pool was built for window={similar.window}, not "
                f"examples.window={window}: rebuild it with this config"
            )


def _random_start(cut: Cutter, rng: np.random.Generator) -> int:
    return int(rng.integers(0, cut.ctx_len - cut.window + 1))


def _neighbour_examples(
    index: CooccurrenceIndex,
    latent: int,
    tok: np.ndarray,
    found: ActiveContexts,
    cut: Cutter,
    n_neighbours: int,
    total: int,
) -> list[Example]:
    """Up to ``total`` windows centred where co-firing latents fire and ``latent`` is silent."""
    if total == 0 or len(tok) == 0:
        return []
    partners = index.cofiring(latent, tok, top=n_neighbours).latent
    queues = []
    for b in partners:
        ex_tok, ex_val = index.exemplars(int(b))
        keep = ~np.isin(ex_tok // cut.ctx_len, found.context)
        order = np.lexsort((ex_tok[keep], -ex_val[keep]))  # strongest first
        queues.append(list(ex_tok[keep][order]))
    out: list[Example] = []
    used: set[int] = set()
    while len(out) < total and any(queues):
        for queue in queues:  # round-robin: one context per neighbour per turn
            while queue:
                t = int(queue.pop(0))
                if t // cut.ctx_len not in used:
                    used.add(t // cut.ctx_len)
                    out.append(cut.around(t, -1, "neighbour"))
                    break
            if len(out) == total:
                break
    return out


def _check_negatives(explain: list[Example], score: list[Example], found: ActiveContexts) -> None:
    contexts = [e.context for e in explain + score]
    assert len(set(contexts)) == len(contexts), "a non-activating context was used twice"
    assert not np.isin(contexts, found.context).any(), "a negative context activates the latent"
    assert all(e.kind != "active" and e.quantile == -1 for e in explain + score)


def kind_counts(examples: Sequence[Example]) -> dict[str, int]:
    """How many examples of each kind (e.g. {"neighbour": 5, "random": 3})."""
    counts: dict[str, int] = {}
    for e in examples:
        counts[e.kind] = counts.get(e.kind, 0) + 1
    return counts
