from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

import interp.config
from interp.config import RunConfig, describe, id_dict, load_run_config, to_dict


def test_defaults_build_and_round_trip() -> None:
    cfg = load_run_config({})
    assert cfg == RunConfig()
    assert load_run_config(to_dict(cfg)) == cfg
    assert cfg.hookpoint == "layers.15"


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"sae": {"k": 0}}, "sae.k=0 must be > 0"),
        ({"sae": {"architecture": "sparse"}}, "sae.architecture='sparse' is not one of"),
        ({"train": {"bogus": 1}}, "unknown key(s) ['bogus'] in train"),
        ({"train": {"num_tokens": "many"}}, "train.num_tokens: expected an integer"),
        ({"data": {"ctx_len": 64}, "collect": {"slice_tokens": 100}}, "multiple of"),
        ({"data": {"source": "text"}}, "needs data.paths"),
        ({"data": {"max_tokens": 1000}}, "exceeds data.max_tokens"),
        ({"scorer": {"names": ["detection", "astrology"]}}, "scorer.names[1]='astrology'"),
        ({"model": {"dtype": "float8"}}, "model.dtype='float8' is not one of"),
        ({"interpret": {"examples": {"window": 999}}}, "exceeds data.ctx_len"),
        ({"llm": {"cache": "yes"}}, "llm.cache: expected true/false"),
        ({"llm": {"backend": "openai"}}, "llm.backend='openai' is not one of"),
        ({"llm": {"base_urls": ["h:1/v1"]}}, "llm.base_urls entry 'h:1/v1' must start with"),
        ({"llm": {"max_retries": -1}}, "llm.max_retries=-1 must be >= 0"),
        ({"llm": {"top_logprobs": 0}}, "llm.top_logprobs=0 must be > 0"),
        ({"llm": {"api_key_env": "sk-abc123"}}, "must be the NAME of an environment variable"),
        ({"collect": {"range_latents": 0}}, "collect.range_latents=0 must be > 0"),
        ({"serve": {"port_range": [9, 8]}}, "serve.port_range=[9, 8] must be [first, last]"),
    ],
)
def test_invalid_values_are_refused_with_the_key_named(raw: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        load_run_config(raw)
    assert message in str(err.value)


def test_configs_are_frozen() -> None:
    cfg = RunConfig()
    with pytest.raises(AttributeError):
        cfg.sae.k = 3  # type: ignore[misc]


def test_logging_only_keys_are_left_out_of_ids() -> None:
    a = load_run_config({"train": {"log_every": 1}, "out_dir": "/x"})
    b = load_run_config({"train": {"log_every": 99}, "out_dir": "/y"})
    assert id_dict(a) == id_dict(b)
    assert id_dict(a) != id_dict(load_run_config({"train": {"seed": 1}}))


def test_every_field_is_documented() -> None:
    lines = describe(RunConfig)
    assert len(lines) > 40
    undocumented = [line for line in lines if line.rstrip().endswith(":")]
    assert not undocumented, undocumented


MOVED = {
    "ModelConfig": "interp.models.config",
    "DataConfig": "interp.data.config",
    "CollectConfig": "interp.collect_config",
    "LLMConfig": "interp.llm.config",
    "ServeConfig": "interp.llm.config",
    "API_KEY_ENV_ERROR": "interp.llm.keys",
    "KEY_PREFIXES": "interp.llm.keys",
    "is_variable_name": "interp.llm.keys",
}


@pytest.mark.parametrize("name", sorted(MOVED))
def test_moved_names_are_still_exported_by_interp_config(name: str) -> None:
    module = __import__(MOVED[name], fromlist=[name])
    assert getattr(interp.config, name) is getattr(module, name)


def test_component_config_modules_import_nothing_heavy() -> None:
    code = (
        "import sys, interp.llm.config, interp.data.config, interp.models.config, "
        "interp.collect_config;"
        "heavy = {'torch', 'transformers', 'zarr', 'numpy', 'httpx'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_llm_fields_keep_their_run_id_roles() -> None:
    """Composed from the backends' parts, every llm key keeps its metadata."""
    roles = {f.name: f.metadata["id"] for f in dataclasses.fields(interp.config.LLMConfig)}
    assert roles == {
        "backend": True, "model": True, "dtype": True, "device": True, "temperature": True,
        "score_batch_size": True, "cache": False, "base_urls": False,
        "served_model": "when_set", "tokenizer": "when_set", "api_key_env": False,
        "max_concurrency": False, "timeout_s": False, "max_retries": False,
        "top_logprobs": "when_set",
    }  # fmt: skip
