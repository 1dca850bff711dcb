"""The issue's check on pretrained dictionaries, shared by the e2e tier (cluster=local) and
the slurm tier (the real local SLURM): a sweep over two pretrained checkpoints (sparsify's
layout, SAELens') and one trained point, all on the tiny model at layer 2.

:func:`check_sweep`: no train job or folder for a pretrained point, one collect forward for
all points, exactly one record per selected latent, the table names each point's source,
the summary and the alignment compare the three.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "interop"
SPARSIFY = FIXTURES / "sparsify_tiny_topk"
SAELENS = FIXTURES / "saelens_tiny_jumprelu"
SOURCES = {str(SPARSIFY): "sparsify", str(SAELENS): "saelens"}
MIXED = [
    "-m", "experiment=pretrained_demo", "name=mixed", "sae=pretrained,topk",
    f"sae.path={SPARSIFY},{SAELENS}", "sae.expansion_factor=2", "sae.k=8",
    "interpret.latents=0:3",
]  # fmt: skip
"""2 pretrained points and 1 trained one (the topk point ignores sae.path, so its two
copies are one point; sae.k and sae.expansion_factor are for it)."""


def table(root: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(root / "gather" / "latents.parquet").to_pylist()


def points(root: Path) -> dict[str, dict]:
    files = (root / "points").glob("*/config.json")
    return {f.parent.name: json.loads(f.read_text()) for f in files}


def check_sweep(root: Path, jobs_dir: Path, sources: dict[str, str]) -> list[dict]:
    """See the module docstring; ``jobs_dir`` holds one folder per stage job (its key),
    ``sources`` maps each pretrained fixture path to its format. Returns the table."""
    cfgs = points(root)
    pretrained = {p for p, c in cfgs.items() if c["sae"]["architecture"] == "pretrained"}
    assert {cfgs[p]["sae"]["path"] for p in pretrained} == set(sources)
    trained = set(cfgs) - pretrained
    jobs = [d.name for d in jobs_dir.iterdir()]
    assert len([j for j in jobs if j.startswith("train-")]) == len(trained), jobs
    assert len([j for j in jobs if j.startswith("collect-")]) == 1, jobs  # one LM forward
    folders = [d.name for d in (root / "train").iterdir()] if (root / "train").exists() else []
    assert len([d for d in folders if d != "groups"]) == len(trained), folders
    rows = table(root)
    for pid, cfg in cfgs.items():
        mine = [r for r in rows if r["point"] == pid]
        assert sorted(r["latent"] for r in mine) == list(range(cfg["interpret"]["num_latents"]))
        path = cfg["sae"]["path"]
        want = (path, sources[path]) if pid in pretrained else ("trained", "")
        assert {(r["source"], r["source_format"]) for r in mine} == {want}
    summary = json.loads((root / "gather" / "summary.json").read_text())
    assert len(summary["points"]) == len(cfgs)
    assert {p["source"] for p in summary["points"]} == set(sources) | (
        {"trained"} if trained else set()
    )
    for p in summary["points"]:  # pretrained: figures measured on the collect tokens
        if p["source"] != "trained":
            d = p["dictionary"]
            assert d["fvu"] > 0 and d["l0"] > 0 and d["dead_pct"] is not None, d
            assert "collect tokens" in d["measured_on"], d
    return rows


def check_alignment(root: Path, n_points: int) -> None:
    """Every two dictionaries at the same hookpoint aligned (decoder cosine)."""
    index = json.loads((root / "gather" / "align" / "index.json").read_text())
    same = [p for p in index["pairs"] if p["kind"] == "same_layer"]
    assert len(same) == n_points * (n_points - 1) // 2, same
    assert all(p["status"] == "ok" for p in same), same
