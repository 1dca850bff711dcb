"""``llm.backend=http``: an OpenAI-compatible server (vLLM, llama.cpp's server, OpenRouter)
at ``llm.base_urls`` or at replicas discovered at run time; client in
:mod:`interp.llm.http`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from interp.llm.keys import API_KEY_ENV_ERROR, is_variable_name
from interp.llm.spec import BackendSpec, Discover
from interp.typed import meta as _meta
from interp.typed import positive as _positive

if TYPE_CHECKING:
    from interp.llm.base import LLMClient
    from interp.llm.config import LLMConfig


@dataclass(frozen=True)
class HTTPConfig:
    """The ``llm.*`` keys only the HTTP backend reads."""

    base_urls: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "backend=http: server base URLs ending in /v1 (e.g. http://127.0.0.1:8000/v1, "
            "https://openrouter.ai/api/v1). Several = replicas; requests go to the one with "
            "the fewest in flight and fail over when one refuses connections.",
            id=False,
        ),
    )
    served_model: str = field(
        default="",
        metadata=_meta(
            "backend=http: the model name sent in requests (the server's alias, e.g. "
            "'smollm2' or 'qwen/qwen-2.5-coder-32b-instruct'). Empty = `model`.",
            id="when_set",
        ),
    )
    api_key_env: str = field(
        default="",
        metadata=_meta(
            "backend=http: name of the environment variable holding the API key (e.g. "
            "OPENROUTER_API_KEY). The key itself is never put in a config. Empty = no key.",
            id=False,
        ),
    )
    timeout_s: float = field(
        default=120.0,
        metadata=_meta(
            "backend=http: wall-clock seconds per request attempt, reply body included (a "
            "server that trickles bytes or never ends its reply is cut there, then retried).",
            id=False,
        ),
    )
    max_retries: int = field(
        default=4,
        metadata=_meta(
            "backend=http: retries after a timeout, dropped connection, 429, 5xx or garbage "
            "body (exponential backoff with jitter; Retry-After honoured).",
            id=False,
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "timeout_s", section="llm")
        if self.max_retries < 0:
            raise ValueError(f"llm.max_retries={self.max_retries} must be >= 0 (0 = no retry)")
        for url in self.base_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"llm.base_urls entry {url!r} must start with http:// or https:// "
                    "(e.g. http://127.0.0.1:8000/v1)"
                )
        if self.api_key_env and not is_variable_name(self.api_key_env):
            raise ValueError(f"{API_KEY_ENV_ERROR} (the value is not shown)")


def build(cfg: LLMConfig, discover: Discover | None) -> LLMClient:
    from interp.llm.http import OpenAIClient

    return OpenAIClient(cfg, discover=discover)


SPEC = BackendSpec(
    name="http",
    build=build,
    config=HTTPConfig,
    loads_model=False,
    logprobs="top_k",
    discovery=True,
)
