"""Collect groups: one LM forward per slice feeds several dictionaries, each committed on
its own, and each store equals the store of that dictionary collected alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from interp.config import RunConfig, load_run_config
from interp.plan import intervals
from interp.runs import RunPaths, is_committed
from interp.stages.context import StageContext

pytestmark = pytest.mark.unit

WINDOWS = np.random.default_rng(0).integers(0, 4000, (16, 32))


def config(out_dir, *, layer: int, sae: dict, **top) -> RunConfig:
    return load_run_config(
        {
            "name": "c",
            "out_dir": str(out_dir),
            "layer": layer,
            "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
            "data": {"ctx_len": 32, "max_tokens": 8192, "exclude_first": 1},
            "train": {"num_tokens": 2048},
            "sae": {"expansion_factor": 2, **sae},
            "collect": {"num_tokens": 256, "slice_tokens": 128, "lm_batch_size": 3,
                        "range_latents": 512},
            **top,
        }
    )  # fmt: skip


def save_dictionary(cfg: RunConfig, seed: int) -> RunPaths:
    from interp.sae import build_sae, save_sae

    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    sae = build_sae(cfg.sae, 256, generator=torch.Generator().manual_seed(seed))
    if cfg.sae.architecture == "relu":
        with torch.no_grad():
            sae.encoder.bias.fill_(-0.15)  # a few active latents per token, varying
    save_sae(sae, paths.sae_dir())
    return paths


def read_slice(paths: RunPaths, index: int = 0) -> tuple[np.ndarray, ...]:
    """(offsets, token index, value) of one committed slice group, all latents."""
    from interp.store.compact import load_slices, merge_slices

    (info,) = load_slices([paths.slice_group(index)])
    csr = merge_slices([info], 0, 512)
    return csr.offsets, csr.tok, csr.val


@pytest.fixture()
def windows(monkeypatch):
    import interp.data

    monkeypatch.setattr(interp.data, "load_windows", lambda paths, split: WINDOWS)


def test_group_collect_equals_each_dictionary_alone(tmp_path, windows) -> None:
    from interp.stages import collect

    specs = [  # a residual TopK, a threshold ReLU one layer deeper, an MLP-input TopK
        {"layer": 1, "sae": {"k": 8}},
        {"layer": 2, "sae": {"architecture": "relu"}},
        {"layer": 0, "sae": {"k": 4}, "hook": "layers.0.mlp:input"},
    ]
    alone = [config(tmp_path / "alone", **s) for s in specs]
    grouped = [config(tmp_path / "group", **s) for s in specs]
    members = [(c, save_dictionary(c, i)) for i, c in enumerate(grouped)]
    solo = [(c, save_dictionary(c, i)) for i, c in enumerate(alone)]
    slices = intervals(256, 128)[:1]  # the group path is per task: one is enough here

    done = members[1]  # one member committed by an earlier attempt is not redone
    collect.run(StageContext.of(*done, slices[0], lambda: False))
    before = done[1].manifest_file("collect", 0).read_text()
    for task in slices:
        collect.run_group(members, task, lambda: False)
        for cfg, paths in solo:
            collect.run(StageContext.of(cfg, paths, task, lambda: False))
    assert done[1].manifest_file("collect", 0).read_text() == before
    for (_, g), (_, s) in zip(members, solo):
        assert is_committed(g.manifest_file("collect", 0))
        got, want = read_slice(g), read_slice(s)
        assert len(want[1]) > 0
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)
    offsets = read_slice(members[1][1])[0]  # the threshold dictionary: K varies by token
    assert offsets[-1] > 0


def test_stop_request_commits_no_member(tmp_path, windows) -> None:
    from interp.stages import collect

    members = [
        (c, save_dictionary(c, i))
        for i, c in enumerate(
            [config(tmp_path, layer=1, sae={"k": 8}), config(tmp_path, layer=3, sae={"k": 4})]
        )
    ]
    task = intervals(256, 128)[0]
    collect.run_group(members, task, lambda: True)
    for _, paths in members:
        assert not is_committed(paths.manifest_file("collect", 0))
        assert not paths.slice_group(0).exists()
