"""Triton kernels for the sparse parts of a TopK SAE step (``backend="triton"``).

Imported only by ``interp_kernels.topk`` on first use of the triton backend, never at
package import: triton and its compiler load lazily, and ``TRITON_INTERPRET=1`` (read by
``triton.jit`` when this module is imported) runs every kernel on CPU tensors in the
interpreter, which is how CI checks them.

Shapes: N tokens, D width, M rows of a weight (latents), K selected latents per token,
E = N*K (token, slot) entries. Tensor names end in their shape.

Three kernels cover the five sparse products of a training step:

``embedding_bag``   out_ND[n] = sum_j w_NK[n, j] * W_MD[idx_NK[n, j]]
                    decode forward (w = top_acts, W = W_dec) and encoder d x
                    (w = d top_acts, W = W_enc).
``gather_dot``      out_NK[n, j] = <G_ND[n], W_MD[idx_NK[n, j]]>
                    decode d top_acts (G = d x_hat, W = W_dec).
``scatter_rows``    out_MD[m] = sum over (n, j) with idx[n, j] = m of w[n, j] * X_ND[n]
                    decode d W_dec (w = top_acts, X = d x_hat) and encoder d W_enc
                    (w = d top_acts, X = x), plus d b_enc = per-row sums of w.

``scatter_rows`` sorts the E entries by row once (torch.sort), cuts each row's run of
entries into chunks of at most ``_CHUNK`` so that a row used by every token does not
serialise the grid, and adds each chunk's partial sum into a float32 output with atomics.
A row with a single chunk (the common case) is therefore summed in a fixed order; rows
used by more than ``_CHUNK`` entries are summed in an order that can vary between runs
(differences at float32 rounding). All products accumulate in float32 whatever the
input dtype (float32, bfloat16 or float16).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import torch
import triton
import triton.language as tl

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

# Launch parameters (module constants so that bench/topk_kernels.py can sweep them). Measured
# on an H100 (bench/topk_kernels.py --micro): one decoder/input row at a time with the columns
# spread over the program beats loading [BLOCK_K, BLOCK_D] tiles and reducing across
# them (2-7x in bfloat16), and a program that spans about 1 KiB (bag) or 2 KiB (scatter)
# of a row is fastest.
_CHUNK = 256  # entries of one row summed by one scatter_rows program; more are split
_BAG_ROW_BYTES = 1024  # bytes of a row per embedding_bag program
_SCATTER_ROW_BYTES = 2048  # bytes of a row per scatter_rows program
_DOT_BLOCK_D = 256  # columns per step of gather_dot
_DOT_BLOCK_K = 32  # bag slots per gather_dot program
_NUM_WARPS = 4


def _block_d(d: int, dtype: torch.dtype, row_bytes: int) -> int:
    """Columns per program: the whole row when it is at most twice ``row_bytes``, else
    ``row_bytes`` worth (a power of two either way)."""
    whole = triton.next_power_of_2(d)
    most = max(16, row_bytes // dtype.itemsize)
    return whole if whole <= 2 * most else most


@triton.jit
def _embedding_bag_kernel(
    idx_ptr,  # [N, K] int64
    w_ptr,  # [N, K]
    W_ptr,  # [M, D]
    out_ptr,  # [N, D]
    K,
    D,
    stride_W,
    BLOCK_D: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    offs_d = tl.program_id(1) * BLOCK_D + tl.arange(0, BLOCK_D)
    mask_d = offs_d < D
    acc_D = tl.zeros([BLOCK_D], dtype=tl.float32)
    for j in range(0, K):
        row = tl.load(idx_ptr + n * K + j)
        w = tl.load(w_ptr + n * K + j).to(tl.float32)
        W_D = tl.load(W_ptr + row * stride_W + offs_d, mask=mask_d, other=0.0)
        acc_D += w * W_D.to(tl.float32)
    tl.store(out_ptr + n * D + offs_d, acc_D.to(out_ptr.dtype.element_ty), mask=mask_d)


@triton.jit
def _gather_dot_kernel(
    idx_ptr,  # [N, K] int64
    G_ptr,  # [N, D]
    W_ptr,  # [M, D]
    out_ptr,  # [N, K]
    K,
    D,
    stride_W,
    BLOCK_K: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    n = tl.program_id(0).to(tl.int64)
    offs_k = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    mask_k = offs_k < K
    rows_K = tl.load(idx_ptr + n * K + offs_k, mask=mask_k, other=0)
    acc_K = tl.zeros([BLOCK_K], dtype=tl.float32)
    for d0 in range(0, D, BLOCK_D):
        offs_d = d0 + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        g_D = tl.load(G_ptr + n * D + offs_d, mask=mask_d, other=0.0).to(tl.float32)
        tile_KD = tl.load(
            W_ptr + rows_K[:, None] * stride_W + offs_d[None, :],
            mask=mask_k[:, None] & mask_d[None, :],
            other=0.0,
        ).to(tl.float32)
        acc_K += tl.sum(tile_KD * g_D[None, :], axis=1)
    tl.store(out_ptr + n * K + offs_k, acc_K.to(out_ptr.dtype.element_ty), mask=mask_k)


@triton.jit
def _scatter_rows_kernel(
    chunk_row_ptr,  # [C] int64: the row each chunk adds into
    chunk_start_ptr,  # [C] int64: first sorted entry of the chunk
    chunk_end_ptr,  # [C] int64: one past its last (== start for an empty chunk)
    token_ptr,  # [E] int64: token of each sorted entry
    w_ptr,  # [E]: weight of each sorted entry
    X_ptr,  # [N, D]
    out_ptr,  # [M, D] float32, zeroed
    sum_ptr,  # [M] float32, zeroed (read only when WITH_SUM)
    D,
    WITH_SUM: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    c = tl.program_id(0)
    pid_d = tl.program_id(1)
    start = tl.load(chunk_start_ptr + c)
    end = tl.load(chunk_end_ptr + c)
    if end > start:
        row = tl.load(chunk_row_ptr + c)
        offs_d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D)
        mask_d = offs_d < D
        acc_D = tl.zeros([BLOCK_D], dtype=tl.float32)
        w_sum = tl.zeros([1], dtype=tl.float32)
        for e in range(start, end):
            tok = tl.load(token_ptr + e)
            w = tl.load(w_ptr + e).to(tl.float32)
            X_D = tl.load(X_ptr + tok * D + offs_d, mask=mask_d, other=0.0)
            acc_D += w * X_D.to(tl.float32)
            w_sum += w
        tl.atomic_add(out_ptr + row * D + offs_d, acc_D, mask=mask_d)
        if WITH_SUM:  # noqa: SIM102 (a compile-time branch, then a run-time one)
            if pid_d == 0:
                tl.atomic_add(sum_ptr + row + tl.arange(0, 1), w_sum)


def _check(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.dtype not in SUPPORTED_DTYPES:
            raise ValueError(
                f"the triton kernels take {[str(d) for d in SUPPORTED_DTYPES]}, got {t.dtype}: "
                "cast the inputs, or use backend='torch' (which also takes float64)"
            )


def embedding_bag(idx_NK: torch.Tensor, w_NK: torch.Tensor, W_MD: torch.Tensor) -> torch.Tensor:
    """out_ND[n] = sum_j w_NK[n, j] * W_MD[idx_NK[n, j]], in W's dtype (float32 sums)."""
    _check(w_NK, W_MD)
    n, k = idx_NK.shape
    d = W_MD.shape[1]
    W_MD = W_MD if W_MD.stride(1) == 1 else W_MD.contiguous()
    out_ND = torch.empty(n, d, dtype=W_MD.dtype, device=W_MD.device)
    if n == 0 or d == 0:
        return out_ND
    block_d = _block_d(d, W_MD.dtype, _BAG_ROW_BYTES)
    grid = (n, triton.cdiv(d, block_d))
    _embedding_bag_kernel[grid](
        idx_NK.contiguous(), w_NK.contiguous(), W_MD, out_ND, k, d, W_MD.stride(0),
        BLOCK_D=block_d, num_warps=_NUM_WARPS,
    )  # fmt: skip
    return out_ND


