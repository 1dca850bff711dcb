"""Exports round-trip: what the delphi and Neuronpedia readers of the documented layouts
read back equals the sweep table it was written from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.report import export
from interp.report.table import TableWriter, read_record_file, with_point_columns

POINTS = [
    {"point": "aaaa1111", "model": "smollm2-135m", "layer": 6, "hookpoint": "layers.6",
     "sae_id": "topk-x8-k32", "architecture": "topk", "explainer_model": "qwen"},
    {"point": "bbbb2222", "model": "smollm2-135m", "layer": 6, "hookpoint": "layers.6",
     "sae_id": "topk-x8-k32", "architecture": "topk", "explainer_model": "smol"},
]  # fmt: skip


def per_quantile(n_correct_pos: int, n_correct_neg: int) -> list[dict]:
    return [
        {"quantile": 0, "n": 4, "accuracy": n_correct_pos / 4},
        {"quantile": -1, "n": 4, "accuracy": n_correct_neg / 4},
    ]


def make_table(tmp_path: Path) -> Path:
    writer = TableWriter(tmp_path / "parts")
    for k, point in enumerate(POINTS):
        recs = [
            {"latent": 0, "status": "ok", "explanation": 'the word "cat"',
             "scores": {"detection": {"balanced_accuracy": 0.75, "auroc": 0.8,
                                      "per_quantile": per_quantile(3, 3)},
                        "fuzzing": {"balanced_accuracy": 0.5, "auroc": None,
                                    "per_quantile": per_quantile(4, 0)},
                        "surprisal": {"auroc": 0.6},
                        "simulation": {"correlation": 0.3, "correlation_ci": [0.1, 0.5],
                                       "per_quantile": [{"quantile": 0, "n": 3,
                                                         "correlation": 0.2}]}}},
            {"latent": 1, "status": "too_rare", "explanation": None, "scores": {}},
            {"latent": 2, "status": "explain_failed", "explanation": "garbled", "scores": {}},
            {"latent": 3, "status": "ok", "explanation": "chiens · 犬", "scores": {}},
        ]  # fmt: skip
        path = tmp_path / f"r{k}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
        writer.add(with_point_columns(read_record_file(path, 0, 4), point))
    writer.commit(tmp_path / "latents.parquet")
    return tmp_path / "latents.parquet"


@pytest.fixture
def exported(tmp_path: Path) -> Path:
    table = make_table(tmp_path)
    export.write_exports(table, tmp_path / "export", POINTS)
    return tmp_path / "export"


def test_delphi_layout_reads_back(exported: Path) -> None:
    index = json.loads((exported / "index.json").read_text())
    run = exported / index["delphi"]["aaaa1111"]["dir"]
    got = export.read_delphi(run)
    assert got["explanations"] == {
        "layers.6_latent0": 'the word "cat"',
        "layers.6_latent2": "garbled",
        "layers.6_latent3": "chiens · 犬",
    }
    assert set(got["scores"]) == {"detection", "fuzz"}  # delphi's classifier scorers only
    det = got["scores"]["detection"]["layers.6_latent0"]
    assert len(det) == 8
    assert set(det[0]) == {"str_tokens", "activations", "distance", "activating",
                           "prediction", "probability", "correct"}  # fmt: skip
    # delphi's confusion matrix from these rows is interp's: balanced accuracy 0.75
    tp = sum(e["activating"] and e["prediction"] for e in det)
    tn = sum(not e["activating"] and not e["prediction"] for e in det)
    assert (tp / 4 + tn / 4) / 2 == 0.75
    assert all(e["correct"] == (e["prediction"] == e["activating"]) for e in det)
    fuzz = got["scores"]["fuzz"]["layers.6_latent0"]
    assert all(e["prediction"] for e in fuzz)  # 4/4 positives right, 0/4 negatives
    # byte for byte what delphi's orjson.dumps writes: compact, raw UTF-8
    assert (run / "explanations/layers.6_latent3.txt").read_bytes() == '"chiens · 犬"'.encode()
    assert b", " not in (run / "scores/detection/layers.6_latent0.txt").read_bytes()
    cfg = json.loads((run / "run_config.json").read_text())
    assert cfg["hookpoints"] == ["layers.6"] and cfg["scorers"] == ["detection", "fuzz"]


def test_neuronpedia_layout_reads_back(exported: Path) -> None:
    index = json.loads((exported / "index.json").read_text())["neuronpedia"]
    # two points share layer and dictionary: their source ids get the point id
    assert index["aaaa1111"]["sourceId"] == "6-topk-x8-k32-aaaa1111"
    src = exported / "neuronpedia" / "smollm2-135m" / "6-topk-x8-k32-aaaa1111"
    got = export.read_neuronpedia(src)
    expl, second = got["explanations"]  # only the ok latents, in index order
    assert second["index"] == "3" and second["description"] == "chiens · 犬"
    assert expl["index"] == "0" and expl["description"] == 'the word "cat"'
    assert expl["modelId"] == "smollm2-135m" and expl["layer"] == "6-topk-x8-k32-aaaa1111"
    assert expl["explanationModelName"] == "qwen"
    scores = {s["explanationScoreTypeName"]: s for s in got["explanation_scores"]}
    assert {k: s["value"] for k, s in scores.items()} == {
        "interp_detection": 0.75,
        "interp_fuzzing": 0.5,
        "interp_surprisal": 0.6,
        "interp_simulation": 0.3,
    }
    assert len(got["explanation_scores"]) == 4  # latent 3 has no scores
    assert all(s["explanationId"] == expl["id"] for s in scores.values())
    assert json.loads(scores["interp_detection"]["jsonDetails"])["auroc"] == 0.8
    types = [json.loads(x) for x in (exported / "neuronpedia/config/explanation_score_type.jsonl").read_text().splitlines()]  # fmt: skip
    assert {t["name"] for t in types} == set(scores)


def test_neuronpedia_batches_hold_1024_explanations(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(export, "NEURONPEDIA_BATCH", 1)
    table = make_table(tmp_path)
    export.write_exports(table, tmp_path / "export", POINTS, formats=("neuronpedia",))
    src = tmp_path / "export/neuronpedia/smollm2-135m/6-topk-x8-k32-bbbb2222"
    names = sorted(p.name for p in (src / "explanations").iterdir())
    assert names == ["batch-0.jsonl.gz", "batch-1.jsonl.gz"]
    got = export.read_neuronpedia(src)
    assert [e["index"] for e in got["explanations"]] == ["0", "3"]
    assert len(got["explanation_scores"]) == 4


def test_exports_replace_the_previous_folder_whole(exported: Path) -> None:
    stale = exported / "delphi" / "stale.txt"
    stale.write_text("old")
    table = exported.parent / "latents.parquet"
    export.write_exports(table, exported, POINTS, formats=("delphi",))
    assert not stale.exists() and not (exported / "neuronpedia").exists()
    assert [p.name for p in exported.parent.iterdir() if ".tmp-" in p.name] == []
    with pytest.raises(ValueError, match="unknown export format"):
        export.write_exports(table, exported, POINTS, formats=("csv",))
