"""The ``llm`` and ``serve`` sections of the run config.

``LLMConfig`` is composed (:func:`interp.compose.compose_section`) from the fields every
backend or caller reads (:class:`LLMCommon`) and the config part of each built-in backend
(:data:`interp.llm.registry.BUILTIN_BACKENDS`), unprefixed: the keys stay ``llm.<field>``
as they always were, and a backend reads its own typed part with ``cfg.part(Cls)``.
``llm.backend`` is checked against the registry, so a backend registered at run time can
be selected too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from interp.compose import Part, compose_section
from interp.llm.keys import API_KEY_ENV_ERROR, KEY_PREFIXES, is_variable_name
from interp.llm.registry import BUILTIN_BACKENDS, backend_spec
from interp.models.config import Dtype
from interp.typed import meta as _meta
from interp.typed import positive as _positive

__all__ = [
    "API_KEY_ENV_ERROR",
    "KEY_PREFIXES",
    "LLMCommon",
    "LLMConfig",
    "ServeConfig",
    "is_variable_name",
]


@dataclass(frozen=True)
class LLMCommon:
    """The explainer/scorer language model and how it is reached.

    Here: the keys more than one backend reads (dtype, tokenizer, max_concurrency,
    top_logprobs) or that the callers read (model names the records, temperature, cache).
    A key only one backend reads is declared in that backend's config part.
    """

    backend: str = field(
        default="transformers",
        metadata=_meta(
            "transformers: in-process (CPU or GPU). http: an OpenAI-compatible server "
            "(vLLM, llama.cpp's server, OpenRouter) at `base_urls`. vllm: vLLM's offline "
            "engine in this process (GPU nodes; `pip install vllm`)."
        ),
    )
    model: str = field(
        default="qwen2.5-coder-1.5b-instruct",
        metadata=_meta("Bundled offline name, local HF folder, or hub id."),
    )
    dtype: Dtype = field(default="bfloat16", metadata=_meta("Weights dtype."))
    temperature: float = field(default=0.0, metadata=_meta("0 = greedy decoding."))
    cache: bool = field(
        default=True,
        metadata=_meta("Content-addressed response cache in the run folder.", id=False),
    )
    tokenizer: str = field(
        default="",
        metadata=_meta(
            "backend=http: a tokenizer of the served model (bundled name, local HF folder "
            "or hub id) to render its chat template client-side. Needed for "
            "continuation_logprobs and assistant prefills over HTTP; without it those calls "
            "raise. Empty = none.",
            id="when_set",
        ),
    )
    max_concurrency: int = field(
        default=8,
        metadata=_meta(
            "backend=http/vllm: requests in flight at once from this process (keep a "
            "server's continuous batching full).",
            id=False,
        ),
    )
    top_logprobs: int = field(
        default=20,
        metadata=_meta(
            "backend=http/vllm: top-k log-probs requested per position; a candidate outside "
            "the top k reads as -inf. OpenAI caps it at 20, vLLM at its max_logprobs.",
            id="when_set",
        ),
    )

    def __post_init__(self) -> None:
        backend_spec(self.backend)  # a ValueError naming the registered backends
        _positive(self, "max_concurrency", "top_logprobs", section="llm")
        if self.temperature < 0:
            raise ValueError("llm.temperature must be >= 0")


LLMConfig = compose_section(
    "LLMConfig",
    __name__,
    LLMCommon,
    [Part(spec.config) for spec in BUILTIN_BACKENDS if spec.config is not None],
)
"""The ``llm`` section: :class:`LLMCommon` plus every built-in backend's config part."""


@dataclass(frozen=True)
class ServeConfig:
    """Served LLM mode: replicas of an OpenAI-compatible server as SLURM jobs that the
    interpret array talks to (``llm.backend=http``). Nothing here changes results (the
    model that answers is named by ``llm``), so no field enters a run id."""

    enabled: bool = field(
        default=False,
        metadata=_meta(
            "Start server jobs before the interpret array (SLURM profiles only); interpret "
            "tasks find them in <sweep>/serve/<id>/replicas/ and need llm.backend=http.",
            id=False,
        ),
    )
    engine: Literal["llama_cpp", "vllm"] = field(
        default="llama_cpp",
        metadata=_meta(
            "llama_cpp: llama-cpp-python's server on CPU (tests, small runs). vllm: `vllm "
            "serve` on the replica's GPUs.",
            id=False,
        ),
    )
    model: str = field(
        default="",
        metadata=_meta(
            "What the server loads: llama_cpp a bundled GGUF name or .gguf path, vllm a hub "
            "id or local folder. Empty = llm.model. Served under the name llm.served_model.",
            id=False,
        ),
    )
    replicas: int = field(default=1, metadata=_meta("Server jobs (replicas).", id=False))
    gpus_per_replica: int = field(
        default=0,
        metadata=_meta("GPUs per replica job; 0 = the cluster profile's serve stage.", id=False),
    )
    tensor_parallel: int = field(
        default=1,
        metadata=_meta("vllm: tensor-parallel size (<= gpus_per_replica).", id=False),
    )
    time_min: int = field(
        default=0,
        metadata=_meta(
            "Wall-clock limit of a replica job in minutes; 0 = the cluster profile's serve "
            "stage. Servers also stop as soon as the interpret array is finished.",
            id=False,
        ),
    )
    port_range: tuple[int, ...] = field(
        default=(8100, 8199),
        metadata=_meta("[first, last] port a replica may listen on (first free one).", id=False),
    )
    n_ctx: int = field(default=4096, metadata=_meta("llama_cpp: context size.", id=False))
    extra_args: tuple[str, ...] = field(
        default=(),
        metadata=_meta("More command-line arguments for the server.", id=False),
    )
    startup_timeout_s: float = field(
        default=900.0,
        metadata=_meta(
            "How long a replica may take to answer its health check, and how long an "
            "interpret task waits for a first live replica before failing.",
            id=False,
        ),
    )
    poll_s: float = field(
        default=5.0,
        metadata=_meta(
            "Seconds between checks: a replica's watcher (is the interpret array finished?) "
            "and an interpret task's watchdog (is any replica still alive?).",
            id=False,
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "replicas", "tensor_parallel", "n_ctx", "startup_timeout_s", "poll_s")
        if self.gpus_per_replica < 0 or self.time_min < 0:
            raise ValueError("serve.gpus_per_replica and serve.time_min must be >= 0")
        if len(self.port_range) != 2 or not 0 < self.port_range[0] <= self.port_range[1] < 65536:
            raise ValueError(
                f"serve.port_range={list(self.port_range)} must be [first, last] with "
                "0 < first <= last < 65536, e.g. [8100, 8199]"
            )
        if (
            self.engine == "vllm"
            and self.gpus_per_replica
            and (self.tensor_parallel > self.gpus_per_replica)
        ):
            raise ValueError(
                f"serve.tensor_parallel={self.tensor_parallel} exceeds serve.gpus_per_replica="
                f"{self.gpus_per_replica}: raise gpus_per_replica or lower tensor_parallel"
            )
