"""Hungarian alignment: sparse vs dense, planted permutations, widths, infeasibility,
the random baseline, activation correlation and the files of a sweep's alignment."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.sparse as sp
import torch
from scipy.optimize import linear_sum_assignment

from interp.align.align import (
    AlignConfig,
    align,
    random_baseline,
)
from interp.align.candidates import (
    CandidateGraph,
    activation_candidates,
    chunked_topk,
    decoder_candidates,
    dense_similarity,
)
from interp.align.match import dense_match, fill_unmatched, sparse_match
from interp.align.report import (
    cross_score_pairs,
    explanation_similarity,
    summarize,
)
from interp.align.sweep import align_dir, plan_pairs
from interp.config import load_run_config, to_dict
from interp.runs import RunPaths, atomic_write_json
from interp.sae.io import save_sae
from interp.sae.topk import TopKSAE
from interp.stages.align import align_sweep
from interp.stages.inputs import dictionary

SPARSE = AlignConfig(method="sparse", neighbours=4, block_a=64, block_b=96)


def planted(
    m: int, d: int, noise: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """B[j] = A[truth[j]] + noise, renormalised."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(m, d, generator=gen)
    A /= A.norm(dim=1, keepdim=True)
    truth = torch.randperm(m, generator=gen)
    B = A[truth] + noise * torch.randn(m, d, generator=gen) / d**0.5
    return A, B, truth.numpy()


def recovered(matching, truth: np.ndarray) -> float:
    expected = dict(zip(truth.tolist(), range(len(truth)), strict=True))
    hits = sum(
        expected.get(i) == j for i, j in zip(matching.a.tolist(), matching.b.tolist(), strict=True)
    )
    return hits / len(truth)


# ------------------------------------------------------------------------ candidates


@pytest.mark.parametrize("shape", [(40, 3001), (3001, 40), (257, 1024)])
@pytest.mark.parametrize("dim", [0, 1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.int32])
def test_chunked_topk_finds_the_topk_values(
    shape: tuple[int, int], dim: int, dtype: torch.dtype
) -> None:
    S = (torch.randn(*shape, generator=torch.Generator().manual_seed(1)) * 1000).to(dtype)
    val, idx = chunked_topk(S, 5, dim, chunk=16)
    ref_val, _ = S.topk(5, dim=dim)
    assert torch.equal(val, ref_val)
    assert torch.equal(S.gather(dim, idx), val)  # indices point at those values


@pytest.mark.parametrize("precision", ["int8", "bf16", "fp32"])
def test_candidates_hold_each_latents_true_nearest_neighbours(precision: str) -> None:
    A, B, _ = planted(150, 24, 2.0)
    graph = decoder_candidates(A, B, 3, precision=precision, block_a=32, block_b=48)  # type: ignore[arg-type]
    S = dense_similarity(A, B)
    edges = set(zip(graph.a.tolist(), graph.b.tolist(), strict=True))
    assert all((i, int(np.argmax(S[i]))) in edges for i in range(150))
    assert all((int(np.argmax(S[:, j])), j) in edges for j in range(150))
    atol = {"int8": 1e-2, "bf16": 2e-2, "fp32": 1e-5}[precision]  # the search's arithmetic
    np.testing.assert_allclose(graph.sim, S[graph.a, graph.b], atol=atol)
    assert len(edges) == len(graph.a) <= 2 * 3 * 150


def test_decoders_of_different_widths_are_refused_with_the_fix() -> None:
    with pytest.raises(ValueError, match="similarity='activation'"):
        decoder_candidates(torch.randn(10, 8), torch.randn(10, 9))


# ------------------------------------------------------------------------ matching


@pytest.mark.parametrize(("m_a", "m_b"), [(120, 120), (90, 130), (130, 90)])
def test_sparse_equals_dense_when_the_graph_is_complete(m_a: int, m_b: int) -> None:
    gen = torch.Generator().manual_seed(2)
    A, B = torch.randn(m_a, 16, generator=gen), torch.randn(m_b, 16, generator=gen)
    dense = dense_match(dense_similarity(A, B))
    graph = decoder_candidates(A, B, max(m_a, m_b), precision="fp32")
    sparse = sparse_match(graph, min_similarity=-1.0)
    assert len(sparse.a) == len(dense.a) == min(m_a, m_b)
    assert sparse.total == pytest.approx(dense.total, abs=1e-4)


