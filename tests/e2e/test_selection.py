"""``interpret.latents`` through the command a user runs (experiment=tiny, the real
pipeline, the fast test LLM): a seeded sample of alive latents, then a list that
overlaps it in the same sweep folder, which reuses the sample's records instead of
redoing them; the gather reports both points, each against its own selection."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_pipeline import sweep

from interp.config import load_run_config
from interp.records import read_records
from interp.runs import RunPaths, read_manifest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _points(root: Path) -> dict[str, object]:
    cfgs = [load_run_config(json.loads(f.read_text())) for f in root.glob("points/*/config.json")]
    return {c.interpret.selection.canonical: c for c in cfgs}


def test_a_sample_then_an_overlapping_list_reuses_its_records(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    sweep(tmp_path, "interpret.latents=sample:4", "interpret.latents_seed=3")
    root = tmp_path / "e2e"
    sample_cfg = _points(root)["sample:4"]
    first = RunPaths(root, sample_cfg)
    manifests = [read_manifest(m) for m in sorted(first.manifest_dir("interpret").glob("*.json"))]
    picked = sorted(i for m in manifests for i in m["latents"])
    assert len(picked) == 4 and all(m["n_selected"] == 4 for m in manifests)
    records = {r.latent: r for i in range(2) for r in read_records(first.records_file(i))}
    assert sorted(records) == picked
    alive = sample_cfg.interpret.examples.min_examples
    assert all(r.n_active_tokens >= alive for r in records.values())  # only alive latents

    extra = min(set(range(6)) - set(picked))  # a latent the sample did not pick
    overlap = ",".join(map(str, sorted([*picked[:2], extra])))
    sweep(tmp_path, f'interpret.latents="{overlap}"')
    second = RunPaths(root, _points(root)[overlap])
    reused = [read_manifest(m)["reused"] for m in second.manifest_dir("interpret").glob("*.json")]
    assert sum(n for r in reused for n in r.values()) == sum(
        1 for i in picked[:2] if records[i].status != "error"
    )
    table = pq.read_table(root / "gather" / "latents.parquet").to_pylist()
    by_point: dict[str, list[int]] = {}
    for row in table:
        by_point.setdefault(row["point"], []).append(row["latent"])
    assert sorted(by_point[first.ids.point]) == picked
    assert sorted(by_point[second.ids.point]) == sorted([*picked[:2], extra])
    summary = json.loads((root / "gather" / "summary.json").read_text())
    assert {p["selection"] for p in summary["points"]} == {"sample:4", overlap}
    assert "selection `interpret.latents=sample:4`" in (root / "gather" / "summary.md").read_text()
