"""Shared test setup: offline, deterministic, tiers from the folder a test lives in."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TIERS = {"unit": "unit", "e2e": "e2e", "slurm": "slurm", "gpu": "gpu"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        for folder, marker in TIERS.items():
            if f"/tests/{folder}/" in str(item.fspath):
                item.add_marker(getattr(pytest.mark, marker))
