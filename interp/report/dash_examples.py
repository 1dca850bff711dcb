"""The examples of a latent dashboard: the point's latent store and tokenizer, the
latent's top-activating windows and windows drawn from each activation quantile."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from interp.report.sweepdata import Point

if TYPE_CHECKING:
    from interp.report.dashboard import DashboardConfig


class Store:
    """The latent store and tokenizer of one point, opened lazily."""

    def __init__(self, point: Point) -> None:
        from interp.models.load import load_tokenizer
        from interp.store import StoreReader

        self.reader = StoreReader(point.files.store_dir)
        self.token_ids = self.reader.token_ids()
        self.ctx_len = point.info.ctx_len
        self.tokenizer = load_tokenizer(point.info.model_name)
        self._text: dict[int, str] = {}

    def token_text(self, token_id: int) -> str:
        if token_id not in self._text:
            self._text[token_id] = self.tokenizer.decode([int(token_id)])
        return self._text[token_id]


def latent_examples(
    store: Store, latent: int, cfg: DashboardConfig
) -> tuple[np.ndarray, list[tuple[str, list[tuple[np.ndarray, np.ndarray]]]]]:
    """The latent's activation values [n] and its example groups: ("top", windows), then
    one group per quantile; a window is (token ids [W], activations [W])."""
    from interp.latents.examples import active_contexts, quantile_of_rank, top_contexts

    acts = store.reader.latent(latent)
    tok, val = np.asarray(acts.tok, np.int64), np.asarray(acts.val, np.float32)
    found = active_contexts(tok, val, store.ctx_len)
    window = min(cfg.window, store.ctx_len)
    cut = _window_cutter(tok, val, store.token_ids, store.ctx_len, window)
    top = top_contexts(found, cfg.n_top_examples)
    groups = [("Top activations", [cut(c, m) for c, m in zip(top.context, top.max_tok)])]
    order = np.argsort(-found.max_act, kind="stable")
    quantile = quantile_of_rank(len(order), cfg.n_quantiles)
    rng = np.random.default_rng((cfg.seed, latent))
    for q in range(min(cfg.n_quantiles, len(order))):
        pool = order[quantile == q]
        pick = np.sort(rng.choice(pool, size=min(cfg.per_quantile, len(pool)), replace=False))
        lo, hi = float(found.max_act[pool].min()), float(found.max_act[pool].max())
        groups.append((f"Quantile {q + 1}/{cfg.n_quantiles} (max activation {lo:.3g} to {hi:.3g})",
                       [cut(found.context[i], found.max_tok[i]) for i in pick]))  # fmt: skip
    return val, groups


def _window_cutter(tok: np.ndarray, val: np.ndarray, token_ids: np.ndarray, ctx_len: int, w: int):
    def cut(ctx: int, max_tok: int) -> tuple[np.ndarray, np.ndarray]:
        pos = int(max_tok) - int(ctx) * ctx_len
        start = int(ctx) * ctx_len + min(max(pos - (w - w // 4), 0), ctx_len - w)
        acts_W = np.zeros(w, dtype=np.float32)
        a, b = np.searchsorted(tok, [start, start + w])
        acts_W[tok[a:b] - start] = val[a:b]
        return np.asarray(token_ids[start : start + w]).astype(np.int64), acts_W

    return cut
