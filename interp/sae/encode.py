"""Encode a token range with dictionaries: one subject-model forward per batch of
windows feeds every dictionary at its hookpoint; the sparse codes come back per
dictionary (:class:`SliceActs`), ready for the latent store (the collect stage).

Tensor legend: B windows per forward, T = ctx_len, D = d_in, N = tokens, K = active
latents per token in a batch's code (TopK: k; threshold architectures: the most active
of any token of the batch, shorter rows padded with 0 = absent).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from interp.models.config import ModelConfig
    from interp.sae.recon import ReconSums


@dataclass(frozen=True)
class EncodeRange:
    """Tokens ``[start, stop)`` of a split's flattened windows (multiples of ``ctx_len``),
    encoded ``lm_batch_size`` windows per forward; positions below ``exclude_first`` are
    marked not kept. ``label`` names the progress bar."""

    ctx_len: int
    exclude_first: int
    lm_batch_size: int
    start: int
    stop: int
    label: str = "encode"


class SliceActs(NamedTuple):
    """Sparse codes of every token of one slice, for one dictionary."""

    latent_idx: np.ndarray  # [N, K] int
    latent_val: np.ndarray  # [N, K] float32
    token_ids: np.ndarray  # [N]
    keep: np.ndarray  # [N] bool: position in window >= data.exclude_first
    recon: ReconSums | None = None  # its reconstruction over the kept tokens, if measured

    def store_columns(self) -> dict[str, np.ndarray]:
        """What the latent store keeps of the slice (``interp.store.write_slice``)."""
        return {k: getattr(self, k) for k in ("latent_idx", "latent_val", "token_ids", "keep")}


def encode_windows(
    model: ModelConfig,
    windows: np.ndarray,
    dictionaries: Sequence[tuple[str, Any]],
    span: EncodeRange,
    device: Any,
    should_stop: Callable[[], bool],
    targets: Sequence[str | None] | None = None,
) -> list[SliceActs] | None:
    """Run the subject model once per batch of ``windows`` covering tokens
    ``[span.start, span.stop)`` and every ``(hookpoint, dictionary)`` on its hookpoint;
    one :class:`SliceActs` per dictionary, or None if asked to stop. ``targets[i]``: the
    hookpoint dictionary i reconstructs, to measure it there over the kept tokens
    (``SliceActs.recon``); None (or no ``targets``): not measured."""
    import torch
    from tqdm import tqdm

    from interp.models import load_subject
    from interp.sae.recon import ReconSums

    targets = list(targets) if targets is not None else [None] * len(dictionaries)
    hookpoints = list(dict.fromkeys([h for h, _ in dictionaries] + [t for t in targets if t]))
    subject = load_subject(model, hookpoints=hookpoints)
    sums = [ReconSums() if t else None for t in targets]
    _check_widths(getattr(subject, "widths", {}), dictionaries)
    ctx, batch = span.ctx_len, span.lm_batch_size
    w0, w1 = span.start // ctx, span.stop // ctx
    n = span.stop - span.start
    codes: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in dictionaries]
    quiet = not sys.stderr.isatty()  # batch logs: a line every 30 s, not every 0.1 s
    bar = tqdm(
        total=n, unit="tok", unit_scale=True, desc=span.label, mininterval=30 if quiet else 0.1
    )
    with torch.inference_mode(), bar:
        for b0 in range(w0, w1, batch):
            if should_stop():
                return None
            b1 = min(b0 + batch, w1)
            ids_BT = torch.from_numpy(np.asarray(windows[b0:b1], np.int64))
            captured = _capture(subject, ids_BT, hookpoints)
            for i, (hookpoint, sae) in enumerate(dictionaries):
                hidden_BTD = captured[hookpoint]
                x_ND = hidden_BTD.reshape(-1, hidden_BTD.shape[-1])
                acts_NK, idx_NK = sae.encode(x_ND.to(device))
                codes[i].append((idx_NK.cpu().numpy(), acts_NK.float().cpu().numpy()))
                if sums[i] is not None:
                    _measure(sums[i], sae, captured[targets[i]], acts_NK, idx_NK, span)
            bar.update((b1 - b0) * ctx)
    token_ids = np.asarray(windows[w0:w1]).reshape(-1)
    keep = np.arange(n) % ctx >= span.exclude_first
    return [
        SliceActs(*_stack_codes(member, n), token_ids, keep, recon)
        for member, recon in zip(codes, sums)
    ]


def _measure(sums: ReconSums, sae: Any, y_BTD: Any, acts_NK: Any, idx_NK: Any,
             span: EncodeRange) -> None:  # fmt: skip
    """Add one batch's reconstruction at its target, positions >= exclude_first only."""
    b, t = y_BTD.shape[:2]
    kept = (slice(None), slice(span.exclude_first, None))
    acts_BTK = acts_NK.reshape(b, t, -1)[kept]
    idx_BTK = idx_NK.reshape(b, t, -1)[kept]
    y_hat = sae.decode(
        acts_BTK.reshape(-1, acts_BTK.shape[-1]), idx_BTK.reshape(-1, idx_BTK.shape[-1])
    )
    y = y_BTD[kept].reshape(-1, y_BTD.shape[-1]).to(y_hat.device, y_hat.dtype)
    sums.add(y, y_hat, acts_BTK)


def _check_widths(widths: dict[str, int], dictionaries: Sequence[tuple[str, Any]]) -> None:
    for hookpoint, sae in dictionaries:
        width = widths.get(hookpoint, sae.d_in)
        if width != sae.d_in:
            raise ValueError(
                f"hookpoint {hookpoint!r} has width {width} but the dictionary has "
                f"d_in={sae.d_in}: the point's hook does not match its trained SAE"
            )


def _capture(subject: Any, ids_BT: Any, hookpoints: list[str]) -> dict[str, Any]:
    """{hookpoint: [B, T, D]} from one forward (``hidden`` when only one is read)."""
    if len(hookpoints) == 1:
        return {hookpoints[0]: subject.hidden(ids_BT)}
    return subject.capture(ids_BT)


def _stack_codes(codes: list[tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, ...]:
    """Per-forward [rows, K_b] codes -> one [n, max K_b] pair, padded with value 0."""
    k = max((idx.shape[1] for idx, _ in codes), default=1)
    latent_idx = np.zeros((n, k), np.int64)
    latent_val = np.zeros((n, k), np.float32)
    r0 = 0
    for idx, val in codes:
        r1 = r0 + idx.shape[0]
        latent_idx[r0:r1, : idx.shape[1]] = idx
        latent_val[r0:r1, : val.shape[1]] = val
        r0 = r1
    assert r0 == n, f"encoded {r0} tokens, expected {n}"
    return latent_idx, latent_val
