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
from typing import Any

# Re-exported from their components (importers still name them from here).
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
from interp.sae.config import SAEConfig as SAEConfig
from interp.score.config import ScorerConfig
from interp.train.config import DistBackend as DistBackend
from interp.train.config import DistConfig as DistConfig
from interp.train.config import DistStrategy as DistStrategy
from interp.train.config import TrainConfig as TrainConfig
from interp.typed import build, describe, id_dict, to_dict, with_legacy
from interp.typed import meta as _meta

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
        if self.sae.spec.pretrained:
            return  # the checkpoint says what it is (interp.pretrained_point.resolve)
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


def load_saved_config(raw: dict[str, Any]) -> RunConfig:
    """A point's saved ``config.json``: keys added since it was written that changed
    behaviour (``legacy`` in their metadata) take their old value, so the point keeps the
    run id and the meaning it was run with."""
    return build(RunConfig, with_legacy(RunConfig, raw), "")