def test_sparse_is_a_lower_bound_with_few_candidates_and_equal_when_they_hold_the_optimum() -> None:
    gen = torch.Generator().manual_seed(3)
    A, B = torch.randn(200, 16, generator=gen), torch.randn(200, 16, generator=gen)
    dense = dense_match(dense_similarity(A, B))
    graph = decoder_candidates(A, B, 2, precision="fp32")
    for floor in (-1.0, 0.0):
        assert sparse_match(graph, floor).total <= dense.total + 1e-6
    # put the dense optimum's pairs into the graph: now the sparse optimum must reach it
    S = dense_similarity(A, B)
    both = CandidateGraph(
        np.concatenate([graph.a, dense.a]),
        np.concatenate([graph.b, dense.b]),
        np.concatenate([graph.sim, S[dense.a, dense.b]]),
        200,
        200,
    )
    key = np.unique(both.a * 200 + both.b, return_index=True)[1]
    both = CandidateGraph(both.a[key], both.b[key], both.sim[key], 200, 200)
    assert sparse_match(both, -1.0).total == pytest.approx(dense.total, abs=1e-4)


def test_planted_permutation_is_recovered_at_moderate_noise() -> None:
    A, B, truth = planted(600, 64, 0.5)
    result = align(A, B, SPARSE)
    assert result.method == "sparse" and result.num_edges < 600 * 600 / 10
    assert recovered(result.matching, truth) == 1.0
    dense = align(A, B, AlignConfig(method="dense"))
    assert result.matching.total == pytest.approx(dense.matching.total, abs=1e-3)


def test_different_widths_match_the_smaller_dictionary_fully() -> None:
    A, B, truth = planted(300, 48, 0.3)
    keep = np.arange(0, 300, 3)
    B_small, truth_small = B[keep], truth[keep]  # B keeps 100 of A's 300 latents
    result = align(A, B_small, SPARSE)
    m = result.matching
    assert len(m.a) == 100 and len(m.unmatched_a) == 200 and len(m.unmatched_b) == 0
    assert recovered(m, truth_small) == 1.0
    flipped = align(B_small, A, SPARSE).matching  # and the other way round
    assert len(flipped.a) == 100 and flipped.total == pytest.approx(m.total, abs=1e-4)


def test_a_latent_without_candidates_is_left_unmatched_then_filled() -> None:
    S = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.1], [0.1, 0.3, 0.7]], np.float32)
    # row 1 has no edge; column 0 is row 0's and row 1's only good partner
    graph = CandidateGraph(np.array([0, 2, 2]), np.array([0, 1, 2]), S[[0, 2, 2], [0, 1, 2]], 3, 3)
    m = sparse_match(graph)
    assert m.unmatched_a.tolist() == [1] and m.a.tolist() == [0, 2]
    assert m.b.tolist() == [0, 2] and m.in_graph.all()
    filled = fill_unmatched(m, lambda ia, ib: S[np.ix_(ia, ib)])
    assert filled.a.tolist() == [0, 1, 2] and filled.b.tolist() == [0, 1, 2]
    assert filled.in_graph.tolist() == [True, False, True]
    assert filled.total <= dense_match(S).total + 1e-6


def test_a_dead_decoder_row_breaks_no_good_pair() -> None:
    A, B, truth = planted(200, 32, 0.2)
    A[7] = 0  # a never-trained decoder row: cosine 0 with everything, no true partner
    m = align(A, B, SPARSE).matching
    assert np.isfinite(m.sim).all() and len(m.a) == 200
    assert recovered(m, truth) == 1.0  # 7 is left over, then filled with its leftover
    assert m.in_graph.sum() == 199


# ------------------------------------------------------------------------ report


