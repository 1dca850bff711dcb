"""A scorer defined here, registered at run time, goes through the whole pipeline.

The proof that a new scorer is its own code plus one registration: the toy scorer below
(its function, config part, task-wide resource, headline metric and delphi folder) is
registered with ``register_scorer`` and nothing else is edited. The real interpret stage
runs it on a real Zarr store (LLM: the loopback fake of tests/fake_openai.py), the real
gather stage writes the sweep table, summary and exports, and the values the toy scorer
produced must be found in the records, summary.json, summary.md, the delphi export and
the Neuronpedia export.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fake_openai import FakeOpenAI
from interpret_point import N_LATENTS, interpret_point, write_store

from interp.config import RunConfig, load_run_config, to_dict
from interp.gather import outputs
from interp.models import hookpoint_width
from interp.plan import Task, plan_point
from interp.report.export import delphi_latent_name, read_delphi
from interp.report.summary import headline
from interp.runs import RunPaths, atomic_write_json, commit_task
from interp.score import (
    ResourceInputs,
    ScoreContext,
    ScorerSpec,
    register_scorer,
    unregister_scorer,
)
from interp.score.config import ScorerConfig
from interp.stages import gather, interpret
from interp.stages.context import StageContext

pytestmark = pytest.mark.unit

# --------------------------------------------------------------------------- the plugin


@dataclass(frozen=True)
class ToyConfig:
    """The toy scorer's own settings (registered at run time: its defaults)."""

    offset: float = field(default=0.25, metadata={"doc": "toy: added to every score."})


@dataclass
class ToyOutput:
    name: str
    values: dict[str, Any]

    def metrics(self) -> dict[str, Any]:
        return self.values


PRODUCED: dict[int, dict[str, Any]] = {}  # latent -> the metrics the toy scorer returned
LOADED: list[tuple[str, str]] = []  # (point id, dictionary folder) of each resource build


def load_counter(inputs: ResourceInputs) -> dict[str, int]:
    """The toy's task-wide resource: built once per interpret task, shared by latents."""
    LOADED.append((inputs.point, str(inputs.sae_dir)))
    return {"calls": 0}


async def score_toy(ctx: ScoreContext, explanation: str) -> ToyOutput:
    """Metrics from the latent, the explanation, the config part and the resource."""
    counter = ctx.resources.get("counter")
    counter["calls"] += 1
    offset = ctx.cfg.part(ToyConfig).offset
    n_active, n_inactive = len(ctx.examples.score_active), len(ctx.examples.score_inactive)
    values = {
        "toy_score": offset + ctx.latent / 10,
        "other": float(len(explanation)),  # not the headline: summary.md leaves it out
        "n": n_active + n_inactive,
        "per_quantile": [
            {"quantile": 1, "n": n_active, "accuracy": 1.0},
            {"quantile": -1, "n": n_inactive, "accuracy": 0.5},
        ],
    }
    PRODUCED[ctx.latent] = values
    return ToyOutput("toy", values)


TOY = ScorerSpec(
    "toy",
    f"{__name__}:score_toy",
    headline="toy_score",
    config=ToyConfig,
    prefix="toy",
    resources={"counter": f"{__name__}:load_counter"},
    delphi="toy_folder",
)


@pytest.fixture
def toy():
    PRODUCED.clear()
    LOADED.clear()
    register_scorer(TOY)
    yield TOY
    unregister_scorer("toy")


@pytest.fixture
def llm():
    s = FakeOpenAI()
    yield s
    s.close()


# --------------------------------------------------------------------------- the point


def toy_point(tmp_path: Path, url: str) -> tuple[RunConfig, RunPaths]:
    """One range of N_LATENTS scored by the toy only; every stage before interpret
    committed (its outputs are the store below), interpret left to run for real."""
    raw = to_dict(interpret_point(tmp_path, url, name="plugin"))
    raw["scorer"] = {"names": ["toy"]}
    raw["interpret"]["num_latents"] = N_LATENTS
    cfg = load_run_config(raw)
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    write_store(paths)
    atomic_write_json(paths.point_config(), to_dict(cfg))
    for job in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)):
        if job.stage != "interpret":
            for task in job.tasks:
                commit_task(paths.manifest_file(job.stage, task.index), {})
    return cfg, paths


