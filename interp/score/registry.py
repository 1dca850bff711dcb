"""The scorers by name: one line per built-in scorer, plus any registered at run time.

Adding a scorer: its code (``interp/score/<x>.py``), its :class:`ScorerSpec` (in a light
module next to it, see :mod:`interp.score.spec`) and one line in ``BUILTIN`` below. A
built-in scorer's config part becomes ``scorer.<prefix>_<field>`` keys. A plugin (tests,
a notebook, a fork) calls :func:`register_scorer` in the process that runs the interpret
stage; its config part, if any, has no keys (``ctx.cfg.part(Cls)`` gives its defaults).
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.score.classifier_spec import DETECTION, FUZZING, FUZZING_ACTIVE
from interp.score.embedding_spec import EMBEDDING
from interp.score.intervention_spec import INTERVENTION
from interp.score.intruder_spec import INTRUDER
from interp.score.simulation_spec import SIMULATION
from interp.score.spec import ScorerSpec
from interp.score.surprisal_spec import SURPRISAL

BUILTIN: tuple[ScorerSpec, ...] = (
    DETECTION,
    FUZZING,
    FUZZING_ACTIVE,
    SURPRISAL,
    EMBEDDING,
    INTERVENTION,
    SIMULATION,
    INTRUDER,
)
"""Built-in scorers, in the order ``scorer.names`` lists its choices."""

_SPECS: dict[str, ScorerSpec] = {s.name: s for s in BUILTIN}


def register_scorer(spec: ScorerSpec, *, replace: bool = False) -> ScorerSpec:
    """Add ``spec`` to the registry (``replace=True`` to redefine a name); returns it."""
    if spec.name in _SPECS and not replace and _SPECS[spec.name] != spec:
        raise ValueError(
            f"scorer {spec.name!r} is already registered ({_SPECS[spec.name].scorer}); "
            "pick another name or pass replace=True"
        )
    if not spec.name.isidentifier():
        raise ValueError(f"scorer name {spec.name!r} must be an identifier (records key by it)")
    _SPECS[spec.name] = spec
    return spec


def unregister_scorer(name: str) -> None:
    """Remove a scorer registered at run time (a built-in one is restored, not removed)."""
    builtin = {s.name: s for s in BUILTIN}
    if name in builtin:
        _SPECS[name] = builtin[name]
    else:
        _SPECS.pop(name, None)


def scorer_names() -> list[str]:
    """Every registered scorer's name, built-ins first in their order."""
    return list(_SPECS)


def scorer_spec(name: str) -> ScorerSpec:
    """The spec registered as ``name``; a one-line error listing the choices if none."""
    if name not in _SPECS:
        raise ValueError(f"unknown scorer {name!r}; choose from {sorted(_SPECS)}")
    return _SPECS[name]


def scorer_specs(names: Sequence[str] | None = None) -> list[ScorerSpec]:
    """The specs of ``names`` (every registered one if None)."""
    return [scorer_spec(n) for n in names] if names is not None else list(_SPECS.values())


def headline_metric(name: str) -> str | None:
    """``name``'s headline metric, None for a scorer not registered here (an old table)."""
    spec = _SPECS.get(name)
    return spec.headline if spec else None


def delphi_folders() -> dict[str, str]:
    """scorer -> its delphi score folder, for the scorers that have delphi score files."""
    return {s.name: s.delphi for s in _SPECS.values() if s.delphi}


def reference_scorer() -> str | None:
    """The scorer the report correlates every other against (simulation), if any."""
    return next((s.name for s in _SPECS.values() if s.reference), None)
