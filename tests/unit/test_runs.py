from __future__ import annotations

import os
from pathlib import Path

import pytest

from interp.config import load_run_config
from interp.runs import (
    RunIds,
    RunPaths,
    atomic_dir,
    atomic_write_json,
    commit_task,
    is_committed,
    read_manifest,
    remove_stale_tmp,
)


def test_ids_follow_what_each_stage_computes() -> None:
    base = RunIds.of(load_run_config({}))
    interp_only = RunIds.of(load_run_config({"interpret": {"num_latents": 7}}))
    other_layer = RunIds.of(load_run_config({"layer": 9}))
    assert base == RunIds.of(load_run_config({}))  # same config, same ids
    assert (interp_only.train, interp_only.collect) == (base.train, base.collect)
    assert interp_only.interpret != base.interpret
    assert other_layer.data == base.data and other_layer.train != base.train
    assert other_layer.collect != base.collect  # inputs' ids propagate downstream


def test_paths_live_under_the_sweep_root(tmp_path: Path) -> None:
    cfg = load_run_config({"out_dir": str(tmp_path), "name": "s"})
    root = RunPaths.sweep_root(cfg)
    assert root == tmp_path / "s"
    paths = RunPaths(root, cfg)
    for p in (paths.sae_dir(), paths.slice_group(3), paths.records_file(2), paths.tokens_file()):
        assert root in p.parents
    assert paths.sae_dir().parts[-2:] == ("layers.15", "topk-x8-k32")


def test_atomic_dir_commits_only_on_success(tmp_path: Path) -> None:
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "half").write_text("x")
        raise RuntimeError("killed")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    with atomic_dir(final) as tmp:
        (tmp / "data").write_text("first")
    with atomic_dir(final) as tmp:  # a second attempt never replaces committed work
        (tmp / "data").write_text("second")
    assert (final / "data").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_stale_temporaries_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / "s00001.tmp-123-abcd").mkdir()
    (tmp_path / "x.json.tmp-local-0000").write_text("{")
    (tmp_path / "s00000").mkdir()
    assert remove_stale_tmp(tmp_path) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["s00000"]


def test_manifest_commit(tmp_path: Path) -> None:
    m = tmp_path / "manifest" / "00003.json"
    assert not is_committed(m) and read_manifest(m) is None
    commit_task(m, {"nnz": 5})
    assert is_committed(m) and read_manifest(m)["nnz"] == 5
    atomic_write_json(tmp_path / "a.json", {"b": 1})
    assert not [p for p in os.listdir(tmp_path) if ".tmp-" in p]
