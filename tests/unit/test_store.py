"""The latent store against brute-force references, on real zarr groups in tmp_path.

Inputs are synthetic TopK outputs (random ids and values, with dropped tokens, zeros,
negatives, NaN and values beyond float16), so every expected array is computed
independently of the store code by looping over entries.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from interp.config import RunConfig, load_run_config
from interp.plan import Task, intervals
from interp.runs import RunPaths, is_committed
from interp.stages.context import StageContext
from interp.store import (
    LatentCSR,
    StoreMeta,
    StoreReader,
    compact_range,
    compute_stats,
    sort_by_latent,
    verify,
    write_slice,
    write_store_meta,
)
from interp.store.format import ranges_dir, slices_dir

pytestmark = pytest.mark.unit

N_LATENTS, K, CTX = 300, 8, 32
N_TOKENS, SLICE, RANGE = 1024, 256, 128


# ------------------------------------------------------------------------------ helpers


def synth(seed: int = 0, n: int = N_TOKENS, n_latents: int = N_LATENTS, k: int = K):
    """Random TopK outputs: distinct ids per token, values with every edge case mixed in."""
    rng = np.random.default_rng(seed)
    idx = np.argsort(rng.random((n, n_latents)), axis=1)[:, :k]
    val = rng.lognormal(0.0, 1.0, (n, k)).astype(np.float32)
    edge = rng.random((n, k))
    val[edge < 0.05] = 0.0
    val[(edge >= 0.05) & (edge < 0.07)] = -1.0
    val[(edge >= 0.07) & (edge < 0.08)] = np.nan
    val[(edge >= 0.08) & (edge < 0.09)] = 1e6  # beyond float16: clipped, never inf
    val[(edge >= 0.09) & (edge < 0.10)] = 1e-9  # underflows to 0 in float16: dropped
    keep = np.arange(n) % CTX >= 1
    token_ids = rng.integers(0, 50_000, n)
    return idx, val, token_ids, keep


def brute_force(idx, val, keep, n_latents: int) -> list[tuple[list[int], list[float]]]:
    """Per latent, (tokens, float16 values) in token order, by looping over entries."""
    out: list[tuple[list[int], list[float]]] = [([], []) for _ in range(n_latents)]
    for t in range(idx.shape[0]):
        for j in range(idx.shape[1]):
            v = np.float16(min(float(val[t, j]), 65504.0)) if not np.isnan(val[t, j]) else None
            if keep[t] and v is not None and v > 0:
                out[idx[t, j]][0].append(t)
                out[idx[t, j]][1].append(float(v))
    return out


def assert_matches(csr: LatentCSR, ref, a: int, b: int) -> None:
    assert len(csr.offsets) == b - a + 1 and csr.offsets[0] == 0
    assert csr.tok.dtype == np.uint32 and csr.val.dtype == np.float16
    for i, latent in enumerate(range(a, b)):
        acts = csr.latent(i)
        assert acts.tok.tolist() == ref[latent][0], f"latent {latent} tokens"
        assert acts.val.astype(float).tolist() == ref[latent][1], f"latent {latent} values"


def paths_for(root: Path) -> RunPaths:
    return RunPaths(root, RunConfig())


def write_store(paths: RunPaths, data, slice_tokens: int = SLICE) -> None:
    idx, val, token_ids, keep = data
    write_store_meta(paths.store_dir(), meta(n_tokens=len(token_ids)))
    for t in intervals(len(token_ids), slice_tokens):
        write_one(paths, t, data)


def write_one(paths: RunPaths, t: Task, data):
    idx, val, token_ids, keep = data
    s = slice(t.start, t.stop)
    return write_slice(
        paths.slice_group(t.index),
        token_start=t.start,
        token_stop=t.stop,
        latent_idx=idx[s],
        latent_val=val[s],
        token_ids=token_ids[s],
        keep=keep[s],
        n_latents=N_LATENTS,
        token_dtype="uint16",
    )


def compact_all(paths: RunPaths, tasks=None) -> None:
    slices = [paths.slice_group(t.index) for t in intervals(N_TOKENS, SLICE)]
    for t in tasks if tasks is not None else intervals(N_LATENTS, RANGE):
        compact_range(
            paths.store_dir(),
            paths.range_group(t.index),
            latent_start=t.start,
            latent_stop=t.stop,
            slices=slices,
        )


def meta(n_tokens: int = N_TOKENS) -> StoreMeta:
    return StoreMeta(
        n_latents=N_LATENTS, k=K, ctx_len=CTX, n_tokens=n_tokens, d_in=16, hookpoint="layers.3",
        token_dtype="uint16",
    )  # fmt: skip


def run_verify(paths: RunPaths):
    return verify(
        paths.store_dir(),
        n_tokens=N_TOKENS,
        n_latents=N_LATENTS,
        slice_tasks=list(intervals(N_TOKENS, SLICE)),
        range_tasks=list(intervals(N_LATENTS, RANGE)),
    )


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def data():
    return synth()


@pytest.fixture(scope="module")
def ref(data):
    idx, val, _, keep = data
    return brute_force(idx, val, keep, N_LATENTS)


# ---------------------------------------------------------------------------- writing


def test_round_trip_matches_brute_force(tmp_path, data, ref):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    reader = StoreReader(paths.store_dir())
    assert (reader.n_tokens, reader.n_latents, len(reader.slices)) == (N_TOKENS, N_LATENTS, 4)
    assert_matches(reader.latent_range(0, N_LATENTS), ref, 0, N_LATENTS)
    assert_matches(reader.latent_range(37, 201), ref, 37, 201)
    for latent in (0, 5, N_LATENTS - 1):
        acts = reader.latent(latent)
        assert acts.tok.tolist() == ref[latent][0]
    np.testing.assert_array_equal(reader.token_ids(), data[2])
    assert not np.isinf(reader.latent_range(0, N_LATENTS).val.astype(np.float32)).any()


def test_clipped_and_dropped_entries(tmp_path):
    idx = np.array([[0, 1, 2, 3], [3, 2, 1, 0]])
    val = np.array([[1e6, 0.0, -2.0, np.nan], [1e-9, 0.5, 2.0, 3.0]], np.float32)
    info = write_slice(
        tmp_path / "g", token_start=10, token_stop=12, latent_idx=idx, latent_val=val,
        token_ids=np.array([5, 6]), keep=np.array([True, True]), n_latents=4,
    )  # fmt: skip
    assert info.nnz == 4
    attrs = zarr.open_group(str(tmp_path / "g"), mode="r").attrs.asdict()
    assert attrs["n_clipped"] == 1 and attrs["complete"] is True
    csr, _ = sort_by_latent(10, idx, val, np.array([True, True]), 4)
    assert csr.offsets.tolist() == [0, 2, 3, 4, 4]
    assert csr.tok.tolist() == [10, 11, 11, 11]
    assert csr.val.tolist() == [65504.0, 3.0, 2.0, 0.5]


def test_wide_dictionary_uses_two_pass_radix_sort():
    n_latents = 2**17 + 3
    rng = np.random.default_rng(1)
    idx = rng.integers(0, n_latents, (500, 16))
    val = rng.random((500, 16)).astype(np.float32) + 0.1
    csr, _ = sort_by_latent(7, idx, val, np.ones(500, bool), n_latents)
    order = np.argsort(idx.reshape(-1), kind="stable")
    np.testing.assert_array_equal(csr.tok, (order // 16 + 7).astype(np.uint32))
    np.testing.assert_array_equal(csr.val, val.reshape(-1)[order].astype(np.float16))
    assert csr.offsets[-1] == idx.size and len(csr.offsets) == n_latents + 1


def test_write_slice_is_idempotent(tmp_path, data):
    paths = paths_for(tmp_path)
    t = Task(1, SLICE, 2 * SLICE)
    first = write_one(paths, t, data)
    before = tree_bytes(paths.slice_group(1))
    mtimes = {p: p.stat().st_mtime_ns for p in paths.slice_group(1).rglob("*")}
    assert write_one(paths, t, data) == first
    assert tree_bytes(paths.slice_group(1)) == before
    assert {p: p.stat().st_mtime_ns for p in paths.slice_group(1).rglob("*")} == mtimes
    with pytest.raises(ValueError, match="delete the store"):
        write_one(paths, Task(1, 0, SLICE), data)


def test_bad_inputs_raise_with_the_fix(tmp_path, data):
    idx, val, token_ids, keep = data
    with pytest.raises(ValueError, match="num_latents"):
        write_slice(
            tmp_path / "g", token_start=0, token_stop=4, latent_idx=idx[:4], latent_val=val[:4],
            token_ids=token_ids[:4], keep=keep[:4], n_latents=10,
        )  # fmt: skip
    with pytest.raises(ValueError, match=r"\[5, k\]"):
        write_slice(
            tmp_path / "g", token_start=0, token_stop=5, latent_idx=idx[:4], latent_val=val[:4],
            token_ids=token_ids[:4], keep=keep[:4], n_latents=N_LATENTS,
        )  # fmt: skip
    assert not (tmp_path / "g").exists()


# ------------------------------------------------------------------------- compaction


def test_compaction_equals_reading_slices(tmp_path, data, ref):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    from_slices = StoreReader(paths.store_dir())
    expected = from_slices.latent_range(0, N_LATENTS)
    compact_all(paths)
    reader = StoreReader(paths.store_dir())
    assert len(reader.ranges) == 3
    for a, b in [(0, N_LATENTS), (100, 200), (128, 256), (299, 300)]:
        got = reader.latent_range(a, b)
        want = from_slices.latent_range(a, b)
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)
    assert_matches(reader.latent_range(0, N_LATENTS), ref, 0, N_LATENTS)
    stats = reader.stats(0, N_LATENTS)
    for g, w in zip(stats, compute_stats(expected)):
        np.testing.assert_array_equal(g, w)
    # Ranges alone serve latents: with the slices gone the data is still all there.
    shutil.rmtree(slices_dir(paths.store_dir()))
    only_ranges = StoreReader(paths.store_dir()).latent_range(0, N_LATENTS)
    for g, w in zip(only_ranges, expected):
        np.testing.assert_array_equal(g, w)


def test_partial_compaction_mixes_ranges_and_slices(tmp_path, data, ref):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths, [Task(1, 128, 256)])
    reader = StoreReader(paths.store_dir())
    assert [(r.latent_start, r.latent_stop) for r in reader.ranges] == [(128, 256)]
    assert_matches(reader.latent_range(50, 290), ref, 50, 290)
    stats = reader.stats(120, 260)
    assert stats.count.tolist() == [len(ref[i][0]) for i in range(120, 260)]
    assert stats.max.tolist() == [max(ref[i][1], default=0.0) for i in range(120, 260)]


def test_stats_match_brute_force(tmp_path, data, ref):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    stats = StoreReader(paths.store_dir()).stats(0, N_LATENTS)
    for latent in range(N_LATENTS):
        vals = np.sort(np.array(ref[latent][1], np.float32))
        assert stats.count[latent] == len(vals)
        if len(vals) == 0:
            assert stats.max[latent] == stats.mean[latent] == 0
            continue
        assert stats.max[latent] == vals[-1] and stats.quantiles[latent, 0] == vals[0]
        assert stats.mean[latent] == pytest.approx(vals.mean(), rel=1e-5)
        ranks = np.floor(np.arange(11) / 10 * (len(vals) - 1)).astype(int)
        np.testing.assert_array_equal(stats.quantiles[latent], vals[ranks])


# ------------------------------------------------------------------------ verification


def test_verify_accepts_a_complete_store_and_ignores_tmp_groups(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    # A killed attempt that even got as far as its attrs: still not committed.
    shutil.copytree(paths.slice_group(2), paths.slice_group(2).with_name("s00002.tmp-9-dead"))
    shutil.copytree(paths.range_group(0), paths.range_group(0).with_name("r00000.tmp-9-dead"))
    report = run_verify(paths)
    assert report.ok, report.summary
    assert (report.n_slices, report.n_ranges) == (4, 3)
    assert len(StoreReader(paths.store_dir()).slices) == 4


def test_verify_detects_missing_slice_and_range(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    shutil.rmtree(paths.slice_group(1))
    shutil.rmtree(paths.range_group(2))
    report = run_verify(paths)
    assert not report.ok
    assert report.missing_slices == [1] and report.missing_ranges == [2]
    assert "rerun collect" in report.summary and "rerun compact" in report.summary
    with pytest.raises(ValueError, match=r"\[256, 512\)"):
        StoreReader(paths.store_dir()).token_ids()


@pytest.mark.filterwarnings("ignore:Numcodecs codecs")
def test_verify_detects_corrupted_offsets(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    off = zarr.open_array(str(paths.slice_group(2) / "offsets"), mode="r+")
    off[10:20] = off[10:20][::-1].copy()
    report = run_verify(paths)
    assert not report.ok and report.missing_slices == []
    assert any("s00002" in c and "monotone" in c for c in report.corrupt), report.corrupt


def test_verify_detects_a_lost_shard(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    # A lost or killed shard write reads back as fill values, silently (pitfall 6).
    for f in (paths.range_group(1) / "offsets" / "c").rglob("*"):
        if f.is_file():
            f.unlink()
    report = run_verify(paths)
    assert not report.ok
    assert any(c.startswith("range r00001") for c in report.corrupt), report.corrupt


def test_verify_detects_a_range_that_disagrees_with_the_slices(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    other = paths_for(tmp_path / "other")
    write_store(other, synth(seed=5))
    shutil.rmtree(paths.slice_group(3))
    shutil.copytree(other.slice_group(3), paths.slice_group(3))
    report = run_verify(paths)
    assert not report.ok
    assert any("summed over the slices" in c for c in report.corrupt), report.corrupt


def test_store_paths_agree_with_run_paths(tmp_path):
    paths = paths_for(tmp_path)
    assert paths.slice_group(7).parent == slices_dir(paths.store_dir())
    assert paths.range_group(7).parent == ranges_dir(paths.store_dir())


# ----------------------------------------------------------------------- crash safety


def _killed_writer(group: str, data, flag: str) -> None:
    """Child process: write a slice, but park forever halfway through the group."""
    import interp.store.format as store_format
    import interp.store.writer as writer

    real = store_format.write_array

    def parked(root, name, arr, kind):
        real(root, name, arr, kind)
        if name == "tok":
            Path(flag).touch()
            time.sleep(600)

    store_format.write_array = parked  # write_group looks it up at call time
    idx, val, token_ids, keep = data
    writer.write_slice(
        Path(group), token_start=SLICE, token_stop=2 * SLICE, latent_idx=idx, latent_val=val,
        token_ids=token_ids, keep=keep, n_latents=N_LATENTS, token_dtype="uint16",
    )  # fmt: skip


def test_sigkilled_writer_leaves_nothing_and_rerun_is_byte_identical(tmp_path, data):
    clean, crashed = paths_for(tmp_path / "clean"), paths_for(tmp_path / "crashed")
    write_store(clean, data)
    write_store(crashed, data)
    shutil.rmtree(crashed.slice_group(1))
    part = tuple(a[SLICE : 2 * SLICE] for a in data)
    flag = tmp_path / "halfway"
    ctx = multiprocessing.get_context("spawn")
    child = ctx.Process(target=_killed_writer, args=(str(crashed.slice_group(1)), part, str(flag)))
    child.start()
    try:
        while not flag.exists():
            assert child.is_alive(), "writer died before reaching the kill point"
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.join()
    assert child.exitcode == -signal.SIGKILL
    leftovers = [p.name for p in slices_dir(crashed.store_dir()).iterdir()]
    assert any(n.startswith("s00001.tmp-") for n in leftovers)
    assert not crashed.slice_group(1).exists()
    reader = StoreReader(crashed.store_dir())
    assert [s.token_start for s in reader.slices] == [0, 2 * SLICE, 3 * SLICE]
    assert run_verify(crashed).missing_slices == [1]

    write_one(crashed, Task(1, SLICE, 2 * SLICE), data)
    assert sorted(p.name for p in slices_dir(crashed.store_dir()).iterdir()) == [
        f"s{i:05d}" for i in range(4)
    ]
    assert tree_bytes(crashed.slice_group(1)) == tree_bytes(clean.slice_group(1))
    got = StoreReader(crashed.store_dir()).latent_range(0, N_LATENTS)
    want = StoreReader(clean.store_dir()).latent_range(0, N_LATENTS)
    for g, w in zip(got, want):
        assert g.tobytes() == w.tobytes()


# ----------------------------------------------------------------------------- stages


class FakeSubject:
    """Deterministic 'residual stream': a fixed embedding of each token id."""

    def __init__(self, vocab: int, d: int) -> None:
        import torch

        self.emb = torch.randn(vocab, d, generator=torch.Generator().manual_seed(0))

    def hidden(self, input_ids):
        return self.emb[input_ids]


class FakeSAE:
    """TopK of a fixed random encoder, with the interface of interp.sae."""

    num_latents, k, d_in = 64, 4, 8

    def __init__(self) -> None:
        import torch

        self.w = torch.randn(
            self.d_in, self.num_latents, generator=torch.Generator().manual_seed(1)
        )

    max_active = k

    def encode(self, x):
        import torch

        top = torch.relu(x @ self.w).topk(self.k, dim=-1)
        return top.values, top.indices


class FakeThresholdSAE(FakeSAE):
    """A threshold dictionary: as many active latents per token as clear 2.0, so K (the
    most active of any token in a batch) differs from batch to batch."""

    max_active = None

    def encode(self, x):
        from interp.sae.base import dense_to_sparse

        acts = x @ self.w
        return dense_to_sparse(acts * (acts > 2.0))


@pytest.fixture(params=[FakeSAE, FakeThresholdSAE], ids=["topk", "threshold"])
def fake_pipeline(request, monkeypatch, tmp_path):
    import interp.data
    import interp.models
    import interp.sae

    cfg = load_run_config(
        {
            "out_dir": str(tmp_path),
            "data": {"ctx_len": 32, "exclude_first": 2, "max_tokens": 400_000},
            "collect": {
                "num_tokens": 256, "slice_tokens": 128, "range_latents": 24, "lm_batch_size": 3,
            },
        }
    )  # fmt: skip
    windows = np.random.default_rng(3).integers(0, 1000, (9, 32))
    subject, sae = FakeSubject(1000, 8), request.param()
    monkeypatch.setattr(interp.data, "load_windows", lambda p, split: windows, raising=False)
    fake_load = lambda m, layer=None, hookpoints=(): subject  # noqa: E731
    monkeypatch.setattr(interp.models, "load_subject", fake_load, raising=False)
    monkeypatch.setattr(interp.sae, "load_sae", lambda d, device="cpu": sae, raising=False)
    return cfg, RunPaths(tmp_path / cfg.name, cfg), windows, subject, sae


def test_collect_and_compact_stages(fake_pipeline):
    from interp.stages import collect, compact

    cfg, paths, windows, subject, sae = fake_pipeline
    slices = intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens)
    ranges = intervals(sae.num_latents, cfg.collect.range_latents)
    checks = iter([False, True])  # preempted after the first of two LM batches
    collect.run(StageContext.of(cfg, paths, slices[0], lambda: next(checks)))
    assert not is_committed(paths.manifest_file("collect", 0))
    assert next(checks, "drained") == "drained" and not paths.slice_group(0).exists()
    collect.run(StageContext.of(cfg, paths, slices[0], lambda: False))
    with pytest.raises(ValueError, match=r"missing slice indices \[1\].*rerun collect"):
        compact.run(StageContext.of(cfg, paths, ranges[0], lambda: False))
    collect.run(StageContext.of(cfg, paths, slices[1], lambda: False))
    for t in ranges:
        compact.run(StageContext.of(cfg, paths, t, lambda: False))
    assert all(is_committed(paths.manifest_file("compact", t.index)) for t in ranges)
    report = verify(
        paths.store_dir(), n_tokens=256, n_latents=64, slice_tasks=slices, range_tasks=ranges
    )
    assert report.ok, report.summary

    tokens = windows[:8].reshape(-1)
    acts, idx = sae.encode(subject.hidden(__import__("torch").from_numpy(tokens)))
    keep = np.arange(256) % 32 >= 2
    ref = brute_force(idx.numpy(), acts.numpy(), keep, 64)
    reader = StoreReader(paths.store_dir())
    assert reader.meta.n_latents == 64 and reader.meta.hookpoint == cfg.hookpoint
    np.testing.assert_array_equal(reader.token_ids(), tokens)
    assert_matches(reader.latent_range(0, 64), ref, 0, 64)


def test_store_json_has_one_writer(fake_pipeline):
    from interp.stages import collect
    from interp.store import StoreMeta, read_store_meta, write_store_meta

    cfg, paths, _, _, sae = fake_pipeline
    slices = intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens)
    collect.run(StageContext.of(cfg, paths, slices[1], lambda: False))
    assert read_store_meta(paths.store_dir()) is None  # only collect task 0 writes it
    collect.run(StageContext.of(cfg, paths, slices[0], lambda: False))
    meta = read_store_meta(paths.store_dir())
    assert meta is not None and meta.n_latents == sae.num_latents
    other = StoreMeta(**{**meta.__dict__, "n_latents": meta.n_latents + 1})
    with pytest.raises(ValueError, match="describes a different store"):
        write_store_meta(paths.store_dir(), other)
