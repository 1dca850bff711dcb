"""The CPU encoder's reused pre-activation buffer never leaks one call's values into
another: inference-mode encodes, a wider dictionary and training interleave safely."""

from __future__ import annotations

import pytest
import torch

from interp.sae import TopKSAE

pytestmark = pytest.mark.unit


def test_encode_under_inference_mode_then_train_in_the_same_process() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=gen)
    narrow = TopKSAE(16, 32, 4, generator=torch.Generator().manual_seed(1))
    wide = TopKSAE(16, 96, 4, generator=torch.Generator().manual_seed(2))
    reference = [m.encode(x) for m in (narrow, wide)]  # before the buffer is shared
    narrow(x).loss.backward()
    grad_before = narrow.encoder.weight.grad.clone()
    narrow.zero_grad(set_to_none=True)
    with torch.inference_mode():
        wide.encode(torch.randn(128, 16, generator=gen))  # grows the buffer
    out = narrow(x)
    out.loss.backward()
    torch.testing.assert_close(narrow.encoder.weight.grad, grad_before, rtol=0, atol=0)
    for sae, (acts, _) in zip((narrow, wide), reference):
        again = sae.encode(x)
        torch.testing.assert_close(again.top_acts.sort(-1).values, acts.sort(-1).values)
    # the training forward's code equals a fresh encode (no stale buffer contents)
    fresh = narrow.encode(x)
    torch.testing.assert_close(out.top_acts.sort(-1).values, fresh.top_acts.sort(-1).values)
