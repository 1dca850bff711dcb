"""The sources of hard negatives a task builds once for every latent of its range."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from interp.latents.config import ExamplesConfig


def build_negative_sources(
    ecfg: ExamplesConfig,
    ctx_len: int,
    reader: Any,
    csr: Any,
    token_ids: np.ndarray,
    decode: Callable[[list[int]], str],
    embedder: Callable[[], Any],
) -> dict[str, Any]:
    """What ``examples.negatives`` needs, as keyword arguments of ``build_examples``: a
    co-occurrence index over this range ('neighbours') or an embedded pool of candidate
    windows ('similar', embedded by ``embedder()``, the scorers' shared embedder)."""
    if ecfg.negatives == "neighbours":
        from interp.latents.cooccurrence import index_for_range

        return {"cooccurrence": index_for_range(reader, csr, ecfg.neighbour_tokens)}
    if ecfg.negatives == "similar":
        from interp.latents.negatives import SimilarPool

        return {"similar": SimilarPool.build(token_ids, ctx_len, ecfg, embedder(), decode)}
    return {}
