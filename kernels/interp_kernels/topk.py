"""Sparse TopK encode and decode: the torch reference (the spec).

Shapes: N tokens, D model width (``d_in``), M latents, K active latents per token.
Tensor names end in their shape, e.g. ``x_ND`` is [N, D].

encode: ``top_acts, top_idx = topk(relu((x - b_dec) @ W_enc.T + b_enc), K)``. When fewer
    than K pre-activations are positive, zeros are selected and carry no gradient; which
    latents those zero slots name is unspecified. (Computed as relu(topk(pre)), the same
    values, which saves a pass over the [N, M] pre-activations: 7% of a bf16 step on an
    H100.)
decode: ``x_hat[n] = sum_j top_acts[n, j] * W_dec[top_idx[n, j]]`` (no bias), an
    embedding bag.

The forward pass of encode is dense (one [N, M] GEMM and a topk), but its backward only
touches the K selected entries per token (sparsify's ``FusedEncoder``): no dense [N, M]
gradient is formed, which saves two of the three D*M-sized GEMMs of a naive autograd
pass.

Backends, always chosen by the caller:

- ``"torch"``: this file, on any device and dtype (float64 included).
- ``"triton"``: ``interp_kernels.triton_topk`` for the decode forward and backward and the
  encoder backward (same dense forward GEMM + topk), on CUDA tensors in float32, bfloat16
  or float16; on CPU tensors only under ``TRITON_INTERPRET=1`` (how CI tests it).
- ``"auto"``: ``resolve_backend`` picks triton for CUDA tensors when triton imports and
  torch otherwise, and logs the choice once, on first use.

triton is imported on the first triton call, never when this module is imported.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from types import ModuleType
from typing import Any, Literal

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

Backend = Literal["torch", "triton", "auto"]
BACKENDS: tuple[str, ...] = ("torch", "triton", "auto")

_logged_choices: set[tuple[str, str]] = set()


def _triton_module() -> ModuleType:
    """``interp_kernels.triton_topk``, imported on first use; a clear error without triton."""
    try:
        return importlib.import_module(".triton_topk", __package__)
    except ImportError as e:
        raise ImportError(
            f"backend='triton' needs the triton package ({e}): pip install triton (it comes "
            "with CUDA builds of torch), or use backend='torch'"
        ) from e


def triton_available() -> bool:
    """True when triton imports (it is not imported otherwise)."""
    try:
        _triton_module()
    except ImportError:
        return False
    return True


def resolve_backend(backend: str, device: torch.device | str) -> Literal["torch", "triton"]:
    """The concrete backend for tensors on ``device``: ``"auto"`` becomes triton on CUDA
    when triton imports, else torch. The first time each choice is made it is logged."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown kernel backend {backend!r}: use one of {list(BACKENDS)}")
    device = torch.device(device)
    if backend == "auto":
        if device.type != "cuda":
            chosen, why = "torch", f"tensors are on {device.type}, not cuda"
        elif triton_available():
            chosen, why = "triton", "tensors are on cuda and triton imports"
        else:
            chosen, why = "torch", "triton does not import"
        if ("auto", chosen) not in _logged_choices:
            _logged_choices.add(("auto", chosen))
            log.info("kernel backend auto -> %s (%s)", chosen, why)
        return chosen  # type: ignore[return-value]
    if backend == "triton":
        interpret = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
        if device.type != "cuda" and not interpret:
            raise ValueError(
                f"backend='triton' needs CUDA tensors, got tensors on {device}: move them to "
                "a GPU, use backend='torch' (or 'auto'), or set TRITON_INTERPRET=1 before "
                "the first triton call to run the kernels in triton's (slow) CPU interpreter"
            )
        _triton_module()
    if (backend, backend) not in _logged_choices:
        _logged_choices.add((backend, backend))
        log.info("kernel backend %s", backend)
    return backend  # type: ignore[return-value]


