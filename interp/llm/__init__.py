"""LLM clients for explaining and scoring: one async protocol, backends, response cache.

``build_client`` builds the backend ``llm.backend`` names in :mod:`interp.llm.registry`:
in-process transformers, an OpenAI-compatible HTTP server (``http``: vLLM, llama.cpp's
server, OpenRouter), vLLM's offline engine (``vllm``), or one registered at run time
(:func:`register_backend`). API keys are read from the environment by the HTTP backend,
never from configs.
"""

from __future__ import annotations

from pathlib import Path

from interp.llm.base import (
    ChoiceLogprobs,
    Generation,
    LLMClient,
    Message,
    MeteredClient,
    TokenUsage,
)
from interp.llm.cache import CachedClient, ResponseCache, cache_key
from interp.llm.config import LLMConfig
from interp.llm.errors import LLMHTTPError, LLMResponseError, LLMUnavailableError
from interp.llm.ledger import Ledger, LedgerClient
from interp.llm.registry import backend_names, backend_spec, register_backend
from interp.llm.spec import BackendSpec, Discover

__all__ = [
    "BackendSpec",
    "CachedClient",
    "ChoiceLogprobs",
    "Generation",
    "LLMClient",
    "LLMHTTPError",
    "LLMResponseError",
    "LLMUnavailableError",
    "Ledger",
    "LedgerClient",
    "Message",
    "MeteredClient",
    "ResponseCache",
    "TokenUsage",
    "backend_names",
    "backend_spec",
    "build_client",
    "cache_key",
    "register_backend",
]


def build_client(
    cfg: LLMConfig,
    cache_path: Path | None = None,
    *,
    discover: Discover | None = None,
    ledger: Ledger | None = None,
) -> LLMClient:
    """The client of the backend ``cfg.backend`` names (:mod:`interp.llm.registry`), wrapped
    in the response cache when ``cfg.cache`` and a path.

    ``ledger``: every call that reaches the backend (not answered by the cache) is
    appended to it (:mod:`interp.llm.ledger`: what each attempt paid).

    The model itself loads lazily, on the first call the cache cannot answer.
    ``discover`` (backends with ``discovery``, e.g. http) returns the live server URLs, e.g.
    the replicas a serve stage published in the run folder; it is asked again when none of
    them answers. Other backends never see it.
    """
    spec = backend_spec(cfg.backend)
    client = spec.build(cfg, discover if spec.discovery else None)
    if ledger is not None:
        client = LedgerClient(client, ledger)
    if cfg.cache and cache_path is not None:
        client = CachedClient(client, ResponseCache(cache_path))
    return client
