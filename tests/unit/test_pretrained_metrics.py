"""A pretrained point's dictionary figures (it has no training summary): collect keeps
its reconstruction sums per slice, gather turns them into FVU and mean L0 over the kept
collect tokens and reads dead % from the committed store, where the table, summary and
report read a trained point's figures. Each equals a direct computation with the
checkpoint loaded by the real reader; a trained point is untouched.

Checkpoints written by the real eai-sparsify (tests/fixtures/interop): a TopK SAE at
layers.2 and a transcoder layers.1.mlp:input -> layers.1.mlp, on model=tiny-random-llama.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from interp.config import RunConfig, load_run_config
from interp.plan import intervals
from interp.pretrained_point import resolve_points
from interp.runs import RunPaths

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
SPARSIFY = FIXTURES / "sparsify_tiny_topk"
TRANSCODER = FIXTURES / "sparsify_tiny_transcoder"
WINDOWS = np.random.default_rng(0).integers(0, 4000, (16, 32))
N_TOKENS = 256  # 8 windows of 32, in 2 slices
EXCLUDE = 1


def config(out_dir: Path, **over: object) -> RunConfig:
    raw = {
        "name": "m", "out_dir": str(out_dir), "layer": 2,
        "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
        "data": {"ctx_len": 32, "max_tokens": 8192, "exclude_first": EXCLUDE},
        "train": {"num_tokens": 2048},
        "collect": {"num_tokens": N_TOKENS, "slice_tokens": 128, "lm_batch_size": 3,
                    "range_latents": 512},
        **over,
    }  # fmt: skip
    return load_run_config(raw)


def pretrained(out_dir: Path, path: Path, **over: object) -> RunConfig:
    (cfg,), problems = resolve_points([config(out_dir, sae={"architecture": "pretrained",
                                                            "path": str(path)}, **over)])  # fmt: skip
    assert problems == []
    return cfg


@pytest.fixture()
def windows(monkeypatch):
    import interp.data

    monkeypatch.setattr(interp.data, "load_windows", lambda paths, split: WINDOWS)


def collect_all(members: list[tuple[RunConfig, RunPaths]]) -> None:
    from interp.stages import collect

    for task in intervals(N_TOKENS, 128):
        collect.run_group(members, task, lambda: False)


@torch.no_grad()
def direct(cfg: RunConfig, source: Path, hookpoint: str, target: str) -> dict[str, float]:
    """FVU, L0 and dead % of the checkpoint on the collect windows, computed here."""
    from interp.models import load_subject
    from interp.sae.pretrained import inspect_pretrained, load_pretrained

    sae = load_pretrained(inspect_pretrained(str(source), "auto", hookpoint))
    subject = load_subject(cfg.model, hookpoints=[hookpoint, target])
    got = subject.capture(torch.from_numpy(WINDOWS[: N_TOKENS // 32]))
    x = got[hookpoint][:, EXCLUDE:].reshape(-1, sae.d_in).double()
    y = got[target][:, EXCLUDE:].reshape(-1, sae.d_out).double()
    acts, idx = sae.encode(x.float())
    y_hat = sae.decode(acts, idx).double()
    fvu = float((y - y_hat).pow(2).sum() / (y - y.mean(0)).pow(2).sum())
    fired = torch.zeros(sae.num_latents, dtype=torch.bool)
    fired[idx[acts > 0]] = True
    l0 = float((acts > 0).sum()) / x.shape[0]
    return {"fvu": fvu, "l0": l0, "dead_pct": 100.0 * float((~fired).float().mean())}


def test_pretrained_figures_equal_a_direct_computation(tmp_path: Path, windows) -> None:
    from interp.gather.points import point_columns
    from interp.sae import build_sae, save_sae

    pre = pretrained(tmp_path, SPARSIFY)
    topk = config(tmp_path, sae={"expansion_factor": 2, "k": 8})
    topk_paths = RunPaths(tmp_path, topk)
    save_sae(build_sae(topk.sae, 256, generator=torch.Generator().manual_seed(0)),
             topk_paths.sae_dir())  # fmt: skip
    pre_paths = RunPaths(tmp_path, pre)
    collect_all([(pre, pre_paths), (topk, topk_paths)])  # one forward for both
    assert pre_paths.collect_recon_file(1).is_file()
    assert not topk_paths.collect_recon_file(0).exists()  # trained: train measured it
    cols = point_columns(tmp_path, pre)
    want = direct(pre, SPARSIFY, "layers.2", "layers.2")
    assert want["fvu"] > 0 and want["l0"] > 0 and 0 < want["dead_pct"] < 100
    for key in ("fvu", "l0", "dead_pct"):
        assert cols[key] == pytest.approx(want[key], rel=1e-5), key
    assert cols["measured_on"] == "256 collect tokens, positions >= 1 of each window"
    assert cols["ce_increase"] is None
    summary = json.loads(pre_paths.train_summary().read_text())  # what the report reads
    assert summary["fvu"] == cols["fvu"] and summary["eval_tokens"] == 8 * (32 - EXCLUDE)
    trained_cols = point_columns(tmp_path, topk)  # no training summary: still n/a
    assert trained_cols["fvu"] is None and "measured_on" not in trained_cols
    assert topk_paths.train_summary() == topk_paths.stage_dir("train") / "summary.json"


def test_a_pretrained_transcoder_is_measured_at_its_output(tmp_path: Path, windows) -> None:
    from interp.gather.points import point_columns

    cfg = pretrained(tmp_path, TRANSCODER, layer=1, hook="layers.1.mlp:input")
    assert cfg.target == "layers.1.mlp"
    collect_all([(cfg, RunPaths(tmp_path, cfg))])
    cols = point_columns(tmp_path, cfg)
    want = direct(cfg, TRANSCODER, "layers.1.mlp:input", "layers.1.mlp")
    for key in ("fvu", "l0", "dead_pct"):
        assert cols[key] == pytest.approx(want[key], rel=1e-5), key
    summary = json.loads(RunPaths(tmp_path, cfg).train_summary().read_text())
    assert summary["target_hookpoint"] == "layers.1.mlp"


def test_slices_without_sums_read_as_not_measured_with_why(tmp_path: Path, windows) -> None:
    from interp.gather.points import point_columns

    cfg = pretrained(tmp_path, SPARSIFY)
    paths = RunPaths(tmp_path, cfg)
    collect_all([(cfg, paths)])
    paths.collect_recon_file(0).unlink()  # e.g. collected before sums were kept
    cols = point_columns(tmp_path, cfg)
    assert cols["fvu"] is None and cols["l0"] is None and cols["dead_pct"] is not None
    summary = json.loads(paths.train_summary().read_text())
    assert "rerun collect" in summary["fvu_na"]
