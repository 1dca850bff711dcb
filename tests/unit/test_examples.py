"""Example construction: contexts, quantiles, disjoint explain/score pools, negatives."""

from __future__ import annotations

import numpy as np
import pytest

from interp.config import ExamplesConfig
from interp.latents import active_contexts, build_examples
from interp.latents.examples import quantile_of_rank, split_counts, spread

pytestmark = pytest.mark.unit

CTX = 32
N_CTX = 200


def _synthetic(n_active_ctx: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A latent firing in ``n_active_ctx`` contexts: 1-3 tokens each, distinct maxima."""
    rng = np.random.default_rng(seed)
    token_ids = np.arange(N_CTX * CTX) + 3  # token id = global index + 3: easy to locate
    ctxs = np.sort(rng.choice(N_CTX, size=n_active_ctx, replace=False))
    tok, val = [], []
    for rank, c in enumerate(ctxs):
        pos = np.sort(rng.choice(np.arange(1, CTX), size=rng.integers(1, 4), replace=False))
        peak = 1.0 + rank  # context c has max activation 1 + rank
        acts = np.full(len(pos), peak / 4)
        acts[rng.integers(len(pos))] = peak
        tok += list(c * CTX + pos)
        val += list(acts)
    return np.array(tok, dtype=np.uint32), np.array(val, dtype=np.float16), token_ids


def test_active_contexts_max_and_argmax() -> None:
    tok = np.array([0, 3, 5, 40, 41, 70], dtype=np.uint32)
    val = np.array([1, 5, 5, 2, 7, 1], dtype=np.float16)
    found = active_contexts(tok, val, CTX)
    assert found.context.tolist() == [0, 1, 2]
    assert found.max_act.tolist() == [5, 7, 1]
    assert found.max_tok.tolist() == [3, 41, 70]  # ties go to the earliest token


def test_quantiles_are_equal_count_top_first() -> None:
    assert quantile_of_rank(10, 4).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 3, 3]
    assert spread(7, np.array([3, 3, 3])).tolist() == [3, 2, 2]
    assert spread(5, np.array([0, 1, 9])).tolist() == [0, 1, 4]


def test_quantile_assignment_matches_activation_rank() -> None:
    tok, val, ids = _synthetic(80)
    cfg = ExamplesConfig(n_quantiles=4, n_explain=8, n_score_active=8, min_examples=10)
    ex = build_examples(tok, val, ids, CTX, cfg, latent=3)
    found = active_contexts(tok, val, CTX)
    ranked = found.context[np.argsort(-found.max_act, kind="stable")]
    for e in ex.explain + ex.score_active:
        assert e.quantile == int(np.flatnonzero(ranked == e.context)[0]) // 20
        assert e.acts.max() == pytest.approx(found.max_act[found.context == e.context][0])
    assert [e.quantile for e in ex.explain] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert sorted(e.quantile for e in ex.score_active) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("n_active", [12, 20, 37, 150])
def test_explain_and_score_pools_are_disjoint(n_active: int) -> None:
    tok, val, ids = _synthetic(n_active, seed=n_active)
    cfg = ExamplesConfig(n_quantiles=4, n_explain=12, n_score_active=8, min_examples=12)
    for latent in range(5):
        ex = build_examples(tok, val, ids, CTX, cfg, latent)
        explain = {e.context for e in ex.explain}
        score = {e.context for e in ex.score_active}
        assert not explain & score
        assert len(explain) == len(ex.explain) and len(score) == len(ex.score_active)
        assert len(ex.score_active) > 0
    # deterministic per latent, different across latents
    a = build_examples(tok, val, ids, CTX, cfg, 1)
    b = build_examples(tok, val, ids, CTX, cfg, 1)
    assert [e.context for e in a.score_active] == [e.context for e in b.score_active]


def test_windows_put_the_max_token_at_three_quarters() -> None:
    tok, val, ids = _synthetic(60)
    cfg = ExamplesConfig(window=16, min_examples=1)
    ex = build_examples(tok, val, ids, CTX, cfg, 0)
    for e in ex.explain + ex.score_active:
        peak = int(np.argmax(e.acts))
        start = int(e.tokens[0]) - 3 - e.context * CTX
        assert 0 <= start <= CTX - 16
        assert len(e.tokens) == 16
        if 12 <= start + peak <= CTX - 4:  # not clipped at either end of the context
            assert peak == 12
        np.testing.assert_array_equal(e.tokens, ids[e.context * CTX + start :][:16])


def test_non_activating_contexts_never_contain_the_latent() -> None:
    tok, val, ids = _synthetic(120)
    cfg = ExamplesConfig(n_score_inactive=50, min_examples=1)
    active = set((tok // CTX).tolist())
    ex = build_examples(tok, val, ids, CTX, cfg, 7)
    ctxs = [e.context for e in ex.score_inactive]
    assert len(ctxs) == 50 and len(set(ctxs)) == 50  # without replacement
    assert not active & set(ctxs)
    assert all(e.quantile == -1 and not e.acts.any() for e in ex.score_inactive)
    # asking for more than exist returns every silent context once
    many = build_examples(tok, val, ids, CTX, ExamplesConfig(n_score_inactive=500), 7)
    assert sorted(e.context for e in many.score_inactive) == sorted(set(range(N_CTX)) - active)


def test_too_rare() -> None:
    tok, val, ids = _synthetic(5)
    ex = build_examples(tok, val, ids, CTX, ExamplesConfig(min_examples=6), 0)
    assert ex.status == "too_rare" and ex.n_active_contexts == 5 and not ex.explain
    empty = build_examples(tok[:0], val[:0], ids, CTX, ExamplesConfig(), 0)
    assert empty.status == "too_rare" and empty.n_active_contexts == 0


def test_split_counts_share_scarce_contexts() -> None:
    cfg = ExamplesConfig(n_explain=12, n_score_active=8)
    assert split_counts(100, cfg) == (12, 8)
    assert split_counts(12, cfg) == (7, 5)
    e, s = split_counts(15, cfg)
    assert e + s == 15 and s > 0


def test_window_longer_than_context_is_a_user_error() -> None:
    tok, val, ids = _synthetic(20)
    with pytest.raises(ValueError, match="window"):
        build_examples(tok, val, ids, 8, ExamplesConfig(window=24), 0)


def test_top_contexts_are_the_strongest_first() -> None:
    from interp.latents import top_contexts

    tok, val, _ = _synthetic(40, seed=3)
    found = active_contexts(tok, val, CTX)
    top = top_contexts(found, 5)
    assert len(top.context) == 5
    assert np.all(np.diff(top.max_act) <= 0)
    assert top.max_act[0] == found.max_act.max()
    assert set(top.context) <= set(found.context)
    assert np.min(top.max_act) >= np.sort(found.max_act)[-5]
    assert len(top_contexts(found, 1000).context) == len(found.context)
