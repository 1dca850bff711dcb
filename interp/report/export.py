"""Exports of explanations and scores in two outside layouts, from the sweep table.

Both are written from ``latents.parquet`` one row group at a time, into a temporary
folder that replaces ``gather/export/`` at the end (the README section "Exports" is the
user-facing description of both layouts).

delphi (EleutherAI/delphi ``main`` @ 3c2e139, v0.1.1; ``delphi/__main__.py`` and
``delphi/log/result_analysis.py``), one run folder per sweep point::

    delphi/<point>/run_config.json
    delphi/<point>/explanations/<hookpoint>_latent<i>.txt       JSON string
    delphi/<point>/scores/<scorer>/<hookpoint>_latent<i>.txt    JSON list, one object per
        example: str_tokens, activations, distance, activating, prediction, probability,
        correct (delphi's ClassifierOutput)

  Only the classifier scorers (detection, fuzzing, active fuzzing) have delphi score
  files; their folders use delphi's names (``fuzz`` for fuzzing). interp's records keep
  per-quantile counts, not per-example outcomes, so score files are rebuilt from
  ``per_quantile``: one object per scored example with its quantile as ``distance``
  (-1 = non-activating), ``activating``, ``prediction`` and ``correct`` exact as counts;
  ``str_tokens``/``activations`` are empty and ``probability`` is null. delphi's
  ``log_results`` confusion matrix, balanced accuracy and F1 come out as interp's.

Neuronpedia (hijohnnylin/neuronpedia @ ebb8426f, 2026-08-20: the v1 dataset layout
written by ``utils/neuronpedia-utils/export-data.py`` and read by
``apps/webapp/app/api/admin/import/route.ts``; rows are the Prisma ``Explanation`` and
``ExplanationScore`` tables)::

    neuronpedia/config/explanation_type.jsonl, explanation_model_type.jsonl,
                       explanation_score_type.jsonl, explanation_score_model.jsonl
    neuronpedia/<modelId>/<sourceId>/explanations/batch-<n>.jsonl.gz
    neuronpedia/<modelId>/<sourceId>/explanation_scores/batch-<n>.jsonl.gz

  1024 rows per batch ordered by feature index; ``sourceId`` is ``<layer>-<sae_id>``
  (Neuronpedia's "layer" of a feature). One explanation per latent whose status is ok;
  one score row per scorer with its headline value (``interp.report.summary.HEADLINE``)
  and the full metrics as ``jsonDetails``.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interp.records import score_column
from interp.report.summary import headline
from interp.report.table import iter_batches
from interp.runs import tmp_name

DELPHI_SCORER_NAMES = {"detection": "detection", "fuzzing": "fuzz", "fuzzing_active": "fuzz_active"}
"""interp's classifier scorers -> delphi's score folder; only these have delphi score files
(delphi's fuzzing folder is ``fuzz`` whatever its fuzz_type; active fuzzing gets its own)."""
NEURONPEDIA_BATCH = 1024
AUTHOR_ID = "interp"
"""Neuronpedia ``authorId`` / ``creatorId`` placeholder: replace with the importing user's
id (Neuronpedia's own exports use a DEFAULT_CREATOR_ID the same way)."""
FORMATS = ("delphi", "neuronpedia")


def write_exports(
    table: Path, out: Path, points: list[dict[str, Any]], formats: tuple[str, ...] = FORMATS
) -> None:
    """Write the requested layouts of sweep table ``table`` into folder ``out``, replacing
    it whole once everything is written."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)}; choose from {FORMATS}")
    tmp = tmp_name(out)
    tmp.mkdir(parents=True)
    try:
        index: dict[str, Any] = {}
        if "delphi" in formats:
            index["delphi"] = export_delphi(table, tmp / "delphi", points)
        if "neuronpedia" in formats:
            index["neuronpedia"] = export_neuronpedia(table, tmp / "neuronpedia", points)
        (tmp / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_dir(new: Path, final: Path) -> None:
    if final.exists():
        old = tmp_name(final)
        os.rename(final, old)
        os.rename(new, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(new, final)


def _rows(table: Path, columns: list[str]) -> Iterator[dict[str, Any]]:
    for batch in iter_batches(table, columns):
        yield from batch.to_pylist()


def _scorers(table: Path, kind: str = "scores") -> list[str]:
    import pyarrow.parquet as pq

    names = pq.ParquetFile(table).schema_arrow.names
    return sorted(
        {n.split(".")[1] for n in names if n.startswith(kind + ".") and n.count(".") >= 2}
    )


def _metrics(row: dict[str, Any], scorer: str) -> dict[str, Any]:
    prefix = score_column("scores", scorer, "")
    return {k[len(prefix) :]: v for k, v in row.items() if k.startswith(prefix)}


# ----------------------------------------------------------------------------- delphi


def delphi_latent_name(hookpoint: str, latent: int) -> str:
    """delphi's ``str(Latent)``: ``<module>_latent<index>`` ('/' made safe as delphi does)."""
    return f"{hookpoint}_latent{latent}".replace("/", "--")


def delphi_examples(per_quantile: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """delphi ClassifierOutput objects rebuilt from per-quantile counts (see the module)."""
    out = []
    for q in per_quantile or []:
        if not q.get("n") or q.get("accuracy") is None:
            continue
        activating = q["quantile"] >= 0
        n_correct = round(q["n"] * q["accuracy"])
        for i in range(q["n"]):
            correct = i < n_correct
            out.append(
                {
                    "str_tokens": [],
                    "activations": [],
                    "distance": q["quantile"],
                    "activating": activating,
                    "prediction": activating if correct else not activating,
                    "probability": None,
                    "correct": correct,
                }
            )
    return out


def export_delphi(table: Path, out: Path, points: list[dict[str, Any]]) -> dict[str, Any]:
    """One delphi run folder per point; returns {point: folder and counts}."""
    scorers = [s for s in _scorers(table) if s in DELPHI_SCORER_NAMES]
    cols = ["point", "latent", "hookpoint", "explanation"]
    cols += [score_column("scores", s, "per_quantile") for s in scorers]
    by_id = {p["point"]: p for p in points}
    index: dict[str, Any] = {}
    for p in points:
        run = out / p["point"]
        (run / "explanations").mkdir(parents=True)
        for s in scorers:
            (run / "scores" / DELPHI_SCORER_NAMES[s]).mkdir(parents=True)
        config = {
            "model": p["model"],
            "sparse_model": p["sae_id"],
            "hookpoints": [p["hookpoint"]],
            "explainer_model": p["explainer_model"],
            "scorers": [DELPHI_SCORER_NAMES[s] for s in scorers],
            "name": p["point"],
            "constructor_cfg": {},
            "interp": {k: p.get(k) for k in ("architecture", "layer", "sae_id", "point")},
        }
        (run / "run_config.json").write_text(json.dumps(config, indent=2) + "\n")
        index[p["point"]] = {"dir": f"delphi/{p['point']}", "explanations": 0, "scores": {}}
    for row in _rows(table, cols):
        if row["point"] not in by_id:  # a point left out of this export
            continue
        entry = index[row["point"]]
        run = out / row["point"]
        name = delphi_latent_name(by_id[row["point"]]["hookpoint"], row["latent"])
        if row.get("explanation") is not None:
            (run / "explanations" / f"{name}.txt").write_bytes(_orjson_like(row["explanation"]))
            entry["explanations"] += 1
        for s in scorers:
            pq_ = row.get(score_column("scores", s, "per_quantile"))
            if pq_:
                folder = DELPHI_SCORER_NAMES[s]
                (run / "scores" / folder / f"{name}.txt").write_bytes(
                    _orjson_like(delphi_examples(pq_))
                )
                entry["scores"][folder] = entry["scores"].get(folder, 0) + 1
    return index


def _orjson_like(obj: Any) -> bytes:
    """JSON as delphi writes it (``orjson.dumps``): compact, UTF-8, no escapes."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def read_delphi(run: Path) -> dict[str, Any]:
    """Read a delphi run folder the way delphi does: ``{"explanations": {latent name:
    str}, "scores": {scorer: {latent name: [example dict]}}}``."""
    out: dict[str, Any] = {"explanations": {}, "scores": {}}
    for f in sorted((run / "explanations").glob("*.txt")):
        out["explanations"][f.stem] = json.loads(f.read_bytes())
    for d in sorted((run / "scores").iterdir()) if (run / "scores").is_dir() else []:
        out["scores"][d.name] = {f.stem: json.loads(f.read_bytes()) for f in d.glob("*.txt")}
    return out


# ----------------------------------------------------------------------------- neuronpedia


def source_ids(points: list[dict[str, Any]]) -> dict[str, str]:
    """Neuronpedia source ("layer") id of each point: ``<layer>-<sae_id>``, with the point
    id appended where two points would share one."""
    base = {p["point"]: f"{p['layer']}-{p['sae_id']}" for p in points}
    clash = {v for v in base.values() if list(base.values()).count(v) > 1}
    return {k: f"{v}-{k[:8]}" if v in clash else v for k, v in base.items()}


def score_type_name(scorer: str) -> str:
    return f"interp_{scorer}"


def export_neuronpedia(table: Path, out: Path, points: list[dict[str, Any]]) -> dict[str, Any]:
    """Neuronpedia's import layout; returns {point: model/source ids and counts}."""
    scorers = _scorers(table)
    sources = source_ids(points)
    by_id = {p["point"]: p for p in points}
    _write_neuronpedia_config(out / "config", scorers, points)
    cols = ["point", "latent", "status", "explanation"]
    cols += [score_column("scores", s, m) for s in scorers for m in _metric_names(table, s)]
    index = {
        p["point"]: {"modelId": p["model"], "sourceId": sources[p["point"]], "explanations": 0}
        for p in points
    }
    batches: dict[str, _Batcher] = {}
    for row in _rows(table, cols):
        point = by_id.get(row["point"])
        if point is None or row["status"] != "ok" or not row.get("explanation"):
            continue
        folder = out / point["model"] / sources[row["point"]]
        if row["point"] not in batches:
            batches[row["point"]] = _Batcher(folder)
        expl = neuronpedia_explanation(row, point, sources[row["point"]])
        scores = [
            neuronpedia_score(expl["id"], s, _metrics(row, s), point["explainer_model"])
            for s in scorers
        ]
        batches[row["point"]].add(expl, [s for s in scores if s is not None])
        index[row["point"]]["explanations"] += 1
    for b in batches.values():
        b.close()
    return index


def neuronpedia_explanation(row: dict[str, Any], point: dict[str, Any], source: str) -> dict:
    """One row of Neuronpedia's ``Explanation`` table."""
    return {
        "id": f"interp-{row['point']}-{row['latent']}",
        "modelId": point["model"],
        "layer": source,
        "index": str(row["latent"]),
        "authorId": AUTHOR_ID,
        "description": row["explanation"],
        "typeName": "interp",
        "explanationModelName": point["explainer_model"],
    }


def neuronpedia_score(
    explanation_id: str, scorer: str, metrics: dict[str, Any], model: str
) -> dict[str, Any] | None:
    """One row of ``ExplanationScore``; None when the scorer reported no headline value."""
    name = headline(scorer, metrics)
    value = metrics.get(name) if name else None
    if not isinstance(value, (int, float)):
        return None
    return {
        "id": f"{explanation_id}-{scorer}",
        "value": float(value),
        "explanationId": explanation_id,
        "explanationScoreTypeName": score_type_name(scorer),
        "explanationScoreModelName": model,
        "initiatedByUserId": AUTHOR_ID,
        "jsonDetails": json.dumps(metrics, sort_keys=True),
    }


def _metric_names(table: Path, scorer: str) -> list[str]:
    import pyarrow.parquet as pq

    prefix = score_column("scores", scorer, "")
    return [
        n[len(prefix) :] for n in pq.ParquetFile(table).schema_arrow.names if n.startswith(prefix)
    ]


class _Batcher:
    """batch-<n>.jsonl.gz files of NEURONPEDIA_BATCH explanations (and their scores)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.n = folder, 0
        self.expl: list[dict] = []
        self.scores: list[dict] = []
        (folder / "explanations").mkdir(parents=True)
        (folder / "explanation_scores").mkdir(parents=True)

    def add(self, explanation: dict, scores: list[dict]) -> None:
        self.expl.append(explanation)
        self.scores += scores
        if len(self.expl) >= NEURONPEDIA_BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.expl:
            return
        for sub, rows in (("explanations", self.expl), ("explanation_scores", self.scores)):
            data = "".join(json.dumps(r) + "\n" for r in rows).encode()
            (self.folder / sub / f"batch-{self.n}.jsonl.gz").write_bytes(
                gzip.compress(data, compresslevel=5)
            )
        self.n, self.expl, self.scores = self.n + 1, [], []

    def close(self) -> None:
        self.flush()


def _write_neuronpedia_config(
    folder: Path, scorers: list[str], points: list[dict[str, Any]]
) -> None:
    """The rows Neuronpedia's config import upserts, so the exported rows' foreign keys
    (typeName, explanationModelName, explanationScoreTypeName/ModelName) resolve."""
    folder.mkdir(parents=True)
    creator = {"creatorName": "interp", "creatorId": AUTHOR_ID}
    models = sorted({p["explainer_model"] for p in points})
    # the explainer is the scorer too: the same model rows serve both tables
    model_rows = [
        {"name": m, "displayName": m, "description": m, "featured": False, "creatorName": "interp"}
        for m in models
    ]
    tables = {
        "explanation_type": [
            {
                "name": "interp",
                "displayName": "interp",
                "featured": False,
                "isAttention": False,
                "description": "interp's explainer (quantile-sampled activating examples)",
                **creator,
            }
        ],  # fmt: skip
        "explanation_model_type": model_rows,
        "explanation_score_type": [
            {
                "name": score_type_name(s),
                "displayName": f"interp {s}",
                "featured": False,
                "isAttention": False,
                "description": f"interp's {s} scorer",
                **creator,
            }
            for s in scorers
        ],  # fmt: skip
        "explanation_score_model": model_rows,
    }
    for name, rows in tables.items():
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def read_neuronpedia(folder: Path) -> dict[str, Any]:
    """Read an exported Neuronpedia source folder as its importer does: every
    ``batch-<n>.jsonl.gz`` of ``explanations/`` and ``explanation_scores/``, in batch
    order, one JSON object per line."""
    out: dict[str, Any] = {}
    for sub in ("explanations", "explanation_scores"):
        files = sorted(
            (folder / sub).glob("batch-*.jsonl.gz"),
            key=lambda f: int(f.name.split("-")[1].split(".")[0]),
        )
        out[sub] = [
            json.loads(line) for f in files for line in gzip.decompress(f.read_bytes()).splitlines()
        ]
    return out
