"""LLM clients for explaining and scoring: one async protocol, backends, response cache.

``build_client`` is the only place a backend is chosen: in-process transformers,
an OpenAI-compatible HTTP server (``http``: vLLM, llama.cpp's server, OpenRouter) or
vLLM's offline engine (``vllm``). API keys are read from the environment by the HTTP
backend, never from configs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from interp.llm.ledger import Ledger, LedgerClient

__all__ = [
    "CachedClient",
    "ChoiceLogprobs",
    "Generation",
    "LLMClient",
    "Ledger",
    "LedgerClient",
    "Message",
    "MeteredClient",
    "ResponseCache",
    "TokenUsage",
    "build_client",
    "cache_key",
]


def build_client(
    cfg: LLMConfig,
    cache_path: Path | None = None,
    *,
    discover: Callable[[], Sequence[str]] | None = None,
    ledger: Ledger | None = None,
) -> LLMClient:
    """The configured backend, wrapped in the response cache when ``cfg.cache`` and a path.

    ``ledger``: every call that reaches the backend (not answered by the cache) is
    appended to it (:mod:`interp.llm.ledger`: what each attempt paid).

    The model itself loads lazily, on the first call the cache cannot answer.
    ``discover`` (backend=http) returns the live server URLs, e.g. the replicas a serve
    stage published in the run folder; it is asked again when none of them answers.
    """
    if cfg.backend == "transformers":
        from interp.llm.transformers_backend import TransformersClient

        client: LLMClient = TransformersClient(cfg)
    elif cfg.backend == "http":
        from interp.llm.http import OpenAIClient

        client = OpenAIClient(cfg, discover=discover)
    elif cfg.backend == "vllm":
        from interp.llm.vllm_backend import VLLMClient

        client = VLLMClient(cfg)
    else:  # pragma: no cover - the Literal admits only the backends above
        raise ValueError(f"llm.backend={cfg.backend!r}: use 'transformers', 'http' or 'vllm'")
    if ledger is not None:
        client = LedgerClient(client, ledger)
    if cfg.cache and cache_path is not None:
        client = CachedClient(client, ResponseCache(cache_path))
    return client
