"""LLM clients for explaining and scoring: one async protocol, backends, response cache.

``build_client`` is the only place a backend is chosen. API keys (for the HTTP backend
that comes next) are read from the environment by that backend, never from configs.
"""

from __future__ import annotations

from pathlib import Path

from interp.config import LLMConfig
from interp.llm.base import (
    ChoiceLogprobs,
    Generation,
    LLMClient,
    Message,
    MeteredClient,
    TokenUsage,
)
from interp.llm.cache import CachedClient, ResponseCache, cache_key

__all__ = [
    "CachedClient",
    "ChoiceLogprobs",
    "Generation",
    "LLMClient",
    "Message",
    "MeteredClient",
    "ResponseCache",
    "TokenUsage",
    "build_client",
    "cache_key",
]


def build_client(cfg: LLMConfig, cache_path: Path | None = None) -> LLMClient:
    """The configured backend, wrapped in the response cache when ``cfg.cache`` and a path.

    The model itself loads lazily, on the first call the cache cannot answer.
    """
    if cfg.backend == "transformers":
        from interp.llm.transformers_backend import TransformersClient

        client: LLMClient = TransformersClient(cfg)
    else:  # pragma: no cover - the Literal admits only the backends above
        raise ValueError(f"llm.backend={cfg.backend!r} is not implemented; use 'transformers'")
    if cfg.cache and cache_path is not None:
        client = CachedClient(client, ResponseCache(cache_path))
    return client