class _TopKEncode(torch.autograd.Function):
    """topk(relu((x - b_dec) W^T + b)), with a backward that touches only the K selected
    entries.

    b_dec is subtracted inside, so its gradient is ``-grad_b @ W`` (an [M] x [M, D]
    product) rather than a sum over N of a dense [N, D] input gradient, which is only
    formed when x itself needs a gradient.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x_ND: torch.Tensor,
        W_MD: torch.Tensor,
        b_M: torch.Tensor,
        b_dec_D: torch.Tensor,
        k: int,
        backend: str,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xc_ND = x_ND - b_dec_D
        pre_NM = _pre_acts(xc_ND, W_MD, b_M)
        top_pre_NK, top_idx_NK = pre_NM.topk(k, dim=-1, sorted=False)
        del pre_NM
        top_acts_NK = top_pre_NK.relu_()
        ctx.save_for_backward(xc_ND, W_MD, top_acts_NK, top_idx_NK)
        ctx.mark_non_differentiable(top_idx_NK)
        ctx.backend = backend
        ctx.b_dtype = b_M.dtype
        ctx.b_dec_dtype = b_dec_D.dtype
        return top_acts_NK, top_idx_NK

    @staticmethod
    def backward(
        ctx: Any, grad_acts_NK: torch.Tensor, _grad_idx: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, ...]:
        xc_ND, W_MD, top_acts_NK, top_idx_NK = ctx.saved_tensors
        need_x, need_W, need_b, need_b_dec = ctx.needs_input_grad[:4]
        # A selected zero came from relu(pre <= 0): its gradient is zero. (sparsify's
        # FusedEncoder lets it through; the dense computation does not.)
        grad_NK = grad_acts_NK * (top_acts_NK > 0).to(grad_acts_NK.dtype)
        grad_x = grad_W = grad_b = None
        if ctx.backend == "triton":
            grad_x, grad_W, grad_b = _triton_module().encoder_backward(
                grad_NK,
                top_idx_NK,
                xc_ND,
                W_MD,
                ctx.b_dtype,
                (need_x, need_W, need_b or need_b_dec),
            )
        else:
            if need_x:
                grad_x = F.embedding_bag(
                    top_idx_NK, W_MD, mode="sum", per_sample_weights=grad_NK.to(W_MD.dtype)
                ).to(xc_ND.dtype)
            if need_W:
                grad_W = _sparse_grad_weight(grad_NK, top_idx_NK, xc_ND, W_MD.shape[0], W_MD.dtype)
            if need_b or need_b_dec:
                compute = torch.float32 if grad_NK.dtype in _HALF else grad_NK.dtype
                grad_b = torch.zeros(W_MD.shape[0], dtype=compute, device=grad_NK.device)
                grad_b.index_add_(0, top_idx_NK.reshape(-1), grad_NK.reshape(-1).to(compute))
                grad_b = grad_b.to(ctx.b_dtype)
        grad_b_dec = None
        if need_b_dec:
            # d/d b_dec of (x - b_dec) W^T = -(sum over tokens of grad_pre) W = -grad_b W.
            assert grad_b is not None
            compute = torch.float64 if W_MD.dtype == torch.float64 else torch.float32
            grad_b_dec = -(grad_b.to(compute) @ W_MD.to(compute))
            grad_b_dec = grad_b_dec.to(ctx.b_dec_dtype)
        return grad_x, grad_W, grad_b if need_b else None, grad_b_dec, None, None


_workspace = threading.local()


def _pre_acts(xc_ND: torch.Tensor, W_MD: torch.Tensor, b_M: torch.Tensor) -> torch.Tensor:
    """[N, M] pre-activations ``xc W^T + b``. On CPU they go into a per-thread buffer
    reused across calls (valid until the next call): a fresh [N, M] tensor costs a page
    fault per 4 KiB (74k faults, ~70 ms, for 8192 x 9216 fp32), as much as the top-k.
    The buffer keeps the largest size seen (per thread) for the life of the process.
    CUDA's caching allocator already reuses memory, so there it is a plain F.linear."""
    if xc_ND.device.type != "cpu":
        return F.linear(xc_ND, W_MD, b_M)
    shape = (xc_ND.shape[0], W_MD.shape[0])
    numel = shape[0] * shape[1]
    dtype = torch.result_type(xc_ND, W_MD)
    buf = getattr(_workspace, "buf", None)
    if buf is None or buf.dtype != dtype or buf.numel() < numel:
        _workspace.buf = None  # free the old buffer before allocating the new one
        with torch.inference_mode(False):  # a normal tensor: writable in and out of it
            buf = _workspace.buf = torch.empty(numel, dtype=dtype)
    # addmm into the buffer is bit-identical to F.linear (same bias-then-GEMM kernel).
    return torch.addmm(b_M, xc_ND, W_MD.t(), out=buf[:numel].view(shape))


