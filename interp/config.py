"""Typed, validated configuration for every stage.

Precedence: dataclass defaults < YAML in ``conf/`` (composed by Hydra in ``launch/``)
< command-line overrides. ``launch/`` turns the composed config into a plain dict and
calls :func:`load_run_config`, which refuses unknown keys, wrong types and values
outside their closed set with a ``ValueError`` that names the key and the fix. The
resolved config is frozen and saved in the run folder.

Each stage reads only its own sub-config (``cfg.train``, ``cfg.collect``, ...). Fields
whose metadata says ``{"id": False}`` change logging only and are left out of run ids.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Literal

# Re-exported from their components (importers still name them from here).
from interp.explain.config import ExplainerConfig  # noqa: F401  (re-exported)
from interp.interpret.config import InterpretConfig
from interp.latents.config import ExamplesConfig  # noqa: F401  (re-exported)
from interp.sae.config import SAEConfig as SAEConfig
from interp.score.config import ScorerConfig
from interp.train.config import DistBackend as DistBackend
from interp.train.config import DistConfig as DistConfig
from interp.train.config import DistStrategy as DistStrategy
from interp.train.config import TrainConfig as TrainConfig
from interp.typed import build, describe, id_dict, to_dict

__all__ = ["RunConfig", "build", "describe", "id_dict", "load_run_config", "to_dict"]

Dtype = Literal["float32", "bfloat16", "float16"]


def _meta(doc: str, *, id: bool | Literal["when_set"] = True) -> dict[str, Any]:
    return {"doc": doc, "id": id}


@dataclass(frozen=True)
class ModelConfig:
    """The subject model whose activations are studied."""

    name: str = field(
        default="smollm2-135m",
        metadata=_meta(
            "Bundled offline name (smollm2-135m, smollm2-135m-instruct, "
            "qwen2.5-coder-1.5b-instruct, tiny-random-llama), a local HF model folder, "
            "or a Hugging Face hub id."
        ),
    )
    dtype: Dtype = field(
        default="bfloat16",
        metadata=_meta("Weights and forward dtype. SAEs always train in float32."),
    )
    device: str = field(
        default="auto",
        metadata=_meta("'auto' (cuda if available, else cpu), 'cpu', 'cuda', 'cuda:1'."),
    )


@dataclass(frozen=True)
class DataConfig:
    """The corpus, tokenised and packed into fixed context windows (see interp/data).

    Documents stream from one source, are tokenised in bounded memory, joined with
    ``separator`` and cut into windows of ``ctx_len`` tokens (the first one BOS when
    ``prepend_bos``), until ``max_tokens``. Fields added after the first release are
    hashed into run ids only when set, so existing ids stay what they were.
    """

    source: Literal["bundled", "text", "parquet", "jsonl", "hf"] = field(
        default="bundled",
        metadata=_meta(
            "'bundled' = offline text installed by launch/setup.sh (Shakespeare, Python docs); "
            "'text' = local text files in `paths` (documents split at blank-line runs); "
            "'parquet'/'jsonl' = local tables in `paths`, one document per row of "
            "`text_field`; 'hf' = a Hugging Face dataset `hf_name` (hub, saved, or builder)."
        ),
    )
    paths: tuple[str, ...] = field(
        default=(),
        metadata=_meta(
            "Files or globs for source=text|parquet|jsonl (.gz allowed for text/jsonl); for "
            "source=hf, the data_files of a builder such as hf_name=parquet|json|text."
        ),
    )
    hf_name: str = field(
        default="",
        metadata=_meta(
            "source=hf: a hub dataset id (streamed), a folder written by "
            "Dataset.save_to_disk, or a builder name (parquet, json, text) reading `paths`."
        ),
    )
    hf_config: str = field(default="", metadata=_meta("source=hf: the dataset's config name."))
    hf_revision: str = field(
        default="",
        metadata=_meta(
            (
                "source=hf: git revision (tag, branch, commit) of a hub dataset; pin it so "
                "re-tokenising gives the same tokens. Empty = the default branch."
            ),
            id="when_set",
        ),
    )
    hf_streaming: bool = field(
        default=True,
        metadata=_meta(
            "source=hf: stream a hub dataset instead of downloading it whole (same rows, same "
            "order). With HF_DATASETS_OFFLINE=1 or HF_HUB_OFFLINE=1 the local HF cache is "
            "read instead, since streaming needs the network.",
            id=False,
        ),
    )
    split: str = field(default="train", metadata=_meta("source=hf: the dataset split."))
    text_field: str = field(
        default="text", metadata=_meta("source=parquet|jsonl|hf: the column holding the text.")
    )
    ctx_len: int = field(default=64, metadata=_meta("Tokens per context window."))
    prepend_bos: bool = field(
        default=True,
        metadata=_meta(
            "Start every window with the tokenizer's BOS token (its EOS if it has no BOS)."
        ),
    )
    separator: Literal["eos", "bos", "none"] = field(
        default="eos",
        metadata=_meta(
            (
                "Token appended after every document: 'eos', 'bos' (the next document "
                "starts with BOS), or 'none' (documents run together)."
            ),
            id="when_set",
        ),
    )
    exclude_first: int = field(
        default=1,
        metadata=_meta(
            "Leading positions of each window left out of training, metrics and collection. "
            "Position 0 has a residual norm ~140x the median and would dominate FVU."
        ),
    )
    max_tokens: int = field(
        default=2_000_000,
        metadata=_meta(
            "Tokenise at most this many tokens of the corpus (the token budget); a corpus may "
            "be shorter as long as it covers train.num_tokens + collect.num_tokens."
        ),
    )
    shuffle_seed: int = field(
        default=0,
        metadata=_meta(
            "Seed of the deterministic shuffles: file order (bundled/text) and windows."
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "ctx_len", "max_tokens")
        if not 0 <= self.exclude_first < self.ctx_len:
            raise ValueError(
                f"data.exclude_first={self.exclude_first} must be in [0, ctx_len={self.ctx_len})"
            )
        if self.prepend_bos and self.ctx_len < 2:
            raise ValueError("data.prepend_bos=true needs data.ctx_len >= 2 (BOS + one token)")
        if self.source in ("text", "parquet", "jsonl") and not self.paths:
            raise ValueError(f"data.source={self.source} needs data.paths=[file or glob, ...]")
        if self.source == "hf" and not self.hf_name:
            raise ValueError(
                "data.source=hf needs data.hf_name=<hub dataset id, save_to_disk folder, or "
                "builder name such as parquet>"
            )
        if self.source != "hf":
            unused = [k for k in ("hf_name", "hf_config", "hf_revision") if getattr(self, k)]
            if unused:
                warnings.warn(
                    f"data.{', data.'.join(unused)} has no effect with data.source="
                    f"{self.source} (only with data.source=hf)",
                    stacklevel=2,
                )
        if self.source == "bundled" and self.paths:
            warnings.warn(
                "data.paths has no effect with data.source=bundled: use data.source=text",
                stacklevel=2,
            )


@dataclass(frozen=True)
class CollectConfig:
    """Latent collection (token-slice array) and compaction (latent-range array)."""

    num_tokens: int = field(default=131_072, metadata=_meta("Tokens of the corpus to collect."))
    slice_tokens: int = field(
        default=65_536, metadata=_meta("Tokens per collect array task (one Zarr group each).")
    )
    range_latents: int = field(
        default=1024, metadata=_meta("Latents per compact array task (one shard each).")
    )
    lm_batch_size: int = field(default=16, metadata=_meta("Context windows per LM forward."))

    def __post_init__(self) -> None:
        _positive(self, "num_tokens", "slice_tokens", "range_latents", "lm_batch_size")


@dataclass(frozen=True)
class LLMConfig:
    """The explainer/scorer language model and how it is reached."""

    backend: Literal["transformers", "http", "vllm"] = field(
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
    device: str = field(default="auto", metadata=_meta("'auto', 'cpu', 'cuda', ..."))
    temperature: float = field(default=0.0, metadata=_meta("0 = greedy decoding."))
    score_batch_size: int = field(
        default=8, metadata=_meta("Scored examples per forward over a shared prompt prefix.")
    )
    cache: bool = field(
        default=True,
        metadata=_meta("Content-addressed response cache in the run folder.", id=False),
    )
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
    api_key_env: str = field(
        default="",
        metadata=_meta(
            "backend=http: name of the environment variable holding the API key (e.g. "
            "OPENROUTER_API_KEY). The key itself is never put in a config. Empty = no key.",
            id=False,
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
    top_logprobs: int = field(
        default=20,
        metadata=_meta(
            "backend=http/vllm: top-k log-probs requested per position; a candidate outside "
            "the top k reads as -inf. OpenAI caps it at 20, vLLM at its max_logprobs.",
            id="when_set",
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "score_batch_size", "max_concurrency", "timeout_s", "top_logprobs")
        if self.temperature < 0:
            raise ValueError("llm.temperature must be >= 0")
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


KEY_PREFIXES = ("sk-", "sk_", "gsk_", "hf_", "xai-", "pk_", "rk_", "ghp_", "gho_", "glpat-",
                "github_pat_", "AIza", "nvapi-", "pplx-", "r8_", "fw_")  # fmt: skip
"""How API keys of common providers start (OpenAI, Stripe-style, Groq, Hugging Face, xAI,
GitHub, GitLab, Google, NVIDIA, Perplexity, Replicate, Fireworks)."""


API_KEY_ENV_ERROR = (
    "llm.api_key_env must be the NAME of an environment variable (e.g. OPENROUTER_API_KEY), "
    "never the key itself"
)


def is_variable_name(value: str) -> bool:
    """Whether ``value`` can be an environment variable's name and does not look like a
    pasted key: an identifier, no provider key prefix, and not a long mix of lower-case
    letters and digits (names are conventionally UPPER_CASE)."""
    if not value.isidentifier() or value.startswith(KEY_PREFIXES):
        return False
    mixed = any(c.islower() for c in value) and sum(c.isdigit() for c in value) >= 4
    return not (mixed and len(value) >= 20)


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


@dataclass(frozen=True)
class RunConfig:
    """One sweep point: everything the stages of one pipeline compute from."""

    name: str = field(default="demo", metadata=_meta("Sweep name: the run folder is out_dir/name."))
    out_dir: str = field(default="runs", metadata=_meta("Where sweep folders live.", id=False))
    layer: int = field(default=15, metadata=_meta("Residual stream after this decoder layer."))
    hook: str = field(
        default="",
        metadata=_meta(
            "Where the SAE reads its input, if not the residual stream after `layer`: a module "
            "name relative to the model's base ('layers.3', 'layers.3.mlp'), with ':input' for "
            "the module's input ('layers.3.mlp:input'). Empty = 'layers.{layer}'."
        ),
    )
    target_hookpoint: str = field(
        default="",
        metadata=_meta(
            "Transcoders (sae.transcode=true) only: where the target is read, named like "
            "`hook` (e.g. input 'layers.3.mlp:input', target 'layers.3.mlp'). Empty = none."
        ),
    )
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    interpret: InterpretConfig = field(default_factory=InterpretConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    serve: ServeConfig = field(
        default_factory=ServeConfig, metadata=_meta("Served LLM replicas.", id=False)
    )

    def __post_init__(self) -> None:
        if self.layer < 0:
            raise ValueError(f"layer={self.layer} must be >= 0")
        if self.name in ("", ".", "..") or any(c in self.name for c in "/\\\0"):
            raise ValueError(
                f"name={self.name!r} must be a plain folder name (not '.' or '..', no '/'): "
                "the sweep folder is out_dir/name, e.g. name=tiny"
            )
        if self.collect.slice_tokens % self.data.ctx_len:
            raise ValueError(
                f"collect.slice_tokens={self.collect.slice_tokens} must be a multiple of "
                f"data.ctx_len={self.data.ctx_len}"
            )
        if self.collect.num_tokens % self.data.ctx_len:
            raise ValueError(
                f"collect.num_tokens={self.collect.num_tokens} must be a multiple of "
                f"data.ctx_len={self.data.ctx_len}"
            )
        needed = self.train.num_tokens + self.collect.num_tokens
        if needed > self.data.max_tokens:
            raise ValueError(
                f"train.num_tokens + collect.num_tokens = {needed} exceeds "
                f"data.max_tokens={self.data.max_tokens}: raise data.max_tokens or lower them "
                "(training and collection use disjoint windows)"
            )
        if self.interpret.examples.window > self.data.ctx_len:
            raise ValueError(
                f"interpret.examples.window={self.interpret.examples.window} exceeds "
                f"data.ctx_len={self.data.ctx_len}"
            )
        self._check_hookpoints()

    def _check_hookpoints(self) -> None:
        for key in ("hook", "target_hookpoint"):
            name = getattr(self, key)
            module = name.removesuffix(":input")
            if name and (not module or ":" in module or "" in module.split(".")):
                raise ValueError(
                    f"{key}={name!r} is not a hookpoint name: use a dotted module name relative "
                    "to the model's base, optionally ending in ':input' (e.g. 'layers.3.mlp')"
                )
        transcode = bool(getattr(self.sae, "transcode", False))
        if transcode and not self.target_hookpoint:
            raise ValueError(
                "sae.transcode=true needs target_hookpoint=<module whose activation it "
                "predicts> (e.g. hook=layers.3.mlp:input target_hookpoint=layers.3.mlp)"
            )
        if self.target_hookpoint and not transcode:
            raise ValueError(
                f"target_hookpoint={self.target_hookpoint!r} is set but sae.transcode is false: "
                "set sae.transcode=true for a transcoder, or drop target_hookpoint"
            )

    @property
    def hookpoint(self) -> str:
        """Where the SAE reads its input: ``hook``, by default the residual stream after
        decoder layer ``layer`` (sparsify's naming, relative to the model's base)."""
        return self.hook or f"layers.{self.layer}"

    @property
    def target(self) -> str:
        """Where the SAE's target is read: ``target_hookpoint``, else the input itself."""
        return self.target_hookpoint or self.hookpoint


def _positive(obj: Any, *names: str) -> None:
    section = type(obj).__name__.removesuffix("Config").lower()
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ValueError(f"{section}.{name}={value} must be > 0")


# --------------------------------------------------------------------------- loading


def load_run_config(raw: dict[str, Any]) -> RunConfig:
    """Build a validated, frozen ``RunConfig`` from a plain (YAML-like) dict."""
    return build(RunConfig, raw, "")