def gather_dot(idx_NK: torch.Tensor, G_ND: torch.Tensor, W_MD: torch.Tensor) -> torch.Tensor:
    """out_NK[n, j] = <G_ND[n], W_MD[idx_NK[n, j]]>, in G's dtype (float32 sums)."""
    _check(G_ND, W_MD)
    n, k = idx_NK.shape
    d = W_MD.shape[1]
    W_MD = W_MD if W_MD.stride(1) == 1 else W_MD.contiguous()
    out_NK = torch.empty(n, k, dtype=G_ND.dtype, device=G_ND.device)
    if n == 0:
        return out_NK
    block_k = min(triton.next_power_of_2(k), _DOT_BLOCK_K)
    block_d = min(triton.next_power_of_2(d), _DOT_BLOCK_D)
    grid = (n, triton.cdiv(k, block_k))
    _gather_dot_kernel[grid](
        idx_NK.contiguous(), G_ND.contiguous(), W_MD, out_NK, k, d, W_MD.stride(0),
        BLOCK_K=block_k, BLOCK_D=block_d, num_warps=_NUM_WARPS,
    )  # fmt: skip
    return out_NK


class SortedEntries:
    """The E = N*K (token, slot) entries of ``idx_NK`` sorted by row and cut into chunks.

    Built once per step (``sorted_entries``) and shared by every ``scatter_rows`` over the
    same indices: the decoder's d W_dec and the encoder's d W_enc and d b_enc.
    """

    def __init__(self, idx_NK: torch.Tensor, num_rows: int) -> None:
        n, k = idx_NK.shape
        flat_E = idx_NK.reshape(-1)
        sorted_rows_E, self.order_E = torch.sort(flat_E)
        self.token_E = self.order_E // k
        self.num_rows = num_rows
        # Segment bounds by binary search in the sorted rows (bincount would sync the host).
        bounds = torch.arange(num_rows + 1, device=idx_NK.device)
        edges_M1 = torch.searchsorted(sorted_rows_E, bounds)
        start_M, end_M = edges_M1[:-1], edges_M1[1:]
        counts_M = end_M - start_M
        chunks_M = (counts_M + _CHUNK - 1) // _CHUNK
        chunk_end_M = torch.cumsum(chunks_M, 0)
        # An upper bound on the number of chunks, so that no value is read back to the host.
        num_chunks = num_rows + triton.cdiv(n * k, _CHUNK)
        c_C = torch.arange(num_chunks, device=idx_NK.device)
        row_C = torch.searchsorted(chunk_end_M, c_C, right=True).clamp_(max=num_rows - 1)
        local_C = c_C - (chunk_end_M[row_C] - chunks_M[row_C])
        start_C = start_M[row_C] + local_C * _CHUNK
        end_C = torch.minimum(start_C + _CHUNK, end_M[row_C])
        self.chunk_row_C = row_C
        self.chunk_start_C = start_C
        self.chunk_end_C = torch.where(c_C < chunk_end_M[-1], end_C, start_C)
        del sorted_rows_E