def test_random_baseline_is_far_below_a_planted_alignment() -> None:
    A, B, _ = planted(400, 64, 0.5)
    cfg = AlignConfig(method="sparse", neighbours=4, thresholds=(0.5, 0.7))
    result = align(A, B, cfg)
    base = random_baseline(400, 400, 64, cfg)
    summary = summarize(result, base, cfg)
    assert (
        summary["matched"]["quantiles"]["0.5"] > 0.8 > 0.5 > summary["baseline"]["quantiles"]["0.5"]
    )
    assert summary["matched"]["frac_above"]["0.7"] == 1.0
    assert (
        summary["baseline"]["frac_above"]["0.7"] == 0.0
        and summary["baseline"]["frac_above"]["0.5"] < 0.05
    )
    assert sum(summary["matched"]["hist_counts"]) == 400
    json.dumps(summary)  # JSON-able


class WordEmbedder:
    """Bag of words hashed into 64 dimensions, L2-normalised (a stand-in for MiniLM)."""

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 64), np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(map(ord, word)) % 64] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def test_explanation_similarity_and_cross_scoring_plan() -> None:
    A, B, truth = planted(6, 16, 0.1)
    m = align(A, B, AlignConfig(method="dense")).matching
    expl_a = {i: f"the word number {i}" for i in range(6) if i != 2}
    expl_b = {j: f"the word number {int(truth[j])}" for j in range(6)}
    sim, shuffled = explanation_similarity(m, expl_a, expl_b, WordEmbedder())
    assert np.isnan(sim[m.a.tolist().index(2)])  # no explanation on A's side
    assert (
        np.nanmin(sim) == pytest.approx(1.0, abs=1e-5) and shuffled is not None and shuffled < 1.0
    )
    plan = cross_score_pairs(m, expl_a)
    assert len(plan) == 5
    for item in plan:
        assert truth[item.latent] == item.source_latent  # B's latent, A's explanation
        assert item.explanation == expl_a[item.source_latent]
    assert cross_score_pairs(m, expl_a, min_similarity=1.01) == []


def test_activation_correlation_recovers_a_permutation() -> None:
    rng = np.random.default_rng(0)
    X = sp.random(300, 2000, density=0.02, random_state=1, format="csr", dtype=np.float32)
    perm = rng.permutation(300)
    Y = X[perm].tocsr().copy()
    Y.data = (Y.data * rng.uniform(0.5, 1.5, len(Y.data))).astype(np.float32)  # noisy values
    graph = activation_candidates(X, Y, 4, block_a=64)
    dense = np.corrcoef(X.toarray(), Y.toarray())[:300, 300:]
    np.testing.assert_allclose(graph.sim, dense[graph.a, graph.b], atol=1e-5)
    result = align(similarity="activation", acts_a=X, acts_b=Y, cfg=SPARSE)
    assert recovered(result.matching, perm) == 1.0
    ra, cb = linear_sum_assignment(dense, maximize=True)
    assert result.matching.total == pytest.approx(dense[ra, cb].sum(), abs=1e-3)


def test_config_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="use auto, dense or sparse"):
        AlignConfig(method="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decoder rows"):
        align(object(), object())


# ------------------------------------------------------------------------ sweep


def fake_sweep(tmp_path: Path) -> tuple[Path, dict[str, RunPaths]]:
    """Four trained dictionaries (576-wide decoders) + one MLP-neuron dictionary collected
    over other tokens; the layer-1 TopK and the layer-2 TopK share latents."""
    base = {"out_dir": str(tmp_path), "name": "s"}
    specs = {
        "topk1": {"layer": 1, "sae": {"num_latents": 64, "k": 4}},
        "topk2": {"layer": 2, "sae": {"num_latents": 64, "k": 4}},
        "relu1": {"layer": 1, "sae": {"architecture": "relu", "num_latents": 48}},
        "neurons1": {"layer": 1, "sae": {"architecture": "neurons", "expansion_factor": 1, "k": 4}},
        "mlp1": {
            "layer": 1,
            "hook": "layers.1.mlp.down_proj:input",
            "sae": {"architecture": "neurons", "expansion_factor": 1, "k": 4},
            "collect": {"num_tokens": 8192},
        },
    }
    gen = torch.Generator().manual_seed(0)
    shared = torch.randn(64, 576, generator=gen)
    out = {}
    for name, spec in specs.items():
        cfg = load_run_config({**base, **spec})
        paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
        atomic_write_json(paths.point_config(), to_dict(cfg))
        width = {"topk1": 64, "topk2": 64, "relu1": 48, "neurons1": 576, "mlp1": 32}[name]
        d = 32 if name == "mlp1" else 576
        sae = TopKSAE(d, width, 4)
        with torch.no_grad():
            if name.startswith("topk"):
                sae.W_dec.copy_(shared + 0.3 * torch.randn(64, 576, generator=gen) / 24)
        save_sae(sae, paths.sae_dir())
        out[name] = paths
    for paths, shift in ((out["topk1"], 0), (out["topk2"], 0)):
        records = [
            {"latent": i, "status": "ok", "explanation": f"tokens about topic {i + shift}"}
            for i in range(0, 64, 2)
        ]
        file = paths.records_file(0)
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return RunPaths.sweep_root(load_run_config(base)), out


