"""Preflight: check a sweep's configs against the world before anything is recorded.

``load_run_config`` checks a config on its own (types, choices, ranges). What it cannot
see is whether the config fits the things it names: that the model and tokenizers
resolve, that the hookpoints are modules of the model, that ``sae.k`` fits the
dictionary's width, that ``data.paths`` match files, that the API-key variable is set.
Without these checks each mistake surfaced inside a task after earlier stages ran (on
SLURM: after the whole DAG was submitted), and the point, recorded first, blocked every
later gather of its sweep folder. :func:`preflight` runs all of them for every point and
raises one :class:`PreflightError` listing each problem on one line that names the key
and the fix; the submitter calls it before recording a point.

Cheap by construction: model configs come from the model's folder, the bundled cache or
the Hugging Face cache (``AutoConfig``), the module tree is built on the meta device (no
weights), tokenizers load their files only, a pretrained dictionary's headers and content
hash are read (:mod:`interp.pretrained_point`: its source, hookpoint and width). A bundled model not converted yet is
converted here once (the first stage would do it anyway).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from interp.config import RunConfig
from interp.llm.registry import backend_spec

MAX_PATTERNS = 12  # module-name patterns an unknown-hookpoint error lists


class PreflightError(ValueError):
    """Some sweep points would fail in a task; the message has one line per problem."""


def preflight(
    cfgs: Sequence[RunConfig],
    environ: Mapping[str, str] | None = None,
    *,
    task_gpus: int | None = None,
) -> None:
    """Raise :class:`PreflightError` listing every problem of every point (each once).

    ``environ`` is where API-key variables are looked up (default: this process's
    environment, which the tasks inherit); ``task_gpus`` how many GPUs a task that loads
    the subject model sees (None: unknown, ``model.max_memory``'s GPUs are not checked)."""
    from interp.pretrained_point import is_pretrained

    env = os.environ if environ is None else environ
    models = Models()
    trains = any(not is_pretrained(c) for c in cfgs)
    problems = list(
        dict.fromkeys(
            p for c in cfgs for p in point_problems(c, env, models, task_gpus, trains=trains)
        )
    )
    if problems:
        raise PreflightError(
            f"{len(problems)} problem(s) found before anything was recorded or submitted:\n  "
            + "\n  ".join(problems)
        )


def point_problems(
    cfg: RunConfig,
    environ: Mapping[str, str],
    models: Models | None = None,
    task_gpus: int | None = None,
    *,
    trains: bool = True,
) -> list[str]:
    """One line per problem of one point (empty: it passes). ``trains``: some point of the
    sweep trains a dictionary (``sae.*`` training keys then only do not apply to a
    pretrained point; alone, a pretrained point refuses them)."""
    from interp.pretrained_point import pretrained_problems

    models = models or Models()
    out = _model_problems(cfg, models) + _placement_problems(cfg, task_gpus)
    if not out:  # hookpoints, widths and a pretrained dictionary's fit need the model
        out += _hookpoint_problems(cfg, models) or (
            _width_problems(cfg) + pretrained_problems(cfg, trained_points=trains)
        )
    return out + _data_problems(cfg) + _llm_problems(cfg, environ, models)


# ----------------------------------------------------------------------------- models


class ModuleTree(NamedTuple):
    """What the hookpoint checks need of a model, read without its weights."""

    names: frozenset[str]  # module names under the model's base ('layers.3.mlp', ...)
    num_layers: int  # decoder layers
    patterns: tuple[str, ...]  # names with layer numbers folded, for error messages


class Models:
    """Model configs, tokenizers and module trees, each looked up once per preflight."""

    def __init__(self) -> None:
        self._errors: dict[tuple[str, str], str] = {}
        self._trees: dict[str, ModuleTree] = {}

    def error(self, name: str, what: str = "config") -> str:
        """Why model ``name``'s config (or ``what="tokenizer"``) cannot be loaded ('' if
        it can)."""
        key = (name, what)
        if key not in self._errors:
            try:
                _config_of(name) if what == "config" else _tokenizer_of(name)
                self._errors[key] = ""
            except Exception as err:  # noqa: BLE001 - any failure to resolve is the user's
                self._errors[key] = _first_line(err)
        return self._errors[key]

    def tree(self, name: str) -> ModuleTree:
        """Model ``name``'s module tree, from a weightless instance on the meta device."""
        if name not in self._trees:
            import torch
            from transformers import AutoModelForCausalLM

            from interp.models.load import decoder_layers, hookpoint_patterns

            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(_config_of(name))
            base = getattr(model, model.base_model_prefix, model)
            names = frozenset(n for n, _ in base.named_modules() if n)
            self._trees[name] = ModuleTree(
                names, len(decoder_layers(model)), tuple(hookpoint_patterns(base))
            )
        return self._trees[name]


def _config_of(name: str) -> Any:
    from transformers import AutoConfig

    from interp.models.provision import resolve_model

    return AutoConfig.from_pretrained(resolve_model(name))


def _tokenizer_of(name: str) -> Any:
    from transformers import AutoTokenizer

    from interp.models.provision import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model(name))


_MODEL_FIX = (
    "use a bundled name (smollm2-135m, smollm2-135m-instruct, qwen2.5-coder-1.5b-instruct, "
    "tiny-random-llama), a local Hugging Face folder with config.json, or a hub id that is "
    "in the Hugging Face cache or reachable"
)


def _model_problems(cfg: RunConfig, models: Models) -> list[str]:
    err = models.error(cfg.model.name)
    if not err:
        return []
    return [f"model.name={cfg.model.name!r} cannot be resolved ({err}): {_MODEL_FIX}"]


