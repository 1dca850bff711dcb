"""The LLM backends by name: one line per built-in backend, more registered at run time.

``llm.backend`` is checked against this registry when the config is built, and
:func:`interp.llm.build_client` builds the client its spec names. Adding a backend is
one module declaring a :class:`~interp.llm.spec.BackendSpec` plus one line in
:data:`BUILTIN_BACKENDS` (its config part then joins ``LLMConfig``'s keys), or a
:func:`register_backend` call before the config is loaded (a plugin: no new keys).
"""

from __future__ import annotations

from interp.llm.backends import http, transformers, vllm
from interp.llm.spec import BackendSpec

BUILTIN_BACKENDS: tuple[BackendSpec, ...] = (
    transformers.SPEC,
    http.SPEC,
    vllm.SPEC,
)

_REGISTERED: dict[str, BackendSpec] = {}  # added at run time by register_backend


def register_backend(spec: BackendSpec, *, replace: bool = False) -> BackendSpec:
    """Make ``llm.backend=<spec.name>`` select ``spec`` in this process; returns it.

    A name already taken raises ``ValueError`` unless ``replace`` (a built-in name never
    can be replaced: its keys are part of the config). Register before the config is
    loaded, in every process that loads it: a cluster task re-reads the config, so the
    module that registers must be imported there too.
    """
    builtin = {s.name for s in BUILTIN_BACKENDS}
    if spec.name in builtin or (spec.name in _REGISTERED and not replace):
        raise ValueError(
            f"LLM backend {spec.name!r} is already registered: pick another name"
            + ("" if spec.name in builtin else " or pass replace=True")
        )
    _REGISTERED[spec.name] = spec
    return spec


def unregister_backend(name: str) -> None:
    """Forget a backend added by :func:`register_backend` (tests clean up with it)."""
    _REGISTERED.pop(name, None)


def backend_names() -> list[str]:
    """Every backend ``llm.backend`` may name: the built-in ones first."""
    return [s.name for s in BUILTIN_BACKENDS] + list(_REGISTERED)


def backend_spec(name: str) -> BackendSpec:
    """The spec of ``llm.backend=name``; a ``ValueError`` naming the choices otherwise."""
    for spec in BUILTIN_BACKENDS:
        if spec.name == name:
            return spec
    if name in _REGISTERED:
        return _REGISTERED[name]
    raise ValueError(
        f"llm.backend={name!r} is not one of {backend_names()} (a new backend is registered "
        "with interp.llm.registry.register_backend)"
    )