def test_align_sweep_writes_every_pair_and_reuses_them(tmp_path: Path) -> None:
    root, points = fake_sweep(tmp_path)
    cfg = AlignConfig(method="auto", thresholds=(0.5,))
    index_file = align_sweep(root, cfg, embedder=WordEmbedder())
    assert index_file == align_dir(root) / "index.json"
    index = json.loads(index_file.read_text())
    kinds = sorted((p["kind"], p["a"]["sae_id"], p["b"]["sae_id"]) for p in index["pairs"])
    assert [k for k, *_ in kinds].count("layers") == 1
    assert [k for k, *_ in kinds].count("same_layer") == 3  # topk1, relu1, neurons1 at layers.1
    assert [k for k, *_ in kinds].count("neurons") == 3  # mlp1 against the three others
    skipped = [p for p in index["pairs"] if p["status"] == "skipped"]
    assert len(skipped) == 3 and all("different tokens" in p["reason"] for p in skipped)

    (layers,) = [p for p in index["pairs"] if p["kind"] == "layers"]
    assert layers["median"] > 0.9 > 0.3 > layers["baseline_median"]
    assert layers["frac_above"]["0.5"] == 1.0
    assert layers["explanation_similarity_mean"] == pytest.approx(1.0, abs=1e-5)
    folder = align_dir(root) / "pairs" / layers["name"]
    assert sorted(p.name for p in folder.iterdir()) == [
        "cross_score.parquet",
        "matches.parquet",
        "summary.json",
    ]
    matches = pq.read_table(folder / "matches.parquet").to_pydict()
    assert sorted(matches) == ["a", "b", "explanation_similarity", "in_graph", "similarity"]
    assert matches["a"] == matches["b"] == list(range(64))  # the shared latents
    cross = pq.read_table(folder / "cross_score.parquet").to_pylist()
    assert len(cross) == 64  # 32 explained latents each way
    assert {c["target"] for c in cross} == {"a", "b"}
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["a"]["layer"] == 1 and summary["b"]["layer"] == 2
    assert summary["num_pairs"] == 64 and summary["explanation_pairs"] == 32

    stamp = (folder / "summary.json").stat().st_mtime_ns
    assert align_sweep(root, cfg, embedder=WordEmbedder()) == index_file
    assert (folder / "summary.json").stat().st_mtime_ns == stamp  # reused, not recomputed
    assert json.loads(index_file.read_text()) == index


def test_align_sweep_stops_between_pairs_without_an_index(tmp_path: Path) -> None:
    root, _ = fake_sweep(tmp_path)
    calls = iter([False, True])
    assert align_sweep(root, embed_explanations=False, should_stop=lambda: next(calls)) is None
    assert not (align_dir(root) / "index.json").exists()
    assert len(list((align_dir(root) / "pairs").iterdir())) == 1  # the first pair committed
    stale = align_dir(root) / "pairs" / "x.tmp-local-0000"  # a killed attempt's leftover
    stale.mkdir()
    index = json.loads(align_sweep(root, embed_explanations=False).read_text())
    assert not stale.exists() and len(index["pairs"]) == 7


def test_plan_pairs_needs_no_weights(tmp_path: Path) -> None:
    root, points = fake_sweep(tmp_path)
    pairs = plan_pairs([dictionary(p.cfg, p) for p in points.values()])
    assert len(pairs) == 7 and pairs == plan_pairs(
        [dictionary(p.cfg, p) for p in points.values()][::-1]
    )


