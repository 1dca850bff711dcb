"""Subject-model loading and hookpoints.

A hookpoint names a module relative to the model's base (sparsify's naming): ``layers.N``
is the output of decoder layer N (the residual stream after it), ``layers.N.mlp`` the
MLP's output, and a ``:input`` suffix (``layers.N.mlp:input``) the module's first input.
The subject model is loaded and run only up to the deepest decoder layer a hookpoint
needs: the rest would be computed and thrown away (sparsify and delphi both run all
layers). ``model.device_map`` spreads it over GPUs, CPU and disk (:mod:`.placement`).

Shapes: B windows, T tokens per window, D the hookpoint's width.
"""

from __future__ import annotations

import contextlib
import logging
import re
import weakref
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

from interp.models import placement as place
from interp.models.config import ModelConfig
from interp.models.provision import resolve_model

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_tokenizer(name: str) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(name))


def load_causal_lm(
    name: str, dtype: str, device: str, *, placement: ModelConfig | None = None
) -> nn.Module:
    """A full causal LM in eval mode (for LLM backends, steering and spliced evaluation);
    ``placement`` (a model config with ``device_map`` set) spreads it over devices."""
    return _from_pretrained(name, dtype, device, placement)


def _from_pretrained(
    name: str,
    dtype: str,
    device: str,
    placement: ModelConfig | None,
    config: Any = None,
    first_cut: int | None = None,
) -> nn.Module:
    from transformers import AutoModelForCausalLM

    path = resolve_model(name)
    kwargs: dict[str, Any] = {}
    folder = None
    if placement is not None and placement.device_map != "none":
        kwargs = place.load_kwargs(placement)
        folder = kwargs["offload_folder"] = place.private_offload_folder(placement, name)
    if config is not None:
        kwargs["config"] = config
    with place.quiet_cut_report(first_cut):
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype), **kwargs)
    if folder is not None:
        place.own_folder(model, folder)
        log.info("%s placed over devices: %s", name, getattr(model, "hf_device_map", "one device"))
    else:
        model = model.to(resolve_device(device))
    return model.eval()


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of a causal LM (Llama/Qwen/Gemma, GPT-2, GPT-NeoX)."""
    for path in ("model.layers", "transformer.h", "gpt_neox.layers", "model.decoder.layers"):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ValueError(f"cannot find the decoder layers of {type(model).__name__}")


INPUT_SUFFIX = ":input"


def _first_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


def _module_names(base: nn.Module) -> list[str]:
    return [name for name, _ in base.named_modules() if name]


def hookpoint_patterns(base: nn.Module) -> list[str]:
    """The base model's module names with layer numbers folded (``layers.{0..29}.mlp``):
    what an error message lists instead of thousands of names."""
    seen: dict[str, set[int]] = {}
    for name in _module_names(base):
        m = re.search(r"\.(\d+)(?=\.|$)", name)
        key = name if m is None else name[: m.start(1)] + "{}" + name[m.end(1) :]
        seen.setdefault(key, set()).update({int(m.group(1))} if m else set())
    out = []
    for key, nums in seen.items():
        out.append(key.format(f"{{{min(nums)}..{max(nums)}}}") if nums else key)
    return out


def resolve_hookpoint(base: nn.Module, name: str) -> nn.Module:
    """The module hookpoint ``name`` names under the model's base (``:input`` dropped)."""
    module_name = name.removesuffix(INPUT_SUFFIX)
    try:
        return base.get_submodule(module_name)
    except AttributeError:
        real = ", ".join(hookpoint_patterns(base))
        raise ValueError(
            f"unknown hookpoint {name!r}: {type(base).__name__} has no module "
            f"{module_name!r}. Its modules: {real} (append ':input' for a module's input)"
        ) from None


def layer_of(base: nn.Module, module: nn.Module, layers: nn.ModuleList) -> int:
    """Index of the decoder layer holding ``module``; -1 before the first, the last
    layer for modules after them (e.g. the final norm)."""
    owner = {id(m): i for i, block in enumerate(layers) for m in block.modules()}
    if id(module) in owner:
        return owner[id(module)]
    order = [id(m) for m in base.modules()]
    first_layer = order.index(id(layers[0])) if len(layers) else 0
    return -1 if order.index(id(module)) < first_layer else len(layers) - 1