def test_config_knows_a_registered_name_and_gives_the_part_its_defaults(toy) -> None:
    cfg = ScorerConfig(names=("detection", "toy"))
    assert cfg.part(ToyConfig) == ToyConfig()
    unregister_scorer("toy")
    with pytest.raises(ValueError, match=r"scorer.names\[1\]='toy' is not one of \['detection'"):
        ScorerConfig(names=("detection", "toy"))
    with pytest.raises(ValueError, match="already registered"):
        register_scorer(TOY)
        register_scorer(ScorerSpec("toy", "elsewhere:f", "auroc"))


def test_a_registered_scorer_runs_through_interpret_gather_and_exports(
    tmp_path: Path, llm, toy, monkeypatch
) -> None:
    cfg, paths = toy_point(tmp_path, llm.url)
    interpret.run(StageContext.of(cfg, paths, Task(0, 0, N_LATENTS), lambda: False))
    records = [json.loads(line) for line in paths.records_file(0).read_text().splitlines()]
    ok = {r["latent"]: r for r in records if r["status"] == "ok"}
    assert sorted(ok) == sorted(PRODUCED) and len(ok) >= 2, records
    # the record keeps what the scorer returned; its resource was built once for the task
    for latent, r in ok.items():
        assert r["scores"] == {"toy": PRODUCED[latent]}
        assert r["scores"]["toy"]["toy_score"] == pytest.approx(0.25 + latent / 10)
    assert [(paths.ids.point, str(paths.sae_dir()))] == LOADED

    monkeypatch.setattr(outputs, "AFTER_TABLE", ())  # no dictionary here to align or draw
    gather.run(StageContext(paths.root, Task(0, 0, 1)))
    out = paths.root / "gather"
    _check_summary(out, ok)
    _check_delphi(out / "export", paths, cfg, ok)
    _check_neuronpedia(out / "export", ok)


def _check_summary(out: Path, ok: dict[int, dict]) -> None:
    (point,) = json.loads((out / "summary.json").read_text())["points"]
    toy = point["scores"]["toy"]["toy_score"]
    values = sorted(r["scores"]["toy"]["toy_score"] for r in ok.values())
    assert toy["n"] == len(values) and toy["mean"] == pytest.approx(sum(values) / len(values))
    assert toy["min"] == pytest.approx(values[0]) and toy["max"] == pytest.approx(values[-1])
    markdown = (out / "summary.md").read_text()
    # the headline comes from the spec: toy_score, not the non-headline "other"
    assert f"| toy | toy_score | {len(values)} |" in markdown
    assert "| toy | other |" not in markdown
    assert headline("toy", {"other": 1.0, "toy_score": 0.5}) == "toy_score"


def _check_delphi(export: Path, paths: RunPaths, cfg: RunConfig, ok: dict[int, dict]) -> None:
    run = export / "delphi" / paths.ids.point
    assert json.loads((run / "run_config.json").read_text())["scorers"] == ["toy_folder"]
    files = read_delphi(run)["scores"]["toy_folder"]
    assert len(files) == len(ok)
    for latent, r in ok.items():
        examples = files[delphi_latent_name(cfg.hookpoint, latent)]
        for q in r["scores"]["toy"]["per_quantile"]:
            mine = [e for e in examples if e["distance"] == q["quantile"]]
            assert len(mine) == q["n"]
            assert sum(e["correct"] for e in mine) == round(q["n"] * q["accuracy"])


def _check_neuronpedia(export: Path, ok: dict[int, dict]) -> None:
    (batch,) = (export / "neuronpedia").glob("*/*/explanation_scores/batch-*.jsonl.gz")
    with gzip.open(batch, "rt") as f:
        rows = [json.loads(line) for line in f]
    found = {int(r["explanationId"].rsplit("-", 1)[1]): r["value"] for r in rows}
    expected = {latent: r["scores"]["toy"]["toy_score"] for latent, r in ok.items()}
    assert found == pytest.approx(expected)
    assert {r["explanationScoreTypeName"] for r in rows} == {"interp_toy"}