# Sorted entries that a decoder backward built, kept for the encoder backward of the same
# step (same indices, same number of rows), so each step sorts once. Keyed by the index
# tensor's address; the entry holds that tensor, so its storage (and address) stays taken
# until the entry is used or evicted, and its version counter shows any in-place change.
_MAX_SHARED = 8
_shared: OrderedDict[int, tuple[torch.Tensor, int, int, SortedEntries]] = OrderedDict()
_shared_lock = threading.Lock()


def sorted_entries(idx_NK: torch.Tensor, num_rows: int, *, keep: bool) -> SortedEntries:
    """``SortedEntries(idx_NK, num_rows)``, reusing those kept for the same indices; with
    ``keep`` the result is kept for one later call (the encoder's backward)."""
    key = idx_NK.data_ptr()
    with _shared_lock:
        hit = _shared.pop(key, None)
    if hit is not None:
        idx, version, rows, entries = hit
        same = (idx.shape, idx.stride(), idx.dtype, version, rows) == (
            idx_NK.shape, idx_NK.stride(), idx_NK.dtype, idx_NK._version, num_rows
        )  # fmt: skip
        if same:
            return entries
    entries = SortedEntries(idx_NK, num_rows)
    if keep:
        with _shared_lock:
            _shared[key] = (idx_NK, idx_NK._version, num_rows, entries)
            while len(_shared) > _MAX_SHARED:
                _shared.popitem(last=False)
    return entries


