"""The whole pipeline, for real: SmolLM2-135M, the bundled corpus, Zarr on disk, the
fast test LLM, through the same command a user runs (submitit's local executor)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
OVERRIDES = ["experiment=tiny", "name=e2e"]


def sweep(out_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "launch/sweep.py", *OVERRIDES, f"out_dir={out_dir}", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("runs")
    return out, sweep(out)


def point_config(root: Path):
    from interp.config import load_run_config

    (cfg_file,) = (root / "points").glob("*/config.json")
    return load_run_config(json.loads(cfg_file.read_text()))


def test_every_latent_in_range_has_one_record(run) -> None:
    import pyarrow.parquet as pq

    out, proc = run
    root = out / "e2e"
    cfg = point_config(root)
    table = pq.read_table(root / "gather" / "latents.parquet").to_pylist()
    assert sorted(r["latent"] for r in table) == list(range(cfg.interpret.num_latents))
    statuses = {r["status"] for r in table}
    assert statuses <= {"ok", "too_rare", "skipped", "explain_failed", "error"}, statuses
    ok = [r for r in table if r["status"] == "ok"]
    assert ok, f"no latent was explained and scored: {statuses}"
    for r in ok:
        assert r["explanation"] and r["prompt_tokens"] > 0
        for scorer in ("detection", "fuzzing"):
            assert 0.0 <= r[f"scores.{scorer}.balanced_accuracy"] <= 1.0
            assert r[f"scores.{scorer}.n"] > 0
    for r in table:
        if r["status"] != "ok":
            assert r["error"] or r["status"] == "too_rare"
    assert "sweep folder" in proc.stdout
    # the job ends by saying what it found (the gather's summary) and where
    (p,) = json.loads((root / "gather" / "summary.json").read_text())["points"]
    assert f"{p['n_ok']}/{p['n_latents']} latents explained and scored" in proc.stdout
    det = p["scores"]["detection"]["balanced_accuracy"]
    assert f"detection balanced_accuracy: median {det['median']:.3f}" in proc.stdout
    assert re.search(r"report: +\S*gather/report/index\.html", proc.stdout), proc.stdout[-2000:]
    assert re.search(r"summary: +\S*gather/summary\.md", proc.stdout)


def test_gather_writes_the_report_dashboards_and_exports(run) -> None:
    out, _ = run
    gather = out / "e2e" / "gather"
    html = (gather / "report" / "index.html").read_text()
    assert "<img" in html and "detection" in html
    pages = list((gather / "report" / "latents").rglob("*.html"))
    assert pages, "no latent dashboard was written"
    assert (gather / "align" / "index.json").is_file()  # one point: nothing to pair, recorded
    assert (gather / "export" / "index.json").is_file()


def test_store_reads_equal_what_the_sae_produced(run) -> None:
    from interp.data import load_windows
    from interp.models import load_subject
    from interp.runs import RunPaths
    from interp.sae import load_sae
    from interp.stages.inputs import token_source
    from interp.store import StoreReader

    out, _ = run
    cfg = point_config(out / "e2e")
    paths = RunPaths(out / "e2e", cfg)
    windows = np.asarray(load_windows(token_source(paths), "collect")[: cfg.collect.lm_batch_size])
    subject = load_subject(cfg.model, cfg.layer)
    sae = load_sae(paths.sae_dir())
    with torch.inference_mode():
        acts = subject.hidden(torch.from_numpy(windows.astype(np.int64)))
        top_acts, top_idx = sae.encode(acts.reshape(-1, acts.shape[-1]))
    ctx = cfg.data.ctx_len
    pos = np.arange(windows.size) % ctx
    expected = {}
    for t in range(windows.size):
        if pos[t] < cfg.data.exclude_first:
            continue
        for v, latent in zip(top_acts[t].tolist(), top_idx[t].tolist()):
            if v > 0:
                expected[(t, latent)] = v
    reader = StoreReader(paths.store_dir())
    assert reader.n_tokens == cfg.collect.num_tokens
    np.testing.assert_array_equal(reader.token_ids()[: windows.size], windows.reshape(-1))
    csr = reader.latent_range(0, reader.n_latents)
    got = {}
    for latent in range(reader.n_latents):
        lo, hi = csr.offsets[latent], csr.offsets[latent + 1]
        for t, v in zip(csr.tok[lo:hi].tolist(), csr.val[lo:hi].tolist()):
            if t < windows.size:
                got[(t, latent)] = v
    assert got.keys() == expected.keys()
    keys = sorted(expected)
    np.testing.assert_allclose(
        [got[k] for k in keys], [expected[k] for k in keys], rtol=2e-3, atol=1e-3
    )


def test_second_run_does_no_committed_work(run) -> None:
    out, _ = run
    root = out / "e2e"
    manifests = sorted(root.rglob("manifest/*/*.json"))
    before = {m: m.read_text() for m in manifests}
    proc = sweep(out)
    assert {m: m.read_text() for m in sorted(root.rglob("manifest/*/*.json"))} == before
    assert proc.stderr.count("nothing to do") == 4, proc.stderr[-3000:]
    assert "gather is up to date" in proc.stderr
    assert not list(root.rglob("*.tmp-*"))