_HALF = (torch.bfloat16, torch.float16)


def _sparse_grad_weight(
    grad_NK: torch.Tensor,
    top_idx_NK: torch.Tensor,
    x_ND: torch.Tensor,
    num_latents: int,
    dtype: torch.dtype,
) -> torch.Tensor:
    """dW[m] = sum over (n, j) with idx[n, j] = m of grad[n, j] * x[n], as a sparse [M, N]
    @ dense [N, D] product (3-6x faster on CPU than index_add_ of N*K outer products).
    Summed in float32 for half-precision inputs; returned in ``dtype``."""
    n, k = top_idx_NK.shape
    compute = torch.float32 if x_ND.dtype in _HALF else x_ND.dtype
    token_of_entry = torch.arange(n, device=x_ND.device).repeat_interleave(k)
    grad_MN = torch.sparse_coo_tensor(
        torch.stack([top_idx_NK.reshape(-1), token_of_entry]),
        grad_NK.reshape(-1).to(compute),
        (num_latents, n),
        check_invariants=False,
    )
    if x_ND.device.type != "cpu":
        return torch.sparse.mm(grad_MN, x_ND.to(compute)).to(dtype)
    # torch.sparse.mm zero-fills a fresh [M, D] result twice on CPU; addmm with beta=0
    # over a broadcast zero fills it once. Same sums.
    zero_MD = torch.zeros((), dtype=compute).expand(num_latents, x_ND.shape[1])
    return torch.addmm(zero_MD, grad_MN, x_ND.to(compute), beta=0).to(dtype)


