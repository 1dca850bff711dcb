"""Compose conf/ in-process the way launch/sweep.py does (schema registered first)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from slurm.schema import register_schema

CONF = Path(__file__).resolve().parents[1] / "conf"

Composer = Callable[[list[str]], DictConfig]


@contextmanager
def composer() -> Iterator[Composer]:
    """Yield ``compose(overrides)`` over conf/config.yaml, like ``sweep.py ... --cfg job``."""
    register_schema()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        yield lambda overrides: compose("config", overrides=overrides)
