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

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from interp.collect_config import CollectConfig
from interp.data.config import DataConfig
from interp.explain.config import ExplainerConfig  # noqa: F401  (re-exported)
from interp.interpret.config import InterpretConfig
from interp.latents.config import ExamplesConfig  # noqa: F401  (re-exported)
from interp.llm.config import (
    API_KEY_ENV_ERROR,
    KEY_PREFIXES,
    LLMConfig,
    ServeConfig,
    is_variable_name,
)
from interp.models.config import Dtype, ModelConfig
from interp.typed import build, describe, id_dict, to_dict
from interp.typed import meta as _meta
from interp.typed import positive as _positive

__all__ = [
    "API_KEY_ENV_ERROR",
    "KEY_PREFIXES",
    "CollectConfig",
    "DataConfig",
    "Dtype",
    "LLMConfig",
    "ModelConfig",
    "RunConfig",
    "ServeConfig",
    "build",
    "describe",
    "id_dict",
    "is_variable_name",
    "load_run_config",
    "to_dict",
]


@dataclass(frozen=True)
class SAEConfig:
    """One sparse dictionary: its architecture and the hyperparameters of its loss.

    Each field says which architectures read it; the others ignore it. Reconstruction is
    always measured as FVU (scale-free), so coefficients do not depend on the input scale.
    """

    architecture: Literal["topk", "batchtopk", "jumprelu", "relu", "gated", "neurons"] = field(
        default="topk",
        metadata=_meta(
            "Dictionary type: topk (Gao et al.), batchtopk (Bussmann et al.; saved as "
            "jumprelu), jumprelu (Gemma Scope STE), relu (L1, Anthropic April 2024), gated; "
            "neurons = the hookpoint's own basis sparsified with top-k (not trained; e.g. "
            "hook=layers.N.mlp.down_proj:input for MLP neurons)."
        ),
    )
    expansion_factor: int = field(default=8, metadata=_meta("num_latents = d_in * this."))
    num_latents: int = field(
        default=0, metadata=_meta("Explicit dictionary width; 0 = d_in * expansion_factor.")
    )
    k: int = field(
        default=32,
        metadata=_meta("topk: active latents per token; batchtopk: mean active per token."),
    )
    multi_topk: bool = field(
        default=False,
        metadata=_meta("topk: add the FVU of the top-4k decode / 8 to the loss (sparsify)."),
    )
    auxk_alpha: float = field(
        default=0.0,
        metadata=_meta(
            "topk/batchtopk: weight of the AuxK loss on dead latents (0 = off, sparsify's "
            "default; OpenAI used 1/32)."
        ),
    )
    dead_tokens: int = field(
        default=0,
        metadata=_meta(
            "Tokens without firing after which a latent counts as dead (AuxK, dead %); "
            "0 = the trainer's default, min(10M, training tokens / 4)."
        ),
    )
    b_dec_init: Literal["mean", "geometric_median", "zeros"] = field(
        default="mean",
        metadata=_meta(
            "b_dec from the first batch: its mean (sparsify), geometric median (OpenAI, "
            "dictionary_learning) or zeros (SAELens)."
        ),
    )
    normalize_decoder: bool = field(
        default=True,
        metadata=_meta(
            "Keep decoder rows unit-norm (parallel gradient removed, rows renormalised "
            "after each step). relu/gated weight their penalty by decoder norms instead."
        ),
    )
    transcode: bool = field(
        default=False,
        metadata=_meta(
            "Transcoder: encode one hookpoint, reconstruct another (output width may "
            "differ; no b_dec subtracted from the input; decoder starts at zero)."
        ),
    )
    l1_coefficient: float = field(
        default=1.0,
        metadata=_meta(
            "relu/gated: weight of sum_i f_i * ||W_dec_i||, averaged over tokens and "
            "divided by the RMS norm of the centred target (scale-free like FVU)."
        ),
    )
    l0_coefficient: float = field(
        default=1.0,
        metadata=_meta("jumprelu: weight of the L0 penalty (plain L0 or the target form)."),
    )
    sparsity_loss: Literal["l0", "target_l0"] = field(
        default="target_l0",
        metadata=_meta(
            "jumprelu: 'l0' = coefficient * mean L0 (Gemma Scope); 'target_l0' = "
            "coefficient * (mean L0 / target_l0 - 1)^2 (dictionary_learning)."
        ),
    )
    target_l0: float = field(
        default=32.0,
        metadata=_meta(
            "jumprelu: the L0 aimed at by 'target_l0', and the L0 the threshold starts at "
            "when threshold_init = 0."
        ),
    )
    bandwidth: float = field(
        default=0.05,
        metadata=_meta(
            "jumprelu: STE kernel width epsilon, in pre-activation units (SAELens 0.05; "
            "Gemma Scope's 0.001 assumes unit-scale inputs and needs billions of tokens)."
        ),
    )
    threshold_init: float = field(
        default=0.0,
        metadata=_meta(
            "jumprelu: initial threshold; 0 = from the first batch, so that its L0 is "
            "target_l0 (SAELens 0.01, dictionary_learning 0.001)."
        ),
    )
    lr_scale: float = field(
        default=1.0,
        metadata=_meta(
            "This dictionary trains at train.lr times this (so one sweep can mix "
            "architectures: L1 penalties need ~10x the TopK rate to sparsify in 200k tokens)."
        ),
    )
    threshold_lr_scale: float = field(
        default=1.0,
        metadata=_meta(
            "jumprelu: the thresholds' learning rate is train lr times this (Adam moves a "
            "threshold by about lr per step; short runs need it larger)."
        ),
    )
    threshold_ema: float = field(
        default=0.01,
        metadata=_meta(
            "batchtopk: EMA rate of the inference threshold (the smallest kept activation "
            "of each batch), in (0, 1] (SAELens 0.01)."
        ),
    )
    sparsity_warmup_steps: int = field(
        default=0,
        metadata=_meta("jumprelu/relu/gated: steps of linear warmup of the sparsity coefficient."),
    )
    rotate: bool = field(
        default=False,
        metadata=_meta(
            (
                "neurons: a random orthogonal rotation of the basis first (seeded by "
                "train.seed), the control for neurons in the paper."
            ),
            id="when_set",
        ),
    )

    # Fields each architecture reads; the others do not change what it computes.
    _COMMON: ClassVar[frozenset[str]] = frozenset(
        {"b_dec_init", "normalize_decoder", "dead_tokens", "lr_scale"}
    )
    _READ_BY: ClassVar[dict[str, frozenset[str]]] = {
        "topk": _COMMON | {"k", "multi_topk", "auxk_alpha"},
        "batchtopk": _COMMON | {"k", "auxk_alpha", "threshold_ema"},
        "jumprelu": _COMMON
        | {"l0_coefficient", "sparsity_loss", "target_l0", "bandwidth", "threshold_init"}
        | {"sparsity_warmup_steps", "threshold_lr_scale"},
        "relu": _COMMON | {"l1_coefficient", "sparsity_warmup_steps"},
        "gated": _COMMON | {"l1_coefficient", "sparsity_warmup_steps"},
        "neurons": frozenset({"k", "rotate"}),
    }

    def __post_init__(self) -> None:
        if self.architecture not in self._READ_BY:
            raise ValueError(
                f"sae.architecture={self.architecture!r} is unknown: use one of "
                f"{sorted(self._READ_BY)}"
            )
        _positive(self, "expansion_factor", "k", "target_l0", "bandwidth")
        if self.num_latents < 0:
            raise ValueError("sae.num_latents must be >= 0 (0 = d_in * expansion_factor)")
        if (
            self.num_latents
            and self.k >= self.num_latents
            and self.architecture in ("topk", "batchtopk")
        ):
            raise ValueError(
                f"sae.k={self.k} must be smaller than sae.num_latents={self.num_latents}: "
                "lower k or widen the dictionary"
            )
        for name in ("auxk_alpha", "l1_coefficient", "l0_coefficient", "threshold_init"):
            if getattr(self, name) < 0:
                raise ValueError(f"sae.{name}={getattr(self, name)} must be >= 0")
        if self.dead_tokens < 0 or self.sparsity_warmup_steps < 0:
            raise ValueError("sae.dead_tokens and sae.sparsity_warmup_steps must be >= 0")
        if self.lr_scale <= 0:
            raise ValueError(f"sae.lr_scale={self.lr_scale} must be > 0")
        if self.threshold_lr_scale <= 0:
            raise ValueError(f"sae.threshold_lr_scale={self.threshold_lr_scale} must be > 0")
        if not 0 < self.threshold_ema <= 1:
            raise ValueError(f"sae.threshold_ema={self.threshold_ema} must be in (0, 1]")
        if self.architecture == "neurons" and (self.num_latents or self.expansion_factor != 1):
            raise ValueError(
                "sae.architecture=neurons is the hookpoint's own basis (one latent per "
                "dimension): set sae.expansion_factor=1 and sae.num_latents=0"
            )
        if self.rotate and self.architecture != "neurons":
            raise ValueError("sae.rotate=true needs sae.architecture=neurons")
        if self.multi_topk and self.architecture != "topk":
            raise ValueError("sae.multi_topk=true needs sae.architecture=topk")
        if self.auxk_alpha and self.architecture not in ("topk", "batchtopk"):
            raise ValueError("sae.auxk_alpha > 0 needs sae.architecture=topk or batchtopk")

    @property
    def sae_id(self) -> str:
        """Folder name of the dictionary, from what it computes: architecture, width, the
        sparsity knob, flags, and a short hash of any other non-default hyperparameter."""
        width = self.num_latents or f"x{self.expansion_factor}"
        parts = [self.architecture, str(width), self._sparsity_tag()[0]]
        if self.multi_topk:
            parts.append("mtopk")
        if self.auxk_alpha:
            parts.append(f"auxk{self.auxk_alpha:g}")
        if self.transcode:
            parts.append("tc")
        if self.rotate:
            parts.append("rot")
        rest = self._other_hyperparameters()
        if rest:
            import hashlib
            import json

            digest = hashlib.sha256(json.dumps(rest, sort_keys=True).encode()).hexdigest()
            parts.append(digest[:6])
        return "-".join(parts)

    def _sparsity_tag(self) -> tuple[str, set[str]]:
        """The readable sparsity part of sae_id, and the fields it shows."""
        if self.architecture in ("topk", "batchtopk", "neurons"):
            return f"k{self.k}", {"k"}
        if self.architecture == "jumprelu" and self.sparsity_loss == "target_l0":
            return f"t{self.target_l0:g}", {"sparsity_loss", "target_l0"}
        if self.architecture == "jumprelu":
            return f"l0c{self.l0_coefficient:g}", {"sparsity_loss", "l0_coefficient"}
        return f"l1c{self.l1_coefficient:g}", {"l1_coefficient"}

    def _other_hyperparameters(self) -> dict[str, Any]:
        """Non-default fields this architecture reads that the readable tag omits."""
        import dataclasses

        shown = self._sparsity_tag()[1] | {"multi_topk", "auxk_alpha", "rotate"}
        defaults = SAEConfig.__dataclass_fields__
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name in self._READ_BY[self.architecture]
            and f.name not in shown
            and getattr(self, f.name) != defaults[f.name].default
        }


