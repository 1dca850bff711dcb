"""Sparse TopK encode/decode kernels.

``kernels.topk`` holds the torch reference, which is the spec every fast kernel is
tested against. The backend is always an explicit argument (``backend="torch"``); nothing
is chosen or compiled at import time.
"""

from kernels.topk import BACKENDS, Backend, topk_decode, topk_encode

__all__ = ["BACKENDS", "Backend", "topk_decode", "topk_encode"]
