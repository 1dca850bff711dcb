"""Config sections composed from the parts that registered components own.

A component (a scorer, an architecture, an LLM backend) declares its own frozen
dataclass next to its code; a section of the run config (``scorer``, ``sae``, ``llm``)
is one flat dataclass whose fields are the section's common fields plus every part's
fields. A part registered with a ``prefix`` contributes ``<prefix>_<field>`` keys
(``scorer.intruder_examples`` is :class:`IntruderConfig` ``.examples``); one without a
prefix contributes its field names as they are, and two parts that declare the same
name (``k`` for topk and batchtopk) must agree on its type and default.

Keeping the section flat keeps every key users type, every YAML file and every run id
what it was; the component still reads a typed object of its own: ``section.part(Cls)``.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from collections.abc import Sequence
from typing import Any


@dataclasses.dataclass(frozen=True)
class Part:
    """One component's config dataclass and the prefix of its keys in its section."""

    cls: type
    prefix: str | None = None

    def key(self, name: str) -> str:
        return f"{self.prefix}_{name}" if self.prefix else name


def compose_section(name: str, module: str, common: type, parts: Sequence[Part]) -> type:
    """A frozen dataclass named ``name`` (registered in ``module`` so it pickles): the fields
    and methods of ``common`` plus every part's fields (see the module docstring).

    Its ``__post_init__`` runs ``common``'s, then builds each part once, so a part's own
    validation runs when the section is built; ``section.part(Cls)`` returns the part.
    """
    fields: dict[str, tuple[Any, dataclasses.Field]] = {}
    owners: dict[str, str] = {}
    taken = {f.name for f in dataclasses.fields(common)}
    for part in parts:
        hints = typing.get_type_hints(part.cls)
        for f in dataclasses.fields(part.cls):
            key = part.key(f.name)
            if key in taken:
                raise TypeError(f"{part.cls.__name__}.{f.name} clashes with {name}.{key}")
            if key in fields:
                _check_same(fields[key], hints[f.name], f, key, owners[key], part.cls.__name__)
                continue
            fields[key] = (hints[f.name], _copy_field(f))
            owners[key] = part.cls.__name__
    parts_by_cls = {p.cls: p for p in parts}
    cls = dataclasses.make_dataclass(
        name,
        [(key, tp, f) for key, (tp, f) in fields.items()],
        bases=(common,),
        frozen=True,
        namespace={
            "__post_init__": _post_init(common),
            "part": _part_method(parts_by_cls),
            "__doc__": common.__doc__,
        },
    )
    cls.__module__ = module  # make_dataclass(module=) is Python 3.12+
    setattr(sys.modules[module], name, cls)
    return cls


def _check_same(
    seen: tuple[Any, dataclasses.Field],
    tp: Any,
    f: dataclasses.Field,
    key: str,
    first: str,
    second: str,
) -> None:
    seen_tp, seen_f = seen
    if seen_tp != tp or _default(seen_f) != _default(f):
        raise TypeError(
            f"{key} is declared by {first} and {second} with different types or defaults; "
            "give one of them a prefix or make them agree"
        )


def _copy_field(f: dataclasses.Field) -> dataclasses.Field:
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
    return dataclasses.field(default=f.default, metadata=f.metadata)


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _post_init(common: type) -> Any:
    base = getattr(common, "__post_init__", None)

    def __post_init__(self: Any) -> None:
        if base is not None:
            base(self)
        for cls in type(self).part.parts:
            self.part(cls)

    return __post_init__


def _part_method(parts: dict[type, Part]) -> Any:
    def part(self: Any, cls: type) -> Any:
        """The registered part ``cls`` of this section, built from its keys here (its
        defaults when ``cls`` contributed no keys, e.g. a plugin registered later)."""
        spec = parts.get(cls, Part(cls, None))
        names = [f.name for f in dataclasses.fields(cls)]
        have = {n: getattr(self, spec.key(n)) for n in names if hasattr(self, spec.key(n))}
        return cls(**have) if cls in parts else cls()

    part.parts = tuple(parts)  # type: ignore[attr-defined]
    return part
