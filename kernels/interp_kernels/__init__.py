"""Sparse TopK encode/decode kernels.

``interp_kernels.topk`` holds the torch reference, which is the spec every fast kernel
is tested against; ``interp_kernels.triton_topk`` holds the Triton kernels (imported on
first use). The package lives in the repository's ``kernels/`` folder but is imported as
``interp_kernels``: ``kernels`` is Hugging Face's kernel hub, which transformers imports
(``kernels/`` has no ``__init__.py``, so even with the repository root on ``sys.path`` the
installed package wins).
The backend is always an explicit argument (``"torch"``, ``"triton"`` or ``"auto"``,
resolved by ``resolve_backend``); nothing is chosen, imported or compiled at import time.
"""

from interp_kernels.topk import (
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
