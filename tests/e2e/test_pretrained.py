"""Interpreting dictionaries someone else trained, end to end through the user's command
(submitit's local executor): ``experiment=pretrained_demo`` (a sparsify-layout checkpoint
on the tiny model, the fast test LLM), and the issue's check: two pretrained checkpoints
(sparsify, SAELens) and one trained point in one sweep.

No train job for a pretrained point, every selected latent has exactly one record, the
table names each point's source, the report compares the points.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "pretrained"
SPARSIFY = FIXTURES / "sparsify_run"
SAELENS = FIXTURES / "saelens_relu"
pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MIXED = [
    "-m", "experiment=pretrained_demo", "name=mixed", "sae=pretrained,topk",
    f"sae.path={SPARSIFY},{SAELENS}", "sae.expansion_factor=2", "sae.k=8",
    "interpret.num_latents=3",
]  # fmt: skip
"""The issue's sweep: 2 pretrained points and 1 trained one (the topk point ignores sae.path,
so its two copies are one point; sae.k/expansion_factor are for it)."""


def sweep(out_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "launch/sweep.py", *args, f"out_dir={out_dir}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    return proc


def table(root: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(root / "gather" / "latents.parquet").to_pylist()


def points(root: Path) -> dict[str, dict]:
    return {
        f.parent.name: json.loads(f.read_text()) for f in (root / "points").glob("*/config.json")
    }


def check_pretrained_sweep(root: Path, sources: dict[str, str]) -> list[dict]:
    """No train job or folder for the pretrained points, one record per selected latent,
    each point's source in the table; ``sources``: fixture path -> format."""
    cfgs = points(root)
    pretrained = {p for p, c in cfgs.items() if c["sae"]["architecture"] == "pretrained"}
    assert {cfgs[p]["sae"]["path"] for p in pretrained} == set(sources)
    trained = set(cfgs) - pretrained
    jobs = [d.name for d in (root / ".submitit").iterdir()]
    assert len([j for j in jobs if j.startswith("train-")]) == len(trained), jobs
    assert len([j for j in jobs if j.startswith("collect-")]) == 1, jobs  # one LM forward
    train_dirs = [d.name for d in (root / "train").iterdir()] if (root / "train").exists() else []
    assert len([d for d in train_dirs if d != "groups"]) == len(trained)
    rows = table(root)
    for pid, cfg in cfgs.items():
        mine = [r for r in rows if r["point"] == pid]
        assert sorted(r["latent"] for r in mine) == list(range(cfg["interpret"]["num_latents"]))
        want = (
            (cfg["sae"]["path"], sources[cfg["sae"]["path"]])
            if pid in pretrained
            else ("trained", "")
        )
        assert {(r["source"], r["source_format"]) for r in mine} == {want}
    return rows


def test_the_preset_interprets_a_sparsify_checkpoint(tmp_path: Path) -> None:
    sweep(tmp_path, "experiment=pretrained_demo")
    root = tmp_path / "pretrained_demo"
    check_pretrained_sweep(root, {str(SPARSIFY): "sparsify"})
    (pid,) = points(root)
    (src,) = (root / "pretrained").glob("*/source.json")
    assert json.loads(src.read_text())["format"] == "sparsify"
    summary = (root / "gather" / "summary.md").read_text()
    assert f"pretrained dictionary: {SPARSIFY} (sparsify)" in summary


def test_two_checkpoints_and_a_trained_point_in_one_sweep(tmp_path: Path) -> None:
    sweep(tmp_path, *MIXED)
    root = tmp_path / "mixed"
    check_pretrained_sweep(root, {str(SPARSIFY): "sparsify", str(SAELENS): "saelens"})
    summary = json.loads((root / "gather" / "summary.json").read_text())
    assert len(summary["points"]) == 3
    assert {p["source"] for p in summary["points"]} == {"trained", str(SPARSIFY), str(SAELENS)}
    index = json.loads((root / "gather" / "align" / "index.json").read_text())
    same_layer = [p for p in index["pairs"] if p["kind"] == "same_layer"]
    assert len(same_layer) == 3 and all(p["status"] == "ok" for p in same_layer), same_layer
