"""The architectures, by name: one line per built-in, plus any registered at run time.

A new architecture is one module (its SparseCoder subclass, its config dataclass and an
:class:`~interp.sae.spec.ArchitectureSpec`) and one line in ``BUILTIN``; a plugin calls
:func:`register_architecture` instead (its hyperparameters then take their defaults:
only built-ins contribute keys to ``SAEConfig``).
"""

from __future__ import annotations

from dataclasses import dataclass

from interp.sae.spec import ArchitectureSpec
from interp.sae.specs import batchtopk, gated, jumprelu, neurons, pretrained, relu, topk

BUILTIN: tuple[ArchitectureSpec, ...] = (
    topk.SPEC,
    batchtopk.SPEC,
    jumprelu.SPEC,
    relu.SPEC,
    gated.SPEC,
    neurons.SPEC,
    pretrained.SPEC,
)

_REGISTRY: dict[str, ArchitectureSpec] = {spec.name: spec for spec in BUILTIN}


def register_architecture(spec: ArchitectureSpec, *, replace: bool = False) -> ArchitectureSpec:
    """Make ``sae.architecture=<spec.name>`` valid from now on (in this process)."""
    if spec.name in _REGISTRY and not replace and _REGISTRY[spec.name] is not spec:
        raise ValueError(
            f"architecture {spec.name!r} is already registered: pick another name "
            "(or pass replace=True)"
        )
    _REGISTRY[spec.name] = spec
    return spec


def unregister_architecture(name: str) -> None:
    """Forget a runtime-registered architecture (tests); built-ins stay."""
    if any(spec.name == name for spec in BUILTIN):
        raise ValueError(f"architecture {name!r} is built in and cannot be unregistered")
    _REGISTRY.pop(name, None)


def architectures() -> dict[str, ArchitectureSpec]:
    """Every registered architecture, by name (a copy)."""
    return dict(_REGISTRY)


def get_architecture(name: str) -> ArchitectureSpec:
    """The spec of ``name`` (ValueError naming the registered ones)."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise ValueError(
            f"sae.architecture={name!r} is not one of {sorted(_REGISTRY)}: pick one, or "
            "register it with interp.sae.registry.register_architecture"
        )
    return spec


def spec_of(architecture: str) -> ArchitectureSpec:
    """The spec of a dictionary's ``architecture``, or a bare one (every default) for a
    class that was never registered."""
    spec = _REGISTRY.get(architecture)
    if spec is None:
        return ArchitectureSpec(architecture, _NoConfig, None, lambda cfg: ("", frozenset()))
    return spec


@dataclass(frozen=True)
class _NoConfig:
    """The config of an unregistered architecture's bare spec."""