DistStrategy = Literal["ddp", "shard_hookpoints", "fsdp", "deepspeed"]
DistBackend = Literal["auto", "nccl", "gloo"]


@dataclass(frozen=True)
class DistConfig:
    """How training spreads over processes. Ranks always come from the environment."""

    strategy: DistStrategy = field(
        default="ddp",
        metadata=_meta(
            "'ddp' = every rank trains every SAE on its share of the data, gradients "
            "averaged; 'shard_hookpoints' = each SAE lives on one rank, activations are "
            "all-gathered (needs >= as many SAEs as ranks); 'fsdp' = ddp with each SAE's "
            "parameters and optimiser sharded (wide dictionaries); 'deepspeed' = ZeRO "
            "sharding via DeepSpeed (install the gpu extra). All but ddp need >= 2 ranks."
        ),
    )
    backend: DistBackend = field(
        default="auto",
        metadata=_meta("torch.distributed backend: 'auto' = nccl on CUDA, gloo on CPU.", id=False),
    )
    timeout_s: int = field(
        default=1800,
        metadata=_meta(
            "Seconds a collective (or the rendezvous) may wait before the run fails.", id=False
        ),
    )
    master_port: int = field(
        default=0,
        metadata=_meta(
            (
                "Rendezvous port when the environment gives none (MASTER_PORT wins); "
                "0 = 20000 + SLURM job id mod 20000 under SLURM, else 29500."
            ),
            id=False,
        ),
    )
    zero_stage: int = field(
        default=2,
        metadata=_meta(
            "DeepSpeed ZeRO stage: 1 = optimiser state sharded, 2 = gradients too. "
            "Stage 3 (parameters too) is refused: it frees parameters between forward and "
            "backward, which the sparse decode's saved weight does not survive; use "
            "strategy fsdp to shard parameters."
        ),
    )

    def __post_init__(self) -> None:
        if self.strategy not in ("ddp", "shard_hookpoints", "fsdp", "deepspeed"):
            raise ValueError(
                f"dist.strategy={self.strategy!r} is unknown: use ddp, shard_hookpoints, "
                "fsdp or deepspeed"
            )
        if self.backend not in ("auto", "nccl", "gloo"):
            raise ValueError(f"dist.backend={self.backend!r} is unknown: use auto, nccl or gloo")
        if self.timeout_s <= 0:
            raise ValueError(f"dist.timeout_s={self.timeout_s} must be > 0")
        if not 0 <= self.master_port < 65536:
            raise ValueError(f"dist.master_port={self.master_port} must be in [0, 65535]")
        if self.zero_stage not in (1, 2):
            raise ValueError(
                f"dist.zero_stage={self.zero_stage} must be 1 or 2 (for parameter sharding "
                "use dist.strategy=fsdp)"
            )


