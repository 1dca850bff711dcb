"""``llm.backend=transformers``: a Hugging Face causal LM in this process (CPU or one GPU),
client in :mod:`interp.llm.transformers_backend`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from interp.llm.spec import BackendSpec, Discover
from interp.typed import meta as _meta
from interp.typed import positive as _positive

if TYPE_CHECKING:
    from interp.llm.base import LLMClient
    from interp.llm.config import LLMConfig


@dataclass(frozen=True)
class TransformersConfig:
    """The ``llm.*`` keys only the in-process transformers backend reads."""

    device: str = field(default="auto", metadata=_meta("'auto', 'cpu', 'cuda', ..."))
    score_batch_size: int = field(
        default=8, metadata=_meta("Scored examples per forward over a shared prompt prefix.")
    )

    def __post_init__(self) -> None:
        _positive(self, "score_batch_size", section="llm")


def build(cfg: LLMConfig, discover: Discover | None) -> LLMClient:
    from interp.llm.transformers_backend import TransformersClient

    return TransformersClient(cfg)


SPEC = BackendSpec(
    name="transformers",
    build=build,
    config=TransformersConfig,
    logprobs="exact",
    prefix_caching=True,
)
