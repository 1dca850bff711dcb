"""Typed dataclass configs from plain dicts: strict keys, types, closed choices.

The machinery behind :mod:`interp.config` (which holds the schemas): building nested
frozen dataclasses from YAML-like dicts with errors that name the dotted key, turning them
back into plain dicts, and the id view that leaves out logging-only fields.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal

_UNSET = object()


def meta(
    doc: str, *, id: bool | Literal["when_set"] = True, legacy: Any = _UNSET
) -> dict[str, Any]:
    """A config field's metadata: its documentation (``--help-fields``) and whether it
    enters run ids (True; False = logging only; "when_set" = only when not the default).

    ``legacy`` (with "when_set"): the value that behaves as before the field existed; the
    field is left out of ids at that value instead of at its default, so a new default
    that changes results gets new ids while the old behaviour keeps its old ids."""
    out = {"doc": doc, "id": id}
    if legacy is not _UNSET:
        out["legacy"] = legacy
    return out


def positive(obj: Any, *names: str, section: str = "") -> None:
    """Raise ``ValueError`` naming ``<section>.<name>`` for each field of ``obj`` that is not
    > 0; ``section`` defaults to the class name without ``Config`` (``DataConfig`` -> data)."""
    section = section or type(obj).__name__.removesuffix("Config").lower()
    for name in names:
        value = getattr(obj, name)
        if value <= 0:
            raise ValueError(f"{section}.{name}={value} must be > 0")


def build(cls: type, raw: Any, path: str) -> Any:
    """Recursively build dataclass ``cls`` from ``raw``, checking keys and types."""
    if isinstance(raw, cls):
        return raw
    if not isinstance(raw, dict):
        raise ValueError(f"{path or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = path or "the top level"
        raise ValueError(f"unknown key(s) {unknown} in {where}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in raw.items():
        kwargs[name] = _coerce(hints[name], value, f"{path}.{name}" if path else name)
    return cls(**kwargs)


def with_legacy(cls: type, raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` (a config saved by an older version) with every field it lacks that declares
    a ``legacy`` value set to it: a saved config means what it meant when it was written,
    not the newer default (whose results differ)."""
    out = dict(raw)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in out and "legacy" in f.metadata:
            out[f.name] = f.metadata["legacy"]
        elif dataclasses.is_dataclass(hints[f.name]) and isinstance(out.get(f.name), dict):
            out[f.name] = with_legacy(hints[f.name], out[f.name])
    return out


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ValueError(f"{path}={value!r} is not one of {list(choices)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, path)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp} at {path}")  # a schema bug, not user input


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, JSON-serialisable dict of a config (tuples become lists)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def id_dict(cfg: Any) -> dict[str, Any]:
    """Like :func:`to_dict` but without fields marked ``id=False`` (logging-only keys).

    Fields marked ``id="when_set"`` count only when they differ from their default: a
    field added later leaves the ids of configs that do not use it unchanged.
    """
    if not dataclasses.is_dataclass(cfg):
        return cfg
    out = {}
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("id", True):
            continue
        v = getattr(cfg, f.name)
        if f.metadata.get("id") == "when_set" and v == f.metadata.get("legacy", _default(f)):
            continue
        if dataclasses.is_dataclass(v):
            out[f.name] = id_dict(v)
        else:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def describe(cls: type, prefix: str = "") -> list[str]:
    """One line per field: dotted key, default and documentation (for ``--help``)."""
    lines = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        hint = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(hint):
            lines.extend(describe(hint, key + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        lines.append(f"{key} = {default!r}: {f.metadata.get('doc', '')}")
    return lines