@dataclass(frozen=True)
class TrainConfig:
    """SAE training on activations streamed from the subject model."""

    num_tokens: int = field(default=200_000, metadata=_meta("Training tokens."))
    batch_size: int = field(default=1024, metadata=_meta("Activation vectors per SAE step."))
    lm_batch_size: int = field(default=16, metadata=_meta("Context windows per LM forward."))
    lr: float = field(
        default=0.0, metadata=_meta("Adam learning rate; 0 = 2e-4 / sqrt(num_latents / 2^14).")
    )
    warmup_steps: int = field(default=20, metadata=_meta("Linear LR warmup steps."))
    kernels: Literal["auto", "torch", "triton"] = field(
        default="auto",
        metadata=_meta(
            "Sparse kernels of the TopK family: auto = triton on CUDA when it imports, else "
            "the torch reference (same numerics to float rounding).",
            id=False,
        ),
    )
    buffer_batches: int = field(
        default=8,
        metadata=_meta("Shuffle buffer, in SAE batches, so a batch mixes many windows."),
    )
    seed: int = field(default=0, metadata=_meta("Seed for init and shuffling."))
    log_every: int = field(default=10, metadata=_meta("Steps between metric lines.", id=False))
    checkpoint_every: int = field(
        default=1000,
        metadata=_meta("Steps between resume checkpoints (also saved on stop).", id=False),
    )
    dist: DistConfig = field(
        default_factory=DistConfig,
        metadata=_meta(
            (
                "Multi-process training (ranks from torchrun or SLURM's srun variables; "
                "one process = no distribution)."
            ),
            id="when_set",
        ),
    )
    keep_checkpoints: int = field(
        default=2,
        metadata=_meta(
            "Committed checkpoints kept (the newest ones); older are deleted.", id=False
        ),
    )
    eval_every: int = field(
        default=0,
        metadata=_meta(
            "Steps between spliced evaluations during training (CE increase and KL with the "
            "SAE output in place of the activation, on held-out windows); 0 = only at the end.",
            id=False,
        ),
    )
    wandb_project: str = field(
        default="",
        metadata=_meta(
            "Also log metrics to this Weights & Biases project (needs `wandb` installed); "
            "empty = metrics.jsonl only.",
            id=False,
        ),
    )

    def __post_init__(self) -> None:
        _positive(self, "num_tokens", "batch_size", "lm_batch_size", "buffer_batches")
        _positive(self, "log_every", "checkpoint_every", "keep_checkpoints")
        if self.eval_every < 0:
            raise ValueError("train.eval_every must be >= 0 (0 = evaluate only at the end)")
        if self.lr < 0:
            raise ValueError("train.lr must be >= 0 (0 picks the 1/sqrt(width) rule)")


