"""``llm.backend=vllm``: vLLM's offline engine in this process (GPU nodes), client in
:mod:`interp.llm.vllm_backend`. It reads only shared ``llm.*`` keys (model, dtype,
tokenizer, max_concurrency, top_logprobs), so it declares no config part."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.llm.spec import BackendSpec, Discover

if TYPE_CHECKING:
    from interp.llm.base import LLMClient
    from interp.llm.config import LLMConfig


def build(cfg: LLMConfig, discover: Discover | None) -> LLMClient:
    from interp.llm.vllm_backend import VLLMClient

    return VLLMClient(cfg)


SPEC = BackendSpec(
    name="vllm",
    build=build,
    logprobs="top_k",
    prefix_caching=True,
    requires=("vllm",),
    install_hint="vLLM in this environment: pip install vllm",
)