def scatter_rows(
    entries: SortedEntries, w_NK: torch.Tensor, X_ND: torch.Tensor, *, with_sum: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """out_MD[m] = sum over entries (n, j) of row m of w[n, j] * X_ND[n], in float32.

    With ``with_sum`` also the per-row sums of ``w`` ([M] float32, d b_enc); else None.
    """
    _check(w_NK, X_ND)
    d = X_ND.shape[1]
    out_MD = torch.zeros(entries.num_rows, d, dtype=torch.float32, device=X_ND.device)
    sum_M = torch.zeros(
        entries.num_rows if with_sum else 1, dtype=torch.float32, device=X_ND.device
    )
    if w_NK.numel() and d:
        w_E = w_NK.reshape(-1)[entries.order_E].contiguous()
        block_d = _block_d(d, X_ND.dtype, _SCATTER_ROW_BYTES)
        grid = (entries.chunk_row_C.shape[0], triton.cdiv(d, block_d))
        _scatter_rows_kernel[grid](
            entries.chunk_row_C, entries.chunk_start_C, entries.chunk_end_C, entries.token_E,
            w_E, X_ND.contiguous(), out_MD, sum_M, d,
            WITH_SUM=with_sum, BLOCK_D=block_d, num_warps=_NUM_WARPS,
        )  # fmt: skip
    return out_MD, (sum_M if with_sum else None)


class TritonDecode(torch.autograd.Function):
    """x_hat_ND = embedding bag of W_dec rows; backward: d top_acts and d W_dec, sparse."""

    @staticmethod
    def forward(
        ctx: Any, top_idx_NK: torch.Tensor, top_acts_NK: torch.Tensor, W_dec_MD: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(top_idx_NK, top_acts_NK, W_dec_MD)
        return embedding_bag(top_idx_NK, top_acts_NK, W_dec_MD)

    @staticmethod
    def backward(ctx: Any, grad_out_ND: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        top_idx_NK, top_acts_NK, W_dec_MD = ctx.saved_tensors
        grad_out_ND = grad_out_ND.contiguous()
        grad_acts = grad_W = None
        if ctx.needs_input_grad[1]:
            grad_acts = gather_dot(top_idx_NK, grad_out_ND, W_dec_MD).to(top_acts_NK.dtype)
        if ctx.needs_input_grad[2]:
            entries = sorted_entries(top_idx_NK, W_dec_MD.shape[0], keep=True)
            grad_W, _ = scatter_rows(entries, top_acts_NK, grad_out_ND)
            grad_W = grad_W.to(W_dec_MD.dtype)
        return None, grad_acts, grad_W


def encoder_backward(
    grad_NK: torch.Tensor,
    top_idx_NK: torch.Tensor,
    x_ND: torch.Tensor,
    W_MD: torch.Tensor,
    b_dtype: torch.dtype,
    needs: tuple[bool, bool, bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """(d x, d W_enc, d b_enc) of the TopK encoder from d top_acts (already zero where a
    selected activation was a relu zero), touching only the K selected entries per token."""
    grad_x = grad_W = grad_b = None
    if needs[0]:
        grad_x = embedding_bag(top_idx_NK, grad_NK, W_MD).to(x_ND.dtype)
    if needs[1] or needs[2]:
        entries = sorted_entries(top_idx_NK, W_MD.shape[0], keep=False)
        grad_W_f32, grad_b_f32 = scatter_rows(entries, grad_NK, x_ND, with_sum=needs[2])
        grad_W = grad_W_f32.to(W_MD.dtype) if needs[1] else None
        grad_b = grad_b_f32.to(b_dtype) if needs[2] else None
    return grad_x, grad_W, grad_b
