"""conf/ over the schema: every documented key is overridable without `+`, a typo is
refused at composition, and the YAML holds only overrides of the dataclass defaults."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from conf_compose import CONF, Composer, composer
from hydra.errors import ConfigCompositionException

from interp.config import RunConfig, describe, to_dict
from slurm.schema import resolve

pytestmark = pytest.mark.unit

ROOT = CONF.parent
# Keys that name what a group option is: kept even when they equal the default, so an
# option still means the same thing if the dataclass default changes.
IDENTITY = {
    "model": {"name"},
    "data": {"source"},
    "sae": {"architecture"},
    "llm": {"backend", "model"},
    "scorer": {"names"},
    "serve": {"enabled", "engine"},
}
GROUPS = sorted(IDENTITY)
DEFAULTS = to_dict(RunConfig())


@pytest.fixture(scope="module")
def compose() -> Iterator[Composer]:
    with composer() as fn:
        yield fn


def documented_keys() -> list[str]:
    return [line.split(" = ", 1)[0] for line in describe(RunConfig)]


def needs_plus(compose: Composer, keys: list[str]) -> list[str]:
    """The keys that Hydra refuses to override without `+` (one composition if none)."""
    try:
        compose([f"{key}=null" for key in keys])
        return []
    except ConfigCompositionException:
        return [key for key in keys if needs_plus(compose, [key])] if len(keys) > 1 else keys


def test_every_documented_key_is_overridable_without_plus(compose: Composer) -> None:
    keys = documented_keys()
    assert len(keys) > 100 and "train.dist.strategy" in keys
    missing = needs_plus(compose, keys)
    assert not missing, f"these keys need `+` (not in the schema): {missing}"
    assert needs_plus(compose, ["train.kernels", "train.kernls"]) == ["train.kernls"]


def test_a_typo_is_refused_at_composition(compose: Composer) -> None:
    with pytest.raises(ConfigCompositionException, match="train.kernls"):
        compose(["train.kernls=auto"])
    with pytest.raises(ConfigCompositionException, match="sae.kk"):
        compose(["sae.kk=3"])


def test_the_schema_is_the_dataclass_defaults(compose: Composer) -> None:
    cfg, cluster = resolve(compose(["model=tiny-random-llama"]))
    assert cfg.model.name == "tiny-random-llama" and cluster["executor"] == "local"
    assert to_dict(cfg)["train"] == DEFAULTS["train"]  # conf/ overrides nothing of train


def flatten(tree: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def restated(tree: dict[str, Any], defaults: dict[str, Any], allowed: set[str]) -> list[str]:
    flat_defaults = dict(flatten(defaults))
    return [
        key
        for key, value in flatten(tree)
        if key not in allowed and key in flat_defaults and value == flat_defaults[key]
    ]


@pytest.mark.parametrize("group", GROUPS)
def test_group_yaml_restates_no_default(group: str) -> None:
    found = {}
    for path in sorted((CONF / group).glob("*.yaml")):
        keys = restated(yaml.safe_load(path.read_text()) or {}, DEFAULTS[group], IDENTITY[group])
        if keys:
            found[path.name] = keys
    assert not found, f"conf/{group}/ restates dataclass defaults (remove them): {found}"


def test_config_yaml_restates_no_default() -> None:
    top = yaml.safe_load((CONF / "config.yaml").read_text())
    own = {k: v for k, v in top.items() if k not in ("defaults", "hydra")}
    assert not restated(own, DEFAULTS, set()), "conf/config.yaml restates dataclass defaults"


def test_restated_defaults_are_detected() -> None:
    tree = {"architecture": "topk", "k": 32, "lr_scale": 10.0}
    assert restated(tree, DEFAULTS["sae"], IDENTITY["sae"]) == ["k"]


def test_sweep_registers_the_schema() -> None:
    cmd = [sys.executable, "launch/sweep.py", "train.dist.strategy=fsdp", "--cfg", "job"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load(proc.stdout)["train"]["dist"]["strategy"] == "fsdp"


@pytest.mark.parametrize(
    "value", ["sk-proj-4fGh29xLq0", "gsk_8Hq2Lm0PzX", "hf_abcdefgh12345", "abcd1234efgh5678ijkl"]
)
def test_a_pasted_key_is_refused_before_anything_is_written(tmp_path, value: str) -> None:
    cmd = [sys.executable, "launch/sweep.py", "llm=http", f"llm.api_key_env={value}"]
    cmd += [f"out_dir={tmp_path}", "llm.base_urls=[http://127.0.0.1:9/v1]"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "llm.api_key_env must be the NAME" in proc.stderr
    assert value not in proc.stdout + proc.stderr
    assert not any(tmp_path.iterdir()), "Hydra wrote the command line into the run folder"


def test_variable_names_are_not_keys() -> None:
    from interp.config import LLMConfig, is_variable_name

    for name in ("OPENROUTER_API_KEY", "OPENAI_API_KEY", "MY_KEY_2", "X"):
        assert is_variable_name(name), name
    for bad in ("sk-123-secret", "gsk_live_abc", "has space", "a" * 8 + "1234" + "b" * 8):
        assert not is_variable_name(bad), bad
    with pytest.raises(ValueError, match="the value is not shown") as err:
        LLMConfig(backend="http", api_key_env="sk-live-1234")
    assert "sk-live-1234" not in str(err.value)
