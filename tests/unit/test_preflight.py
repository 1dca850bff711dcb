"""Mistakes caught before anything is recorded or submitted: one check each, the key named.

Every check runs on the real tiny offline model (config and module tree on the meta
device, its real tokenizer), real files and globs, and the real sweep command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from interp.config import RunConfig, load_run_config
from interp.preflight import PreflightError, point_problems, preflight
from interp.runs import RunPaths
from slurm.submit import check_cluster, run_points

ROOT = Path(__file__).resolve().parents[2]
TINY = "tiny-random-llama"  # 4 layers, d_model 256, MLP 512


def cfg(tmp_path: Path, **over: object) -> RunConfig:
    raw = {"name": "s", "out_dir": str(tmp_path), "model": {"name": TINY}, "layer": 2, **over}
    raw["llm"] = {"model": TINY, **raw.get("llm", {})}  # type: ignore[dict-item]
    return load_run_config(raw)


def problems(c: RunConfig, **environ: str) -> list[str]:
    return point_problems(c, environ)


def only_problem(c: RunConfig, **environ: str) -> str:
    (problem,) = problems(c, **environ)
    return problem


def test_a_good_point_passes(tmp_path: Path) -> None:
    assert problems(cfg(tmp_path)) == []
    assert problems(cfg(tmp_path, hook="layers.3.mlp.down_proj:input")) == []
    preflight([cfg(tmp_path), cfg(tmp_path, layer=3)])


def test_a_layer_past_the_model_names_layer_and_the_range(tmp_path: Path) -> None:
    assert only_problem(cfg(tmp_path, layer=99)).startswith(
        "layer=99 is past the last decoder layer of tiny-random-llama (layers 0..3): set layer=0..3"
    )


def test_an_unknown_hookpoint_names_hook_and_the_real_modules(tmp_path: Path) -> None:
    msg = only_problem(cfg(tmp_path, hook="layers.1.mlpp"))
    assert msg.startswith("hook='layers.1.mlpp' is not a module of tiny-random-llama: set hook=")
    assert "layers.{0..3}.mlp" in msg
    msg = only_problem(
        cfg(
            tmp_path,
            hook="layers.1.mlp:input",
            target_hookpoint="layers.1.mlp.nope",
            sae={"transcode": True},
        )
    )
    assert msg.startswith("target_hookpoint='layers.1.mlp.nope' is not a module")


def test_k_at_or_past_the_dictionary_width_names_sae_k(tmp_path: Path) -> None:
    msg = only_problem(cfg(tmp_path, sae={"k": 1024, "expansion_factor": 4}))
    assert msg.startswith("sae.k=1024 must be smaller than the dictionary's 1024 latents")
    assert problems(cfg(tmp_path, sae={"k": 1023, "expansion_factor": 4})) == []
    neurons = {"architecture": "neurons", "expansion_factor": 1, "k": 512}
    msg = only_problem(cfg(tmp_path, hook="layers.1.mlp.down_proj:input", sae=neurons))
    assert msg.startswith("sae.k=512 must be smaller than the 512 neurons")
    jump = {"architecture": "jumprelu", "sparsity_loss": "target_l0", "target_l0": 300.0,
            "num_latents": 256}  # fmt: skip
    assert only_problem(cfg(tmp_path, sae=jump)).startswith("sae.target_l0=300 must be smaller")


def test_a_model_that_does_not_resolve_names_model_name(tmp_path: Path) -> None:
    msg = only_problem(cfg(tmp_path, model={"name": "nobody/no-such-model"}))
    assert msg.startswith("model.name='nobody/no-such-model' cannot be resolved")
    empty = tmp_path / "empty-model"
    empty.mkdir()
    msg = only_problem(cfg(tmp_path, model={"name": str(empty)}))
    assert msg.startswith(f"model.name='{empty}' cannot be resolved") and "config.json" in msg
    encoder = tmp_path / "encoder-model"  # resolves, but has no decoder layers to hook
    encoder.mkdir()
    bert = {"model_type": "bert", "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 64, "vocab_size": 100}  # fmt: skip
    (encoder / "config.json").write_text(json.dumps(bert))
    msg = only_problem(cfg(tmp_path, model={"name": str(encoder)}))
    assert msg.startswith(f"model.name='{encoder}' does not build as a causal LM with decoder")


def test_an_llm_that_does_not_resolve_names_llm_model(tmp_path: Path) -> None:
    msg = only_problem(cfg(tmp_path, llm={"model": "nobody/no-such-llm"}))
    assert msg.startswith("llm.model='nobody/no-such-llm' cannot be resolved")
    served = {"backend": "http", "model": "any/served-name", "base_urls": ["http://h:1/v1"]}
    assert problems(cfg(tmp_path, llm=served)) == []  # over HTTP it is only a name sent


def test_a_tokenizer_that_does_not_load_names_llm_tokenizer(tmp_path: Path) -> None:
    http = {"backend": "http", "base_urls": ["http://h:1/v1"]}
    msg = only_problem(cfg(tmp_path, llm={**http, "tokenizer": "nobody/no-such-tokenizer"}))
    assert msg.startswith("llm.tokenizer='nobody/no-such-tokenizer' cannot be loaded")
    assert problems(cfg(tmp_path, llm={**http, "tokenizer": TINY})) == []


def test_an_unset_api_key_variable_names_llm_api_key_env(tmp_path: Path) -> None:
    http = {"backend": "http", "base_urls": ["http://h:1/v1"], "api_key_env": "MY_TEST_KEY"}
    msg = only_problem(cfg(tmp_path, llm=http))
    assert msg.startswith("llm.api_key_env=MY_TEST_KEY names an environment variable that is not")
    assert "export MY_TEST_KEY=" in msg
    assert problems(cfg(tmp_path, llm=http), MY_TEST_KEY="sk-x") == []


def test_data_paths_matching_nothing_name_data_paths(tmp_path: Path) -> None:
    data = {"source": "text", "paths": [str(tmp_path / "corpus" / "*.txt")]}
    assert only_problem(cfg(tmp_path, data=data)).startswith("data.paths=[")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.txt").write_text("some text")
    assert problems(cfg(tmp_path, data=data)) == []
    hf = {"source": "hf", "hf_name": str(tmp_path / "no-such-dataset")}
    assert only_problem(cfg(tmp_path, data=hf)).startswith("data.hf_name=")


@pytest.mark.parametrize("name", [".", "..", "a/b", ""])
def test_a_sweep_name_must_be_a_plain_folder_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match=r"^name=.* must be a plain folder name"):
        cfg(tmp_path, name=name)


@pytest.mark.parametrize(
    ("cluster", "key"),
    [
        ({"executor": "local", "max_parallel": "abc"}, "cluster.max_parallel='abc'"),
        ({"executor": "local", "max_parallel": 0}, "cluster.max_parallel=0"),
        ({"executor": "inprocess", "timeout_min": 1.5}, "cluster.timeout_min=1.5"),
        ({"executor": "local", "foo": 1}, "['cluster.foo']"),
        ({"executor": "inprocess", "resources": {}}, "['cluster.resources']"),
    ],
)
def test_a_local_cluster_profile_is_typed(cluster: dict, key: str) -> None:
    with pytest.raises(ValueError) as err:
        check_cluster(cluster)
    assert key in str(err.value) and "\n" not in str(err.value)
    check_cluster({"executor": "local", "max_parallel": 2, "timeout_min": 0})


def test_nothing_is_recorded_unless_every_point_passes(tmp_path: Path) -> None:
    good, bad = cfg(tmp_path), cfg(tmp_path, layer=99)
    with pytest.raises(PreflightError, match="layer=99"):
        run_points([good, bad], {"executor": "inprocess"}, gather=True)
    assert not (tmp_path / "s").exists()  # no point recorded, nothing run


def test_a_multirun_with_a_bad_point_exits_before_recording(tmp_path: Path) -> None:
    cmd = [sys.executable, "launch/sweep.py", "-m", f"model={TINY}", f"llm.model={TINY}",
           "layer=2,99", f"out_dir={tmp_path}", "name=mr", "cluster=inprocess"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "nothing run or submitted" in proc.stderr and "layer=99 is past" in proc.stderr
    assert not list(tmp_path.glob("mr/points/*")), proc.stderr


def test_rerun_names_a_recorded_point_that_fails_and_how_to_drop_it(tmp_path: Path) -> None:
    from slurm.submit import check_recorded_points, record_point

    good, bad = cfg(tmp_path), cfg(tmp_path, layer=99)
    root = record_point(good)
    record_point(bad)  # as a sweep recorded it before points were checked first
    with pytest.raises(PreflightError) as err:
        check_recorded_points(root, [good, bad])
    folder = RunPaths(root, bad).point_dir()
    lines = str(err.value).splitlines()[1:]
    assert lines[0].strip().startswith(f"point {folder.name}: layer=99 is past")
    assert lines[1].strip() == f"to drop point {folder.name} from the sweep instead: rm -r {folder}"
    assert len(lines) == 2  # the good point passes
