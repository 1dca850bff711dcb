"""The config schema for Hydra, generated from ``interp.config.RunConfig``.

Every documented key exists in the composed config with its dataclass default, so any of
them can be overridden without ``+`` while a typo is still refused by Hydra's struct
mode. The defaults are written once, in ``interp/config.py``; ``conf/`` YAML only
overrides them. ``conf/config.yaml`` lists :data:`SCHEMA_NAME` first in its defaults.

The node is a plain dict, not the dataclass: OmegaConf cannot type ``Literal`` fields,
and :func:`interp.config.load_run_config` checks types and choices afterwards, naming
the key. ``cluster`` is a free-form group (profiles differ per executor) and is not part
of the schema.
"""

from __future__ import annotations

from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from interp.config import (
    API_KEY_ENV_ERROR,
    RunConfig,
    is_variable_name,
    load_run_config,
    to_dict,
)

SCHEMA_NAME = "interp_schema"


def schema_node() -> dict[str, Any]:
    """Every key of ``RunConfig`` with its default, as a plain nested dict."""
    return to_dict(RunConfig())


def register_schema() -> None:
    """Store the schema in Hydra's ConfigStore; call it before Hydra composes ``conf/``."""
    ConfigStore.instance().store(name=SCHEMA_NAME, node=schema_node(), provider="interp")


def resolve(composed: DictConfig) -> tuple[RunConfig, dict[str, Any]]:
    """The validated run config and the (unchecked) cluster profile of a composed config.

    Raises ``ValueError`` naming the key for a wrong type or value, and OmegaConf's
    ``MissingMandatoryValue`` for a ``???`` left unset (e.g. ``model=hf`` without a name).
    """
    raw = OmegaConf.to_container(composed, resolve=True, throw_on_missing=True)
    cluster = raw.pop("cluster")
    return load_run_config(raw), cluster


def pasted_key_error(overrides: list[str]) -> str | None:
    """The error for a command line that sets ``llm.api_key_env`` to something shaped like a
    key rather than a variable's name. Checked before Hydra starts, because Hydra writes the
    command line into the run folder before any validation (the value is never shown)."""
    for arg in overrides:
        key, sep, value = arg.lstrip("+~").partition("=")
        if sep and key == "llm.api_key_env":
            values = [v.strip().strip("'\"") for v in value.split(",")]  # a -m sweep too
            if any(v and not is_variable_name(v) for v in values):
                return f"config error: {API_KEY_ENV_ERROR} (the value is not shown; nothing was written)"
    return None
