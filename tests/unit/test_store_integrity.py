"""Damage is found and named, never read as data: real zarr stores on disk, written by the
real writer (and by the collect / compact stages), then damaged the ways files get damaged
(a lost shard, flipped bytes, a truncated file), and a store written before checksums.
"""

from __future__ import annotations

import importlib.util
import json
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from test_store import (
    FakeSAE,
    FakeSubject,
    assert_matches,
    brute_force,
    compact_all,
    paths_for,
    run_verify,
    synth,
    write_store,
)

from interp.config import load_run_config, to_dict
from interp.plan import Task, plan_point
from interp.records import LatentRecord
from interp.runs import RunPaths, atomic_write_json, commit_task, is_committed
from interp.stages.context import StageContext
from interp.store import StoreCorruptError, StoreReader, compact_range, verify_latents
from interp.store.verify import main as verify_main
from interp.store.verify import verify_store
from interp.verify import write_records

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "fixtures" / "store_schema1"


@pytest.fixture(scope="module")
def data():
    return synth()


def shard(group: Path, array: str) -> Path:
    """The first shard file of one array of a group."""
    return next(p for p in sorted((group / array / "c").rglob("*")) if p.is_file())


def flip(file: Path, n: int = 400) -> None:
    """Invert ``n`` bytes inside the chunk data (before the shard index at the end)."""
    raw = bytearray(file.read_bytes())
    lo = min(16, len(raw) // 4)
    hi = min(lo + n, len(raw) - 200)
    assert hi > lo, f"{file} too small to damage its chunk data"
    raw[lo:hi] = bytes(b ^ 0xFF for b in raw[lo:hi])
    file.write_bytes(bytes(raw))


# ------------------------------------------------------------------------ one store


def test_a_clean_store_verifies_and_every_chunk_is_checksummed(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    report = run_verify(paths)
    assert report.ok and not report.unchecked, report.summary
    for meta in paths.store_dir().rglob("*/zarr.json"):
        doc = json.loads(meta.read_text())
        if doc["node_type"] == "array":
            inner = doc["codecs"][0]["configuration"]["codecs"]
            assert inner[-1] == {"name": "crc32c"}, meta
    assert verify_store(paths.store_dir()).ok
    assert verify_main([str(paths.store_dir())]) == 0
    assert verify_latents(paths.store_dir(), 100, 140).ok


def test_a_deleted_shard_is_named_never_read_as_zeros(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    lost = shard(paths.slice_group(1), "val")
    lost.unlink()
    reader = StoreReader(paths.store_dir())
    reader.ranges = []  # read from the slices, as before compaction
    with pytest.raises(StoreCorruptError, match=str(lost)) as err:
        reader.latent_range(0, 10)
    assert err.value.group == paths.slice_group(1)
    report = run_verify(paths)
    assert not report.ok and report.damaged == [paths.slice_group(1)]
    assert any(str(lost) in c and "missing" in c for c in report.corrupt), report.corrupt
    assert verify_main([str(paths.store_dir())]) == 1
    # A lost shard of a range group (here its stats) is named too.
    (paths.range_group(2) / "count" / "c" / "0").unlink()
    assert not verify_latents(paths.store_dir(), 260, 270).ok
    assert verify_latents(paths.store_dir(), 0, 10).ok  # range 0 is intact and serves it


def test_flipped_bytes_and_a_truncated_shard_are_named(tmp_path, data):
    paths = paths_for(tmp_path)
    write_store(paths, data)
    compact_all(paths)
    flipped = shard(paths.range_group(1), "tok")
    flip(flipped)
    with pytest.raises(StoreCorruptError, match=f"{flipped} does not decode"):
        StoreReader(paths.store_dir()).latent_range(130, 140)
    cut = shard(paths.slice_group(3), "tokens")
    cut.write_bytes(cut.read_bytes()[:-7])  # the shard index at the end is damaged
    report = run_verify(paths)
    assert set(report.damaged) == {paths.range_group(1), paths.slice_group(3)}
    assert any(str(flipped) in c and "crc32c mismatch" in c for c in report.corrupt), report.corrupt
    assert any(str(cut) in c for c in report.corrupt), report.corrupt
    with pytest.raises(StoreCorruptError, match=str(cut)):
        StoreReader(paths.store_dir()).token_ids()


def test_all_zero_chunks_are_written_so_dead_latents_verify(tmp_path):
    """Latents 128-299 never fire: their counts are one all-zero chunk, which zarr skips
    unless told not to; a skipped chunk would read as a lost shard."""
    _, val, token_ids, keep = synth()
    rng = np.random.default_rng(2)
    idx = np.argsort(rng.random((len(val), 128)), axis=1)[:, : val.shape[1]]
    write_store(paths := paths_for(tmp_path), (idx, val, token_ids, keep))
    compact_all(paths)
    assert (paths.range_group(2) / "count" / "c" / "0").is_file()
    assert run_verify(paths).ok
    assert StoreReader(paths.store_dir()).stats(128, 300).count.sum() == 0


# ------------------------------------------------------------------ before checksums


def schema1_data():
    spec = importlib.util.spec_from_file_location("make_store_schema1", FIXTURE.parent / "make_store_schema1.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_store_written_before_checksums_opens_reads_and_is_reported(tmp_path):
    old = schema1_data()
    store = tmp_path / "latents.zarr"
    shutil.copytree(FIXTURE / "latents.zarr", store)
    idx, val, _, keep = old.data()
    reader = StoreReader(store)
    assert_matches(reader.latent_range(0, old.N_LATENTS), brute_force(idx, val, keep, 64), 0, 64)
    report = verify_store(store)
    assert report.ok, report.summary
    assert report.unchecked == ["slice s00000", "slice s00001", "range r00000"]
    assert "no checksums (written before interp store schema 2)" in report.summary
    # This code finishes the old store: the new range group carries checksums.
    slices = [s.path for s in reader.slices]
    compact_range(store, store / "ranges" / "r00001", latent_start=32, latent_stop=64, slices=slices)  # fmt: skip
    report = verify_store(store)
    assert report.ok and "range r00001" not in report.unchecked and report.n_ranges == 2
    # Stored values are > 0, so even an old group's lost val shard is found.
    lost = shard(store / "slices" / "s00001", "val")
    lost.unlink()
    assert any(str(lost) in c for c in verify_store(store).corrupt)


# ----------------------------------------------------------------- stages and sweep


@pytest.fixture
def sweep(monkeypatch, tmp_path):
    """A one-point sweep whose store the real collect and compact stages wrote (fake LM
    and dictionary), with interpret records committed the way the stage commits them."""
    import interp.data
    import interp.models
    import interp.sae
    from interp.stages import collect, compact

    cfg = load_run_config(
        {
            "out_dir": str(tmp_path),
            "data": {"ctx_len": 32, "exclude_first": 2, "max_tokens": 400_000},
            "sae": {"num_latents": FakeSAE.num_latents, "k": FakeSAE.k},
            "collect": {"num_tokens": 256, "slice_tokens": 128, "range_latents": 24},
            "interpret": {"num_latents": 32, "range_latents": 24},
        }
    )
    windows = np.random.default_rng(3).integers(0, 1000, (9, 32))
    subject, sae = FakeSubject(1000, 8), FakeSAE()
    monkeypatch.setattr(interp.data, "load_windows", lambda p, split: windows, raising=False)
    fake_load = lambda m, layer=None, hookpoints=(): subject  # noqa: E731
    monkeypatch.setattr(interp.models, "load_subject", fake_load, raising=False)
    monkeypatch.setattr(interp.sae, "load_sae", lambda d, device="cpu": sae, raising=False)
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    atomic_write_json(paths.point_config(), to_dict(cfg))
    jobs = {j.stage: j for j in plan_point(cfg, 8)}
    for stage in (collect, compact):
        for t in jobs[stage.__name__.rsplit(".")[-1]].tasks:
            stage.run(StageContext.of(cfg, paths, t, lambda: False))
    for t in jobs["interpret"].tasks:
        recs = [LatentRecord(i, "ok") for i in range(t.start, t.stop)]
        info = write_records(paths.records_file(t.index), recs)
        commit_task(paths.manifest_file("interpret", t.index), {"records": info})
    return cfg, paths


def run_launch_verify(root: Path, capsys) -> tuple[int, str]:
    argv = sys.argv
    sys.argv = ["launch/verify.py", str(root)]
    try:
        runpy.run_path(str(ROOT / "launch" / "verify.py"), run_name="__main__")
    except SystemExit as e:
        code = e.code
    finally:
        sys.argv = argv
    return code, capsys.readouterr().out


def test_compact_and_interpret_refuse_damaged_input_and_commit_nothing(sweep):
    from interp.stages import compact, interpret

    cfg, paths = sweep
    lost = shard(paths.slice_group(1), "val")
    lost.unlink()
    shutil.rmtree(paths.range_group(0))
    paths.manifest_file("compact", 0).unlink()
    with pytest.raises(StoreCorruptError, match=str(lost)) as err:
        compact.run(StageContext.of(cfg, paths, Task(0, 0, 24), lambda: False))
    assert f"delete {paths.slice_group(1)} and {paths.manifest_file('collect', 1)}" in str(
        err.value
    )
    assert "rerun collect task 1" in str(err.value)
    assert not paths.range_group(0).exists() and not is_committed(paths.manifest_file("compact", 0))

    flipped = shard(paths.range_group(1), "val")
    flip(flipped, 40)
    paths.manifest_file("interpret", 1).unlink()
    paths.records_file(1).unlink()
    with pytest.raises(StoreCorruptError, match=str(flipped)) as err:
        interpret.run(StageContext.of(cfg, paths, Task(1, 24, 32), lambda: False))  # in r00001
    assert "rerun compact task 1" in str(err.value)
    assert not paths.records_file(1).exists()
    assert not is_committed(paths.manifest_file("interpret", 1))


def test_launch_verify_checks_every_store_and_record_file(sweep, capsys):
    cfg, paths = sweep
    code, out = run_launch_verify(paths.root, capsys)
    assert code == 0 and "intact" in out, out
    assert "2 of 2 committed record files OK (0 of 2 interpret tasks not committed)" in out

    records = paths.records_file(1)
    records.write_bytes(records.read_bytes()[:-30])
    flipped = shard(paths.slice_group(0), "tok")
    flip(flipped, 40)
    code, out = run_launch_verify(paths.root, capsys)
    assert code == 1, out
    assert f"{records} has" in out and "truncated" in out and "rerun interpret task 1" in out
    assert str(flipped) in out and f"delete {paths.slice_group(0)}" in out
    assert f"{paths.manifest_file('collect', 0)}, then rerun collect task 0" in out