def _placement_problems(cfg: RunConfig, task_gpus: int | None) -> list[str]:
    """``model.max_memory`` naming a GPU the tasks will not see (CPU-only limits, or
    ``device_map`` without limits, are fine anywhere: accelerate uses what there is)."""
    if task_gpus is None or not cfg.model.max_memory:
        return []
    from interp.models.placement import gpu_problem

    problem = gpu_problem(cfg.model.max_memory, task_gpus)
    return [problem] if problem else []


def _hookpoint_problems(cfg: RunConfig, models: Models) -> list[str]:
    try:
        names, n_layers, patterns = models.tree(cfg.model.name)
    except Exception as err:  # noqa: BLE001 - e.g. not a causal LM, no decoder layers
        return [
            f"model.name={cfg.model.name!r} does not build as a causal LM with decoder layers "
            f"({_first_line(err)}): use a decoder-only language model"
        ]
    keys = {"layer" if not cfg.hook else "hook": cfg.hookpoint}
    if cfg.target_hookpoint:
        keys["target_hookpoint"] = cfg.target_hookpoint
    out = []
    for key, hookpoint in keys.items():
        if hookpoint.removesuffix(":input") in names:
            continue
        if key == "layer" and cfg.layer >= n_layers:
            out.append(
                f"layer={cfg.layer} is past the last decoder layer of {cfg.model.name} "
                f"(layers 0..{n_layers - 1}): set layer=0..{n_layers - 1}"
            )
            continue
        what = f"layer={cfg.layer} reads {hookpoint!r}, which" if key == "layer" else (
            f"{key}={hookpoint!r}"
        )  # fmt: skip
        more = ", ..." if len(patterns) > MAX_PATTERNS else ""
        out.append(
            f"{what} is not a module of {cfg.model.name}: set {key if key != 'layer' else 'hook'}"
            f"= one of {', '.join(patterns[:MAX_PATTERNS])}{more} (':input' for a module's input)"
        )
    return out


def _width_problems(cfg: RunConfig) -> list[str]:
    from interp.models.provision import hookpoint_width
    from interp.plan import num_latents

    sae = cfg.sae
    width = hookpoint_width(cfg.model.name, cfg.hookpoint)
    n = num_latents(cfg, width)
    sel = cfg.interpret.selection  # num_latents=N (0:N) is capped at the width, as ever
    selection = "" if sel.mode == "range" and sel.start == 0 else sel.problem(n)
    if selection:
        return [selection]
    made = f"sae.num_latents={n}" if sae.num_latents else (
        f"{width} at {cfg.hookpoint} x sae.expansion_factor={sae.expansion_factor}"
    )  # fmt: skip
    if sae.architecture in ("topk", "batchtopk") and sae.k >= n:
        return [
            f"sae.k={sae.k} must be smaller than the dictionary's {n} latents ({made}): "
            "lower sae.k or widen the dictionary (sae.expansion_factor / sae.num_latents)"
        ]
    if sae.architecture == "neurons" and sae.k >= width:
        return [
            f"sae.k={sae.k} must be smaller than the {width} neurons at {cfg.hookpoint}: "
            "lower sae.k"
        ]
    if sae.architecture == "jumprelu" and sae.sparsity_loss == "target_l0" and sae.target_l0 >= n:
        return [
            f"sae.target_l0={sae.target_l0:g} must be smaller than the dictionary's {n} "
            f"latents ({made}): lower sae.target_l0 or widen the dictionary"
        ]
    return []


# ----------------------------------------------------------------------------- data, LLM


def _data_problems(cfg: RunConfig) -> list[str]:
    from interp.data.corpus import build_corpus

    data = cfg.data
    try:
        build_corpus(data)  # globs the files; reads nothing
    except (FileNotFoundError, ValueError) as err:
        return [_first_line(err)]
    name = data.hf_name
    looks_local = data.source == "hf" and name.startswith(("/", ".", "~"))
    if looks_local and not Path(name).expanduser().exists():
        return [
            f"data.hf_name={name!r} looks like a folder but does not exist: set it to a "
            "Dataset.save_to_disk folder, a hub dataset id or a builder name (parquet, ...)"
        ]
    return []


def _llm_problems(cfg: RunConfig, environ: Mapping[str, str], models: Models) -> list[str]:
    llm = cfg.llm
    spec = backend_spec(llm.backend)
    problems = []
    if not spec.loads_model:  # llm.model is only the name sent to the server
        problems.append(_api_key_problem(llm.api_key_env, environ))
        if llm.tokenizer:
            problems.append(_tokenizer_problem(llm.tokenizer, models))
    else:
        problems.append(_named_model_problem("llm.model", llm.model, models))
    if any(importlib.util.find_spec(m) is None for m in spec.requires):
        problems.append(f"llm.backend={spec.name} needs {spec.install_hint or spec.requires}")
    return [p for p in problems if p]


def _api_key_problem(var: str, environ: Mapping[str, str]) -> str:
    if not var or environ.get(var):
        return ""
    return (
        f"llm.api_key_env={var} names an environment variable that is not set here: "
        f"export {var}=<your key> before submitting (tasks inherit it), or set "
        "llm.api_key_env='' for a server that needs no key"
    )


def _named_model_problem(key: str, name: str, models: Models) -> str:
    err = models.error(name)
    return f"{key}={name!r} cannot be resolved ({err}): {_MODEL_FIX}" if err else ""


def _tokenizer_problem(name: str, models: Models) -> str:
    err = models.error(name, "tokenizer")
    if not err:
        return ""
    return (
        f"llm.tokenizer={name!r} cannot be loaded ({err}): use a bundled name, a local "
        "Hugging Face folder with the tokenizer's files, or a hub id in the Hugging Face "
        "cache; or llm.tokenizer='' (no client-side chat template)"
    )


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 300 else line[:297] + "..."