def test_activation_alignment_reads_two_latent_stores(tmp_path: Path) -> None:
    from interp.store.writer import write_slice

    rng = np.random.default_rng(0)
    n_tokens, k, width = 512, 4, 40
    idx = np.stack([rng.choice(width, k, replace=False) for _ in range(n_tokens)])
    val = rng.uniform(0.5, 2.0, (n_tokens, k)).astype(np.float32)
    perm = rng.permutation(width)  # B's latent perm[i] fires where A's latent i fires
    stores = {}
    for name, latents in (("a", idx), ("b", perm[idx])):
        store = tmp_path / name / "latents.zarr"
        for s, (lo, hi) in enumerate(((0, 256), (256, 512))):  # two collect slices
            write_slice(
                store / "slices" / f"s{s:05d}",
                token_start=lo,
                token_stop=hi,
                latent_idx=latents[lo:hi],
                latent_val=val[lo:hi],
                token_ids=np.arange(lo, hi),
                keep=np.ones(hi - lo, bool),
                n_latents=width,
            )
        stores[name] = store
    result = align(similarity="activation", acts_a=stores["a"], acts_b=stores["b"])
    m = result.matching
    assert m.b.tolist() == perm[m.a].tolist() and len(m.a) == width
    assert np.allclose(m.sim, 1.0, atol=1e-3)  # float16 storage of the values


def test_align_sweep_correlates_activations_when_decoders_live_in_different_spaces(
    tmp_path: Path,
) -> None:
    """Residual TopK (576-wide decoder) vs MLP neurons (32-wide) collected over the same
    tokens: the pair is aligned by activation correlation from the two stores."""
    from interp.store.writer import write_slice

    base = {"out_dir": str(tmp_path), "name": "s", "layer": 1}
    cfgs = {
        "topk": load_run_config({**base, "sae": {"num_latents": 64, "k": 4}}),
        "mlp": load_run_config(
            {
                **base,
                "hook": "layers.1.mlp.down_proj:input",
                "sae": {"architecture": "neurons", "expansion_factor": 1, "k": 4},
            }
        ),
    }
    rng = np.random.default_rng(0)
    n_tokens = 512
    idx = np.stack([rng.choice(64, 4, replace=False) for _ in range(n_tokens)])
    val = rng.uniform(0.5, 2.0, idx.shape).astype(np.float32)
    perm = rng.permutation(64)  # neuron perm[i] % 32 fires with latent i when perm[i] < 32
    codes = {"topk": (idx, val), "mlp": (perm[idx] % 32, np.where(perm[idx] < 32, val, 0))}
    for name, cfg in cfgs.items():
        paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
        atomic_write_json(paths.point_config(), to_dict(cfg))
        save_sae(
            TopKSAE(576 if name == "topk" else 32, 64 if name == "topk" else 32, 4), paths.sae_dir()
        )
        latents, values = codes[name]
        write_slice(
            paths.slice_group(0),
            token_start=0,
            token_stop=n_tokens,
            latent_idx=latents,
            latent_val=values.astype(np.float32),
            token_ids=np.arange(n_tokens),
            keep=np.ones(n_tokens, bool),
            n_latents=64 if name == "topk" else 32,
        )
    root = RunPaths.sweep_root(cfgs["topk"])
    index = json.loads(align_sweep(root, embed_explanations=False).read_text())
    (pair,) = index["pairs"]
    assert pair["kind"] == "neurons" and pair["similarity"] == "activation"
    assert pair["baseline_median"] is None  # random directions say nothing about correlation
    matches = pq.read_table(align_dir(root) / "pairs" / pair["name"] / "matches.parquet")
    m = matches.to_pydict()
    topk_is_a = pair["a"]["sae_id"].startswith("topk")
    topk_side, mlp_side = (m["a"], m["b"]) if topk_is_a else (m["b"], m["a"])
    strong = [
        (i, j) for i, j, s in zip(topk_side, mlp_side, m["similarity"], strict=True) if s > 0.9
    ]
    assert sorted(strong) == sorted((i, int(perm[i])) for i in range(64) if perm[i] < 32)
