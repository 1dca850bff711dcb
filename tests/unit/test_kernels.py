"""Triton TopK kernels against the torch reference (the spec): values and gradients.

On a machine without CUDA the kernels run in triton's CPU interpreter (TRITON_INTERPRET=1,
set here before triton is first imported), so sizes stay tiny; on a GPU the same tests run
compiled. Skipped, with the reason, when triton is not installed.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    # triton.jit reads this when interp_kernels.triton_topk is imported, on the first triton call.
    os.environ.setdefault("TRITON_INTERPRET", "1")

from interp_kernels import resolve_backend, topk_decode, topk_encode  # noqa: E402
from interp_kernels import topk as topk_module  # noqa: E402

pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(
        importlib.util.find_spec("triton") is None,
        reason="triton is not installed (pip install -e '.[test]' brings it): the triton "
        "kernels are untested here",
    ),
]

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

# (N, D, M, K): odd sizes, K = 1, K = M, more rows than one block of D, and few latents
# for many tokens, so that indices repeat across tokens and one latent's entries span
# several chunks of the scatter kernel (600 * 2 / 3 = 400 > 256 entries per latent).
SHAPES = [
    (13, 10, 37, 5),
    (9, 17, 23, 1),
    (6, 3, 5, 5),
    (5, 300, 19, 3),
    (600, 7, 3, 2),
]


def _inputs(n, d, m, k, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    W_enc = torch.randn(m, d, generator=g) / d**0.5
    b_enc = torch.randn(m, generator=g) * 0.5 - 0.3  # some rows have < K positive values
    b_dec = torch.randn(d, generator=g) * 0.1
    W_dec = torch.randn(m, d, generator=g)
    grad_out = torch.randn(n, d, generator=g)
    tensors = [t.to(DEVICE, dtype) for t in (x, W_enc, b_enc, b_dec, W_dec)]
    return tensors, grad_out.to(DEVICE, dtype)


def _step(tensors, grad_out, k, backend, idx=None):
    """encode -> decode -> <x_hat, grad_out>; returns x_hat, top_acts, top_idx and the
    gradients of every input."""
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    x, W_enc, b_enc, b_dec, W_dec = leaves
    acts, top_idx = topk_encode(x, W_enc, b_enc, b_dec, k, backend=backend)
    x_hat = topk_decode(top_idx if idx is None else idx, acts, W_dec, backend=backend)
    (x_hat * grad_out).sum().backward()
    return x_hat, acts, top_idx, [leaf.grad for leaf in leaves]


def _reference(tensors, grad_out, idx):
    """The same step in float64 by plain dense autograd, for a given selection ``idx``."""
    leaves = [t.detach().double().requires_grad_() for t in tensors]
    x, W_enc, b_enc, b_dec, W_dec = leaves
    pre = torch.relu((x - b_dec) @ W_enc.T + b_enc)
    acts = pre.gather(1, idx)
    x_hat = (acts[:, :, None] * W_dec[idx]).sum(1)
    (x_hat * grad_out.double()).sum().backward()
    return x_hat, acts, idx, [leaf.grad for leaf in leaves]


def _rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _assert_close(out, ref, tol):
    assert _rel_err(out[0], ref[0]) < tol, "x_hat"
    assert _rel_err(out[1], ref[1]) < tol, "top_acts"
    for name, g_out, g_ref in zip(["x", "W_enc", "b_enc", "b_dec", "W_dec"], out[3], ref[3]):
        assert _rel_err(g_out, g_ref) < tol, f"d {name}: {_rel_err(g_out, g_ref):.2e}"


@pytest.mark.parametrize(("n", "d", "m", "k"), SHAPES)
def test_triton_matches_torch_float32(n, d, m, k):
    tensors, grad_out = _inputs(n, d, m, k, torch.float32)
    out = _step(tensors, grad_out, k, "triton")
    ref = _step(tensors, grad_out, k, "torch")
    # The forward is the same dense GEMM + topk in both backends: the same selection.
    assert torch.equal(out[2], ref[2])
    _assert_close(out, ref, 1e-5)
    for g_out, t in zip(out[3], tensors):
        assert g_out.dtype == t.dtype and g_out.shape == t.shape
    _assert_close(out, _reference(tensors, grad_out, out[2]), 1e-5)


def test_selected_relu_zeros_get_no_gradient():
    """A row with fewer than K positive pre-activations selects zeros; neither backend lets
    a gradient through them (sparsify's FusedEncoder does)."""
    n, d, m, k = 4, 6, 9, 5
    tensors, grad_out = _inputs(n, d, m, k, torch.float32, seed=3)
    tensors[2] = torch.full((m,), -50.0, device=DEVICE)  # b_enc: nothing is positive...
    tensors[2][:2] = 50.0  # ...but two latents
    out = _step(tensors, grad_out, k, "triton")
    assert (out[1] == 0).sum() == n * (k - 2)
    grad_b_enc = out[3][2]
    assert torch.all(grad_b_enc[2:] == 0) and torch.all(grad_b_enc[:2] != 0)
    _assert_close(out, _step(tensors, grad_out, k, "torch"), 1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_accumulates_in_float32(dtype):
    """bf16/fp16 in, same dtype out; sums in float32, so the error is that of rounding the
    inputs and outputs (~1e-2 relative), not of a K- or N-long half-precision sum."""
    n, d, m, k = 64, 24, 40, 6
    tensors, grad_out = _inputs(n, d, m, k, dtype, seed=1)
    for backend in ("triton", "torch"):
        out = _step(tensors, grad_out, k, backend)
        assert out[0].dtype == dtype
        for g_out, t in zip(out[3], tensors):
            assert g_out.dtype == t.dtype
        # float64 on the same (rounded) inputs and the same selection.
        _assert_close(out, _reference(tensors, grad_out, out[2]), 2e-2)


def test_decode_with_repeated_indices_in_one_token():
    """The same latent twice in one token's bag (possible for a caller's codes, never for
    topk): both entries count, in the output and in both gradients."""
    idx = torch.tensor([[2, 2, 0], [1, 2, 2]], device=DEVICE)
    acts = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]], device=DEVICE)
    W = torch.randn(4, 5, device=DEVICE)
    grads = {}
    for backend in ("torch", "triton"):
        a, w = acts.clone().requires_grad_(), W.clone().requires_grad_()
        y = topk_decode(idx, a, w, backend=backend)
        y.square().sum().backward()
        grads[backend] = (y, a.grad, w.grad)
    for g_out, g_ref in zip(grads["triton"], grads["torch"]):
        assert _rel_err(g_out, g_ref) < 1e-6


