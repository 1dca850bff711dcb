"""Provision offline models now (join, sha256-check, convert once, cache); print paths.

python launch/prepare.py smollm2-135m qwen2.5-coder-1.5b-instruct
"""

from __future__ import annotations

import sys

from interp.models import ModelNotFoundError, cache_dir
from interp.models.provision import prepare
from slurm.worker import setup_logging

if __name__ == "__main__":
    setup_logging()
    try:
        for name, path in prepare(sys.argv[1:]).items():
            print(f"{name}: {path}")
    except ModelNotFoundError as err:
        sys.exit(f"model missing: {err}")
    print(f"cache: {cache_dir()}")
