"""Gemma Scope's ``params.npz``: JumpReLU SAEs (and transcoders) as our JumpReLU.

Gemma Scope (google/gemma-scope-*) stores one SAE per folder
``layer_<L>/width_<W>/average_l0_<N>/params.npz`` holding, in numpy arrays::

    W_enc [D, M]   b_enc [M]   W_dec [M, E]   b_dec [E]   threshold [M]

and its published forward (the Gemma Scope tutorial) is::

    pre = x @ W_enc + b_enc              # NO b_dec subtracted from x
    f   = relu(pre) * (pre > threshold)
    x_hat = f @ W_dec + b_dec

Ours computes ``pre = (x - b_dec) @ W_enc + bias``, so an SAE loads with
``bias = b_enc + b_dec @ W_enc`` (SAELens' ``apply_b_dec_to_input=false`` fold); a
transcoder (E may differ from D, b_dec lives in the output space) loads with
``transcode=True`` and ``bias = b_enc``. A negative threshold acts as 0 (relu), so it
is clamped at 0. Shapes: D = ``d_in``, E = ``d_out``, M = latents.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from interp.sae.base import SparseCoder

GEMMA_SCOPE_FILE = "params.npz"
GEMMA_SCOPE_ARRAYS = ("W_enc", "b_enc", "W_dec", "b_dec", "threshold")


def npz_shapes(file: str | Path) -> dict[str, tuple[int, ...]]:
    """{array name: shape} of an ``.npz`` from its members' ``.npy`` headers (no data read)."""
    import numpy as np

    shapes: dict[str, tuple[int, ...]] = {}
    with zipfile.ZipFile(file) as zf:
        for member in zf.namelist():
            if not member.endswith(".npy"):
                continue
            with zf.open(member) as fh:
                version = np.lib.format.read_magic(fh)
                read = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, _fortran, _dtype = read(fh)
            shapes[member.removesuffix(".npy")] = tuple(int(s) for s in shape)
    return shapes


def check_gemma_scope_shapes(
    file: Path, shapes: dict[str, tuple[int, ...]]
) -> tuple[int, int, int]:
    """(d_in, d_out, num_latents) of a Gemma Scope file, its arrays checked against the
    documented layout."""
    missing = [name for name in GEMMA_SCOPE_ARRAYS if name not in shapes]
    extra = sorted(set(shapes) - set(GEMMA_SCOPE_ARRAYS))
    if missing or extra:
        raise ValueError(
            f"{file}: a Gemma Scope params.npz holds {list(GEMMA_SCOPE_ARRAYS)}; this one "
            f"lacks {missing} and has {extra}: pass sae.format=<its real format>"
        )
    (d_in, m), (m2, d_out) = shapes["W_enc"], shapes["W_dec"]
    want = {"W_dec": (m, d_out), "b_enc": (m,), "b_dec": (d_out,), "threshold": (m,)}
    bad = {k: shapes[k] for k, v in want.items() if shapes[k] != v}
    if m2 != m or bad:
        raise ValueError(f"{file}: shapes {shapes} do not fit W_enc {shapes['W_enc']}")
    return d_in, d_out, m


def load_gemma_scope(
    file: str | Path, *, transcode: bool = False, device: str | torch.device = "cpu"
) -> SparseCoder:
    """Load a Gemma Scope ``params.npz`` as our JumpReLU (float32); ``transcode`` for the
    transcoder releases. Gives the tutorial forward's latents and reconstructions."""
    import numpy as np

    from interp.sae.saelens import build_from_tensors

    path = Path(file)
    d_in, d_out, _m = check_gemma_scope_shapes(path, npz_shapes(path))
    if d_out != d_in and not transcode:
        raise ValueError(
            f"{path}: W_dec writes width {d_out}, not d_in={d_in}: a transcoder (pass it "
            "from a '-transcoders' release folder)"
        )
    with np.load(path) as npz:
        t = {k: torch.from_numpy(np.asarray(npz[k], dtype=np.float32)) for k in GEMMA_SCOPE_ARRAYS}
    bias_M = t["b_enc"] if transcode else t["b_enc"] + t["b_dec"] @ t["W_enc"]
    ours = {
        "encoder.weight": t["W_enc"].T.contiguous(),
        "encoder.bias": bias_M,
        "W_dec": t["W_dec"],
        "b_dec": t["b_dec"],
        "threshold": t["threshold"].clamp_min(0.0),
    }
    return build_from_tensors("jumprelu", d_in, ours, {}, device, transcode=transcode)