def test_one_sort_per_step_and_none_reused_after_a_change(monkeypatch):
    """The encoder's backward reuses the entries the decoder's backward sorted for the same
    indices; indices changed in place (or other indices) are sorted afresh."""
    from interp_kernels import triton_topk

    built = []
    original = triton_topk.SortedEntries

    def counting(idx_NK, num_rows):
        built.append(idx_NK.shape)
        return original(idx_NK, num_rows)

    monkeypatch.setattr(triton_topk, "SortedEntries", counting)
    tensors, grad_out = _inputs(11, 6, 13, 3, torch.float32)
    out = _step(tensors, grad_out, 3, "triton")
    assert len(built) == 1
    _assert_close(out, _reference(tensors, grad_out, out[2]), 1e-5)

    idx = torch.tensor([[0, 1], [2, 1]], device=DEVICE)
    first = triton_topk.sorted_entries(idx, 3, keep=True)
    idx[0, 0] = 2  # in place: the kept entries are stale
    second = triton_topk.sorted_entries(idx, 3, keep=False)
    assert second is not first and len(built) == 3
    assert triton_topk.sorted_entries(idx, 3, keep=False) is not second  # not kept


def test_bad_input_is_refused_with_the_fix():
    tensors, _ = _inputs(4, 3, 5, 2, torch.float32)
    x, W_enc, b_enc, b_dec, W_dec = tensors
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        topk_encode(x, W_enc, b_enc, b_dec, 2, backend="cuda")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="backend='torch'.*float64"):
        topk_encode(x.double(), W_enc.double(), b_enc.double(), b_dec.double(), 2, backend="triton")
    idx = torch.tensor([[0, 5]], device=DEVICE)
    with pytest.raises(ValueError, match=r"\[0, 5\] but W_dec has 5 rows"):
        topk_decode(idx, torch.ones(1, 2, device=DEVICE), W_dec, backend="triton")


def test_triton_on_cpu_without_the_interpreter_says_how(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(ValueError, match="needs CUDA tensors.*TRITON_INTERPRET=1"):
        resolve_backend("triton", "cpu")


def test_auto_picks_torch_on_cpu_and_logs_once(caplog, monkeypatch):
    monkeypatch.setattr(topk_module, "_logged_choices", set())
    with caplog.at_level(logging.INFO, logger="interp_kernels.topk"):
        assert resolve_backend("auto", "cpu") == "torch"
        assert resolve_backend("auto", torch.device("cpu")) == "torch"
    assert [r.getMessage() for r in caplog.records] == [
        "kernel backend auto -> torch (tensors are on cpu, not cuda)"
    ]
    if torch.cuda.is_available():
        assert resolve_backend("auto", "cuda") == "triton"


def test_importing_kernels_imports_no_triton():
    code = "import interp_kernels, interp_kernels.topk, interp.sae, sys; print('triton' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("n", "d", "m", "k"),
    [(257, 65, 130, 17), (40, 513, 96, 32), (700, 24, 6, 3), (16, 24, 300, 128)],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_triton_matches_torch_larger_grid(n, d, m, k, dtype):
    tensors, grad_out = _inputs(n, d, m, k, dtype, seed=n)
    out = _step(tensors, grad_out, k, "triton")
    if dtype == torch.float32:
        _assert_close(out, _reference(tensors, grad_out, out[2]), 1e-5)
        return
    # bf16 gradients are rounded to bf16 on the way (d top_acts is a bf16 tensor), which
    # with few latents and much cancellation costs up to ~6% against float64; the torch
    # backend rounds at the same places.
    _assert_close(out, _step(tensors, grad_out, k, "torch"), 2e-2)
    _assert_close(out, _reference(tensors, grad_out, out[2]), 1e-1)