class SubjectModel:
    """The subject LM cut after the deepest decoder layer its hookpoints need.

    ``capture(ids)`` returns every hookpoint's activation from one forward pass, on
    ``device`` (``output_device``, where the dictionaries run: a model spread over
    devices by ``model.device_map`` delivers each layer's output there);
    ``hidden(ids)`` the first (or only) one. With ``keep_full=True`` the layers past the
    cut stay in memory and :meth:`full_model` puts them back for a while (spliced
    evaluation during training needs the whole LM and its head).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: int | None = None,
        *,
        hookpoints: Sequence[str] = (),
        keep_full: bool = False,
        output_device: torch.device | str | None = None,
    ) -> None:
        layers = decoder_layers(model)
        _check_layer(layer, len(layers))
        names = _hookpoint_names(layer, hookpoints)
        self.model = model
        self.base = getattr(model, model.base_model_prefix, model)
        self.hookpoints = tuple(names)
        self.input_device = place.input_device(model)
        self.device = torch.device(output_device) if output_device else self.input_device
        self.d_in = int(model.config.hidden_size)
        self._captured: dict[str, torch.Tensor] = {}
        modules = [self._resolve(name) for name in names]
        self.widths: dict[str, int] = {}
        for name, module in zip(names, modules):
            self._register(name, module)
        self.last_layer = max(layer_of(self.base, m, layers) for m in modules)
        self._rest = list(layers[self.last_layer + 1 :])
        del layers[self.last_layer + 1 :]  # stop at the deepest hookpoint
        self._layers = layers
        if not keep_full:
            self._rest = []
        self.layer = self.last_layer
        self.widths = self._probe_widths()

    # ---------------------------------------------------------------- hookpoints
    def _resolve(self, name: str) -> nn.Module:
        return resolve_hookpoint(self.base, name)

    def _register(self, name: str, module: nn.Module) -> None:
        # The hooks reach this object through a weak reference: model -> hook -> self ->
        # model would be a cycle that keeps a finished task's LM alive until the cycle
        # collector happens to run (0.5 GiB per SmolLM2 collect task, measured).
        ref = weakref.ref(self)
        if name.endswith(INPUT_SUFFIX):

            def pre_hook(_m: nn.Module, args: tuple, kwargs: dict) -> None:
                value = args[0] if args else next(iter(kwargs.values()))
                if (owner := ref()) is not None:
                    owner._store(name, value)

            module.register_forward_pre_hook(pre_hook, with_kwargs=True)
        else:

            def hook(_m: nn.Module, _inputs: Any, output: Any) -> None:
                if (owner := ref()) is not None:
                    owner._store(name, _first_tensor(output))

            module.register_forward_hook(hook)

    def _store(self, name: str, value: Any) -> None:
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"hookpoint {name!r} does not carry a tensor ({type(value).__name__})")
        self._captured[name] = value

    def _probe_widths(self) -> dict[str, int]:
        ids = torch.zeros(1, 2, dtype=torch.long)
        return {name: int(t.shape[-1]) for name, t in self.capture(ids).items()}

    # ---------------------------------------------------------------- forward
    @torch.inference_mode()
    def capture(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every hookpoint's activation, [B, T] token ids -> {name: [B, T, D] float32}."""
        self._captured = {}
        self.base(input_ids=input_ids.to(self.input_device), use_cache=False)
        missing = [n for n in self.hookpoints if n not in self._captured]
        assert not missing, f"hooks did not fire: {missing}"
        out = {n: self._captured[n].to(self.device, torch.float32) for n in self.hookpoints}
        self._captured = {}
        return out

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The first hookpoint's activation (for ``layer=N``: the residual stream after
        layer N): [B, T] token ids -> [B, T, D] float32."""
        return self.capture(input_ids)[self.hookpoints[0]]

    @contextlib.contextmanager
    def full_model(self) -> Iterator[nn.Module]:
        """The whole causal LM (layers past the cut restored) for the ``with`` block.

        Hooks stay registered; the captured tensors are discarded after each use.
        """
        if self._rest:
            self._layers.extend(self._rest)
        try:
            yield self.model
        finally:
            del self._layers[self.last_layer + 1 :]
            self._captured = {}

    def module(self, hookpoint: str) -> nn.Module:
        """The module a hookpoint names (its ``:input`` suffix dropped)."""
        return self._resolve(hookpoint)


def load_subject(
    cfg: ModelConfig,
    layer: int | None = None,
    *,
    hookpoints: Sequence[str] = (),
    keep_full: bool = False,
) -> SubjectModel:
    """Load the subject LM cut after the deepest of ``layer`` / ``hookpoints``: the layers
    above are never loaded, unless ``keep_full`` (spliced evaluation needs them), and
    placed over devices as ``cfg.device_map`` says."""
    config, first_cut = (None, None) if keep_full else _cut_config(cfg.name, layer, hookpoints)
    placement = cfg if cfg.device_map != "none" else None
    model = _from_pretrained(cfg.name, cfg.dtype, cfg.device, placement, config, first_cut)
    subject = SubjectModel(
        model, layer, hookpoints=hookpoints, keep_full=keep_full,
        output_device=resolve_device(cfg.device),
    )  # fmt: skip
    log.info(
        "subject model %s (%s) cut after layer %d for %s",
        cfg.name,
        cfg.dtype,
        subject.last_layer,
        ", ".join(subject.hookpoints),
    )
    return subject


def _check_layer(layer: int | None, num_layers: int) -> None:
    if layer is not None and not 0 <= layer < num_layers:
        raise ValueError(f"layer={layer} but the model has layers 0..{num_layers - 1}")


def _hookpoint_names(layer: int | None, hookpoints: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys([*hookpoints, *([f"layers.{layer}"] if layer is not None else [])]))
    if not names:
        raise ValueError("SubjectModel needs a layer or at least one hookpoint")
    return names


def _cut_config(name: str, layer: int | None, hookpoints: Sequence[str]) -> tuple[Any, int]:
    """(the model's config cut after the deepest hookpoint's layer, layers kept), from a
    weightless copy of the model on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(resolve_model(name))
    with torch.device("meta"):
        meta = AutoModelForCausalLM.from_config(config)
    layers = decoder_layers(meta)
    _check_layer(layer, len(layers))
    base = getattr(meta, meta.base_model_prefix, meta)
    names = _hookpoint_names(layer, hookpoints)
    deepest = max(layer_of(base, resolve_hookpoint(base, n), layers) for n in names)
    keep = max(deepest + 1, 1)
    return place.cut_config(config, keep), keep
