"""The scorer registry: what each built-in scorer declares, and what reads it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from interp.config import RunConfig, load_run_config
from interp.runs import RunPaths
from interp.score import ScorerSpec, get_scorer, scorer_names, scorer_spec, scorer_specs
from interp.score.config import ScorerConfig
from interp.score.intervention_spec import InterventionConfig
from interp.score.intruder import IntruderConfig
from interp.score.registry import BUILTIN, delphi_folders, headline_metric, reference_scorer
from interp.score.spec import load
from interp.stages.interpret import build_resources

pytestmark = pytest.mark.unit


def test_builtin_specs_say_what_the_closed_lists_said() -> None:
    assert scorer_names()[: len(BUILTIN)] == [
        "detection", "fuzzing", "fuzzing_active", "surprisal", "embedding", "intervention",
        "simulation", "intruder",
    ]  # fmt: skip
    assert {s.name: headline_metric(s.name) for s in BUILTIN} == {
        "detection": "balanced_accuracy", "fuzzing": "balanced_accuracy",
        "fuzzing_active": "balanced_accuracy", "intruder": "accuracy", "surprisal": "auroc",
        "embedding": "auroc", "simulation": "correlation", "intervention": "score",
    }  # fmt: skip
    assert delphi_folders() == {
        "detection": "detection", "fuzzing": "fuzz", "fuzzing_active": "fuzz_active"
    }  # fmt: skip
    assert reference_scorer() == "simulation"
    assert headline_metric("not_registered") is None


@pytest.mark.parametrize("spec", BUILTIN, ids=[s.name for s in BUILTIN])
def test_every_builtin_scorer_and_resource_loader_resolves(spec: ScorerSpec) -> None:
    assert callable(get_scorer(spec.name)) and scorer_spec(spec.name) is spec
    for name, ref in spec.resources.items():
        assert callable(load(ref, name))


def test_section_is_flat_and_each_scorer_reads_its_own_part() -> None:
    keys = [f.name for f in dataclasses.fields(ScorerConfig)]
    assert keys[:5] == [
        "names", "examples_per_prompt", "batch_read", "bootstrap_resamples", "confidence"
    ]  # fmt: skip
    assert {k for k in keys if k.startswith("intruder_")} == {
        "intruder_examples", "intruder_prompts", "intruder_source"
    }  # fmt: skip
    cfg = ScorerConfig(intruder_source="other_quantile", intervention_judge="pair")
    assert cfg.part(IntruderConfig) == IntruderConfig(source="other_quantile")
    assert cfg.part(InterventionConfig) == InterventionConfig(judge="pair")
    with pytest.raises(ValueError, match=r"scorer.names\[0\]='astrology' is not one of"):
        ScorerConfig(names=("astrology",))


def test_a_spec_refuses_a_reference_that_is_not_module_function() -> None:
    with pytest.raises(ValueError, match="scorer='score_x' is not 'module:function'"):
        ScorerSpec("x", "score_x", "auroc")
    with pytest.raises(ValueError, match="prefix='x' without a config"):
        ScorerSpec("x", "m:f", "auroc", prefix="x")


def _cfg(tmp_path, names: list[str]) -> RunConfig:
    return load_run_config({"out_dir": str(tmp_path), "scorer": {"names": names}})


def test_the_stage_offers_the_resources_its_scorers_declare(tmp_path) -> None:
    cfg = _cfg(tmp_path, ["detection"])
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    # the embedder stays: examples.negatives='similar' uses it without the scorer
    assert sorted(build_resources(cfg, paths).factories) == ["embedder"]
    cfg = _cfg(tmp_path, ["detection", "intervention"])
    assert sorted(build_resources(cfg, paths).factories) == ["embedder", "subject"]
    assert [s.name for s in scorer_specs(["intervention"])] == ["intervention"]


def test_report_plots_each_builtin_scorer_by_its_headline_and_a_plugin_by_its_own() -> None:
    from interp.report.sweepdata import LatentTable
    from interp.score import register_scorer, unregister_scorer

    metrics = {  # the numeric metrics each built-in scorer writes to the table
        "detection": ["auroc", "balanced_accuracy", "f1", "n"],
        "surprisal": ["auroc", "n", "n_failed"],
        "simulation": ["correlation", "correlation_active", "mean_prediction_active", "n"],
        "intervention": ["accuracy", "alpha", "kl", "score", "text_auroc", "n"],
        "intruder": ["accuracy", "chance", "mean_p_correct", "n"],
        "plugin": ["another", "toy_score", "n"],
    }
    cols = {f"scores.{s}.{m}": np.zeros(2) for s, ms in metrics.items() for m in ms}
    table = LatentTable(cols)
    for spec in BUILTIN:
        if spec.name in metrics:
            assert table.metric_of(spec.name) == spec.headline
    assert table.metric_of("plugin") == "another"  # unknown: its first metric
    register_scorer(ScorerSpec("plugin", "m:f", "toy_score"))
    try:
        assert table.metric_of("plugin") == "toy_score"
    finally:
        unregister_scorer("plugin")
