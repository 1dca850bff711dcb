"""Sparse TopK encode/decode kernels.

``kernels.topk`` holds the torch reference, which is the spec every fast kernel is
tested against; ``kernels.triton_topk`` holds the Triton kernels (imported on first use).
The backend is always an explicit argument (``"torch"``, ``"triton"`` or ``"auto"``,
resolved by ``resolve_backend``); nothing is chosen, imported or compiled at import time.
"""

from kernels.topk import (
    BACKENDS,
    Backend,
    resolve_backend,
    topk_decode,
    topk_encode,
    triton_available,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "resolve_backend",
    "topk_decode",
    "topk_encode",
    "triton_available",
]
