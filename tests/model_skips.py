"""Skips for tests that need an optional offline model."""

from __future__ import annotations

import pytest


def require_model(name: str) -> None:
    """Skip when an optional offline model is not installed (e.g. Qwen2.5-Coder-1.5B,
    which `setup.sh --test` leaves out: 1.1 GB); `bash launch/setup.sh` installs it."""
    from interp.models.provision import ModelNotFoundError, resolve_model

    try:
        resolve_model(name)
    except ModelNotFoundError as e:
        pytest.skip(f"{name} is not installed here (bash launch/setup.sh installs it): {e}")
