"""What the pipeline needs to know about an LLM backend: :class:`BackendSpec`.

A backend is one module that declares a spec (its name, how to build its client, the
part of ``LLMConfig`` it reads, what it can do) and one line in
:data:`interp.llm.registry.BUILTIN_BACKENDS`, or a :func:`interp.llm.registry.register_backend`
call at run time. Nothing else in the library names a backend: ``build_client``, the
config's check of ``llm.backend``, preflight and the planner ask the spec.

This module is imported by the config, so it and every spec module stay light: a spec's
``build`` imports its client (torch, httpx, vllm) only when called.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from interp.llm.base import LLMClient

Discover = Callable[[], Sequence[str]]
"""Returns the live server URLs (e.g. the replicas a serve stage published)."""

BuildClient = Callable[[Any, "Discover | None"], "LLMClient"]
"""``build(llm_config, discover) -> LLMClient``; the model itself may load lazily."""


@dataclass(frozen=True)
class BackendSpec:
    """One LLM backend, as the rest of the pipeline sees it."""

    name: str
    """The value of ``llm.backend`` that selects it."""
    build: BuildClient
    """Its client from the ``llm`` config (and the replica discovery, if it uses one)."""
    config: type | None = None
    """Its frozen dataclass of the ``llm.*`` keys only it reads, composed unprefixed into
    ``LLMConfig`` for the built-in backends (``cfg.part(config)`` gives it back typed).
    A backend registered at run time adds no keys: ``part`` gives its defaults."""
    loads_model: bool = True
    """``llm.model`` is loaded in this process (preflight resolves it); False when it is
    only the name sent to a server (then ``llm.api_key_env`` and ``llm.tokenizer`` are
    what preflight checks)."""
    logprobs: Literal["exact", "top_k"] = "exact"
    """``exact``: every candidate's log-prob is computed; ``top_k``: read from the top
    ``llm.top_logprobs`` list, so a candidate outside it reads -inf."""
    prefix_caching: bool = False
    """A prompt prefix shared by calls (system prompt, scorer instructions) is computed
    once and reused, so batching calls that share one pays."""
    discovery: bool = False
    """It can talk to served replicas found at run time (``serve.enabled=true`` needs it)."""
    requires: tuple[str, ...] = ()
    """Modules that must import for it to run (checked by preflight before submitting)."""
    install_hint: str = ""
    """What preflight says when one of ``requires`` is missing: ``needs <install_hint>``."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"backend name {self.name!r} must be an identifier, e.g. 'my_api'")
        if self.logprobs not in ("exact", "top_k"):
            raise ValueError(f"BackendSpec.logprobs={self.logprobs!r}: use 'exact' or 'top_k'")
