from __future__ import annotations

import pytest

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