def _gather_dot(idx_NK: torch.Tensor, G_ND: torch.Tensor, W_MD: torch.Tensor) -> torch.Tensor:
    """out[n, j] = <G[n], W[idx[n, j]]> in float32 or float64, over chunks of tokens so
    that the gathered [n, K, D] rows stay under 2**26 elements."""
    n, k = idx_NK.shape
    compute = torch.float64 if W_MD.dtype == torch.float64 else torch.float32
    out_NK = torch.empty(n, k, dtype=compute, device=G_ND.device)
    step = max(1, 2**26 // max(1, k * W_MD.shape[1]))
    for n0 in range(0, n, step):
        rows_nKD = W_MD[idx_NK[n0 : n0 + step]].to(compute)
        out_NK[n0 : n0 + step] = torch.bmm(rows_nKD, G_ND[n0 : n0 + step, :, None].to(compute))[
            :, :, 0
        ]
    return out_NK


class _SparseDecode(torch.autograd.Function):
    """The embedding-bag decoder with our own backward: the W_dec gradient as one sparse
    [M, N] @ dense [N, D] product, as in the encoder (torch's embedding_bag backward
    sorts the N*K indices first: 4-5x slower on CPU, same sums). Also used for
    bfloat16/float16 W_dec, whose backward torch lacks on CUDA
    (``_embedding_bag_per_sample_weights_backward_cuda`` has float32/64 only)."""

    @staticmethod
    def forward(
        ctx: Any, top_idx_NK: torch.Tensor, top_acts_NK: torch.Tensor, W_dec_MD: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(top_idx_NK, top_acts_NK, W_dec_MD)
        return F.embedding_bag(
            top_idx_NK, W_dec_MD, mode="sum", per_sample_weights=top_acts_NK.to(W_dec_MD.dtype)
        )

    @staticmethod
    def backward(ctx: Any, grad_ND: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        top_idx_NK, top_acts_NK, W_dec_MD = ctx.saved_tensors
        grad_acts = grad_W = None
        if ctx.needs_input_grad[1]:
            if W_dec_MD.dtype in _HALF:
                grad_acts = _gather_dot(top_idx_NK, grad_ND, W_dec_MD)
            else:  # torch's own per-sample-weights backward: <G[n], W[idx[n, j]]>
                n, k = top_idx_NK.shape
                entries = torch.arange(n * k, device=grad_ND.device)
                grad_acts = torch.ops.aten._embedding_bag_per_sample_weights_backward(
                    grad_ND.contiguous(),
                    W_dec_MD,
                    top_idx_NK.reshape(-1),
                    entries[::k],
                    entries // k,
                    0,  # mode: sum
                ).view(n, k)
            grad_acts = grad_acts.to(top_acts_NK.dtype)
        if ctx.needs_input_grad[2]:
            grad_W = _sparse_grad_weight(
                top_acts_NK, top_idx_NK, grad_ND, W_dec_MD.shape[0], W_dec_MD.dtype
            )
        return None, grad_acts, grad_W


def topk_encode(
    x_ND: torch.Tensor,
    W_enc_MD: torch.Tensor,
    b_enc_M: torch.Tensor,
    b_dec_D: torch.Tensor,
    k: int,
    *,
    backend: Backend = "torch",
) -> tuple[torch.Tensor, torch.Tensor]:
    """TopK SAE encoder: returns ``(top_acts [N, K], top_idx [N, K] int64)``, unsorted.

    Differentiable in ``x``, ``W_enc``, ``b_enc`` and ``b_dec``. ``backend`` picks the
    kernels of the backward pass (the forward is one dense GEMM + topk either way).
    """
    backend = resolve_backend(backend, x_ND.device)
    if x_ND.ndim != 2 or x_ND.shape[1] != W_enc_MD.shape[1]:
        raise ValueError(
            f"x must be [N, D={W_enc_MD.shape[1]}], got {tuple(x_ND.shape)}: flatten the "
            "leading dimensions first"
        )
    if not 0 < k <= W_enc_MD.shape[0]:
        raise ValueError(f"k={k} must be in [1, num_latents={W_enc_MD.shape[0]}]")
    if backend == "triton":
        _check_triton_dtypes(x_ND, W_enc_MD, b_enc_M, b_dec_D)
    return _TopKEncode.apply(x_ND, W_enc_MD, b_enc_M, b_dec_D, k, backend)


def topk_decode(
    top_idx_NK: torch.Tensor,
    top_acts_NK: torch.Tensor,
    W_dec_MD: torch.Tensor,
    *,
    backend: Backend = "torch",
) -> torch.Tensor:
    """Sum of the selected decoder rows weighted by their activations: [N, D], no bias.

    Differentiable in ``top_acts`` and ``W_dec``. The output has W_dec's dtype.
    """
    backend = resolve_backend(backend, W_dec_MD.device)
    if top_idx_NK.ndim != 2 or top_idx_NK.shape != top_acts_NK.shape:
        raise ValueError(
            f"top_idx {tuple(top_idx_NK.shape)} and top_acts {tuple(top_acts_NK.shape)} "
            "must have the same shape [N, K]"
        )
    if backend == "triton":
        _check_triton_dtypes(top_acts_NK, W_dec_MD)
        _check_indices(top_idx_NK, W_dec_MD.shape[0])
        return _triton_module().TritonDecode.apply(top_idx_NK, top_acts_NK, W_dec_MD)
    if W_dec_MD.dtype in _HALF or W_dec_MD.device.type == "cpu":
        return _SparseDecode.apply(top_idx_NK, top_acts_NK, W_dec_MD)
    return F.embedding_bag(
        top_idx_NK, W_dec_MD, mode="sum", per_sample_weights=top_acts_NK.to(W_dec_MD.dtype)
    )


def _check_indices(top_idx_NK: torch.Tensor, num_latents: int) -> None:
    """Out-of-range indices would read and write out of bounds in a kernel: refuse them.
    (One reduction and one device-to-host copy.)"""
    if top_idx_NK.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"top_idx must be int64 or int32, got {top_idx_NK.dtype}")
    if top_idx_NK.numel() == 0:
        return
    lo, hi = torch.aminmax(top_idx_NK)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= num_latents:
        raise ValueError(
            f"top_idx holds values in [{lo}, {hi}] but W_dec has {num_latents} rows: "
            "indices must be in [0, num_latents)"
        )


def _check_triton_dtypes(*tensors: torch.Tensor) -> None:
    supported = _triton_module().SUPPORTED_DTYPES
    for t in tensors:
        if t.dtype not in supported:
            raise ValueError(
                f"backend='triton' takes {[str(d) for d in supported]}, got {t.dtype}: cast "
                "the inputs, or use backend='torch' (which also takes float64)"
            )