ScorerName = Literal[
    "detection",
    "fuzzing",
    "fuzzing_active",
    "surprisal",
    "embedding",
    "intervention",
    "simulation",
    "intruder",
]


@dataclass(frozen=True)
class ScorerConfig:
    """Which scorers run, and how."""

    names: tuple[ScorerName, ...] = field(
        default=("detection", "fuzzing"), metadata=_meta("Scorers to run on each explanation.")
    )
    examples_per_prompt: int = field(
        default=1,
        metadata=_meta(
            (
                "detection/fuzzing: examples per prompt. 1 = one prompt each, P(Yes) "
                "from next-token log-probs after a shared prefix; n > 1 = n numbered examples, "
                "a generated 'i: Yes|No' list parsed strictly (failures recorded)."
            ),
            id="when_set",
        ),
    )
    batch_read: Literal["forced", "generate", "generate_logprobs"] = field(
        default="generate_logprobs",
        metadata=_meta(
            (
                "examples_per_prompt > 1: how answers are read. generate = the generated "
                "list as 0/1; generate_logprobs = then teacher-force it to read P(Yes) per "
                "example (one more, prefix-cached call); forced = one teacher-forced call, "
                "P(Yes) read at each answer line (nothing generated, nothing parsed)."
            ),
            id="when_set",
        ),
    )
    intruder_examples: int = field(
        default=4,
        metadata=_meta("intruder: activating examples per prompt (+1 intruder).", id="when_set"),
    )
    intruder_prompts: int = field(
        default=8, metadata=_meta("intruder: prompts per latent.", id="when_set")
    )
    intruder_source: Literal["inactive", "other_quantile"] = field(
        default="inactive",
        metadata=_meta(
            (
                "intruder: a non-activating example (random marks) or an activating "
                "example of another quantile."
            ),
            id="when_set",
        ),
    )
    intervention_kl: float = field(
        default=0.5,
        metadata=_meta(
            (
                "intervention: target mean KL(clean || steered), nats, of the next-token "
                "distribution after the prompts; the steering strength is calibrated per latent "
                "to reach it (delphi's default; the paper sweeps 0.1, 0.33, 1, 3). On SmolLM2 "
                "0.5 changed every greedy continuation and kept it fluent; 1.0 made many "
                "repetitive or garbled."
            ),
            id="when_set",
        ),
    )
    intervention_prompts: int = field(
        default=8,
        metadata=_meta(
            (
                "intervention: prompts per latent (held-out non-activating contexts); "
                "each gives one clean/steered pair for the judge (2 single-token calls)."
            ),
            id="when_set",
        ),
    )
    intervention_prompt_tokens: int = field(
        default=24,
        metadata=_meta("intervention: tokens of each context used as the prompt.", id="when_set"),
    )
    intervention_new_tokens: int = field(
        default=16,
        metadata=_meta("intervention: greedy tokens generated per continuation.", id="when_set"),
    )
    intervention_judge: Literal["each", "pair"] = field(
        default="each",
        metadata=_meta(
            (
                "intervention: how the scorer LLM judges a clean/steered pair. each = "
                "P(Yes) that one continuation shows the explanation, asked per text (no position "
                "bias; the offline 1.5B judge separates only this way); pair = A or B, asked in "
                "both orders and averaged (needs a stronger judge)."
            ),
            id="when_set",
        ),
    )
    bootstrap_resamples: int = field(
        default=1000,
        metadata=_meta(
            "Bootstrap resamples for per-latent confidence intervals; 0 = none.", id=False
        ),
    )
    confidence: float = field(
        default=0.95, metadata=_meta("Confidence level of the intervals.", id=False)
    )

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("scorer.names is empty: list at least one scorer")
        if len(set(self.names)) != len(self.names):
            raise ValueError(f"scorer.names={list(self.names)} repeats a scorer: list each once")
        if not 1 <= self.examples_per_prompt <= 20:
            raise ValueError(
                f"scorer.examples_per_prompt={self.examples_per_prompt} must be in 1..20 "
                "(1 = one example per prompt; delphi uses 5)"
            )
        if not 1 <= self.intruder_examples <= 8:
            raise ValueError(
                f"scorer.intruder_examples={self.intruder_examples} must be in 1..8 "
                "(the choices 1..k+1 must be single-digit answers)"
            )
        if self.intruder_prompts < 1:
            raise ValueError("scorer.intruder_prompts must be >= 1")
        if not self.intervention_kl > 0:
            raise ValueError(
                f"scorer.intervention_kl={self.intervention_kl} must be > 0 (nats, e.g. 0.5)"
            )
        for name in ("intervention_prompts", "intervention_prompt_tokens"):
            if not 1 <= getattr(self, name) <= 256:
                raise ValueError(f"scorer.{name}={getattr(self, name)} must be in 1..256")
        if not 1 <= self.intervention_new_tokens <= 256:
            raise ValueError(
                f"scorer.intervention_new_tokens={self.intervention_new_tokens} must be in "
                "1..256 (a few dozen tokens are enough to see the steering)"
            )
        if self.bootstrap_resamples < 0:
            raise ValueError("scorer.bootstrap_resamples must be >= 0 (0 = no intervals)")
        if not 0.0 < self.confidence < 1.0:
            raise ValueError(f"scorer.confidence={self.confidence} must be in (0, 1), e.g. 0.95")


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


# --------------------------------------------------------------------------- loading


def load_run_config(raw: dict[str, Any]) -> RunConfig:
    """Build a validated, frozen ``RunConfig`` from a plain (YAML-like) dict."""
    return build(RunConfig, raw, "")
