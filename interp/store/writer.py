"""Write one collect task's token slice as a latent-sorted CSR group (layout C).

The group is built under a temporary name, its attrs (``complete: true`` among them)
are written last, and the directory is renamed into place. A killed writer leaves only
a ``*.tmp-*`` directory that readers ignore and the next attempt removes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from interp.store.csr import sort_by_latent
from interp.store.format import SCHEMA_VERSION, SliceInfo, read_slice_info, write_group

log = logging.getLogger(__name__)

MAX_TOKENS = 2**32  # tok is uint32 (pitfall 11)


def token_dtype_for(max_token_id: int) -> str:
    """Smallest unsigned dtype holding every token id (uint16 halves the token array)."""
    return "uint16" if max_token_id < 2**16 else "uint32"


def write_slice(
    group: Path,
    *,
    token_start: int,
    token_stop: int,
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    token_ids: np.ndarray,
    keep: np.ndarray,
    n_latents: int,
    token_dtype: str | None = None,
) -> SliceInfo:
    """Commit tokens ``[token_start, token_stop)`` and their TopK latents as one group.

    Row ``i`` of the inputs is global token ``token_start + i``. Entries of tokens with
    ``keep=False`` and values not > 0 (after a float16 cast that clips at 65504) are
    dropped. ``token_dtype`` should be the same for every slice of a store (pass
    ``token_dtype_for(max id of the whole corpus)``); None picks it from this slice.
    Idempotent: if ``group`` is already committed it is returned untouched.
    """
    existing = read_slice_info(group)
    if existing is not None:
        _check_same_slice(existing, token_start, token_stop, n_latents)
        log.info("slice %s already committed (%d entries); nothing to do", group.name, existing.nnz)
        return existing
    if group.exists():
        raise ValueError(
            f"{group} exists but is not a committed slice group (no complete=true attr); "
            "it is not from this writer's protocol: delete it and rerun collect"
        )
    _check_inputs(token_start, token_stop, latent_idx, latent_val, token_ids, keep, n_latents)
    dtype = token_dtype or token_dtype_for(int(token_ids.max(initial=0)))
    csr, n_clipped = sort_by_latent(token_start, latent_idx, latent_val, keep, n_latents)
    if n_clipped:
        log.warning("slice %s: %d values above float16 max clipped to 65504", group.name, n_clipped)
    attrs = {
        "kind": "slice",
        "schema": SCHEMA_VERSION,
        "token_start": int(token_start),
        "token_stop": int(token_stop),
        "nnz": csr.nnz,
        "n_latents": int(n_latents),
        "token_dtype": dtype,
        "n_clipped": n_clipped,
        "complete": True,
    }
    write_group(group, csr, {"tokens": (np.asarray(token_ids).astype(dtype), "tokens")}, attrs)
    info = read_slice_info(group)
    assert info is not None, f"{group} missing after rename"
    log.info(
        "wrote slice %s: %d tokens, %d entries", group.name, token_stop - token_start, info.nnz
    )
    return info


def _check_same_slice(info: SliceInfo, token_start: int, token_stop: int, n_latents: int) -> None:
    if (info.token_start, info.token_stop, info.n_latents) != (token_start, token_stop, n_latents):
        raise ValueError(
            f"{info.path} holds tokens [{info.token_start}, {info.token_stop}) of "
            f"{info.n_latents} latents, not [{token_start}, {token_stop}) of {n_latents}: "
            "the slicing or SAE changed under the same store; delete the store and rerun collect"
        )


def _check_inputs(
    token_start: int,
    token_stop: int,
    latent_idx: np.ndarray,
    latent_val: np.ndarray,
    token_ids: np.ndarray,
    keep: np.ndarray,
    n_latents: int,
) -> None:
    n = token_stop - token_start
    if not 0 <= token_start < token_stop <= MAX_TOKENS:
        raise ValueError(
            f"token slice [{token_start}, {token_stop}) must be non-empty and inside [0, 2^32)"
        )
    if latent_idx.ndim != 2 or latent_idx.shape[0] != n or latent_val.shape != latent_idx.shape:
        raise ValueError(
            f"latent_idx {latent_idx.shape} and latent_val {latent_val.shape} must both be "
            f"[{n}, k] for the {n} tokens of [{token_start}, {token_stop})"
        )
    if token_ids.shape != (n,) or keep.shape != (n,):
        raise ValueError(f"token_ids {token_ids.shape} and keep {keep.shape} must be [{n}]")
    if not 0 < n_latents < 2**32:
        raise ValueError(f"n_latents={n_latents} must be in (0, 2^32)")
    if latent_idx.size and (latent_idx.min() < 0 or latent_idx.max() >= n_latents):
        raise ValueError(
            f"latent ids span [{latent_idx.min()}, {latent_idx.max()}], outside "
            f"[0, n_latents={n_latents}): pass the SAE's num_latents"
        )
