"""The store a pretrained point's collect commits equals the ORIGINAL package's encode of
the same activations (issue 16 item 4): the checkpoint is collected through the real
pipeline on the tiny model, the same layer-2 activations are captured directly, and the
real eai-sparsify / SAELens (in the private fixture venv that
tests/fixtures/make_interop_fixtures.py builds) encode them with their own code.

Runs only where that venv exists (a developer machine, or CI once it is cached); the
store holds float16 values, so values agree to float16 rounding and the active sets agree
exactly except where an activation sits within float16 rounding of the TopK cut or the
JumpReLU threshold.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from make_interop_fixtures import venv_dir  # noqa: E402
from test_pretrained_metrics import (  # noqa: E402
    N_TOKENS,
    SPARSIFY,
    WINDOWS,
    collect_all,
    pretrained,
    windows,  # noqa: F401  (fixture)
)

from interp.runs import RunPaths  # noqa: E402

pytestmark = [pytest.mark.unit, pytest.mark.slow]

SAELENS = SPARSIFY.parent / "saelens_tiny_jumprelu"
PYTHON = venv_dir() / "bin" / "python"

PACKAGE_ENCODE = """
import sys, numpy as np, torch
kind, folder, x_file, out_file = sys.argv[1:]
x = torch.from_numpy(np.load(x_file))
with torch.no_grad():
    if kind == "sparsify":
        from sparsify import SparseCoder
        sae = SparseCoder.load_from_disk(folder).float()
        out = sae.encode(x)
        dense = torch.zeros(x.shape[0], sae.num_latents).scatter_(1, out.top_indices, out.top_acts)
    else:
        from sae_lens import SAE
        dense = SAE.load_from_disk(folder).encode(x)
np.save(out_file, dense.float().numpy())
"""


def store_dense(paths: RunPaths, width: int) -> np.ndarray:
    """Every committed slice group of the point's store as one dense [tokens, latents]."""
    from interp.store.format import read_part, read_slice_info

    dense = np.zeros((N_TOKENS, width), np.float32)
    for group in sorted((paths.store_dir() / "slices").iterdir()):
        if read_slice_info(group) is None:
            continue
        csr = read_part(group, 0, width)
        for i in range(width):
            lo, hi = csr.offsets[i], csr.offsets[i + 1]
            dense[csr.tok[lo:hi], i] = csr.val[lo:hi]
    return dense


@pytest.mark.skipif(not PYTHON.exists(), reason=f"no interop venv at {PYTHON.parent.parent}")
@pytest.mark.parametrize(("kind", "source", "folder"), [
    ("sparsify", SPARSIFY, SPARSIFY / "layers.2"),
    ("saelens", SAELENS, SAELENS),
])  # fmt: skip
def test_the_store_equals_the_package_encode(tmp_path: Path, windows, kind, source, folder):  # noqa: F811
    from interp.models import load_subject

    cfg = pretrained(tmp_path, source)
    paths = RunPaths(tmp_path, cfg)
    collect_all([(cfg, paths)])
    width = cfg.sae.num_latents
    got = store_dense(paths, width)

    subject = load_subject(cfg.model, hookpoints=["layers.2"])
    with torch.no_grad():
        x = subject.capture(torch.from_numpy(WINDOWS[: N_TOKENS // 32]))["layers.2"]
    x_file, out_file = tmp_path / "x.npy", tmp_path / "acts.npy"
    np.save(x_file, x.reshape(-1, x.shape[-1]).float().numpy())
    subprocess.run([str(PYTHON), "-c", PACKAGE_ENCODE, kind, str(folder), str(x_file),
                    str(out_file)], check=True, capture_output=True)  # fmt: skip
    want = np.load(out_file)

    kept = got.any(axis=1)  # positions the store keeps (data.exclude_first are left out)
    assert kept.sum() >= N_TOKENS * 0.9 and want[kept].any()
    both = (got[kept] > 0) & (want[kept] > 0)
    differ = (got[kept] > 0) != (want[kept] > 0)
    max_delta = float(np.abs(got[kept][both] - want[kept][both]).max())
    print(json.dumps({"format": kind, "max_abs_delta": max_delta,
                      "active_set_mismatches": int(differ.sum()),
                      "active_entries": int((want[kept] > 0).sum())}))  # fmt: skip
    np.testing.assert_allclose(got[kept][both], want[kept][both], rtol=2e-3, atol=2e-3)
    assert differ.sum() <= 0.001 * (want[kept] > 0).sum()
