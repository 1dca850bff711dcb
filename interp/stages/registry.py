"""One registry of stages: what each stage is, read by the planner, ``runs.py`` and ``slurm/``.

A :class:`StageSpec` says everything the rest of the system needs from a stage: its name,
the folder it writes and the inputs that feed its run id, how its work splits into array
tasks, which stages must succeed first, whether its jobs merge across points that share an
LM forward (a group key), whether it is a *service* (jobs that serve others while they
run and commit nothing), a resources hint for the cluster, and its ``run`` entry, which
always takes one :class:`interp.stages.context.StageContext`.

The planner (:mod:`interp.plan`) builds jobs from these specs, :class:`interp.runs.RunIds`
hashes the declared inputs, and ``slurm/`` reads the flags (service, redo, hooks) without
knowing any stage by name. Adding a stage is one spec here plus its module.

Stays light: no stage module, torch or store code is imported until a stage runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp.groups import collect_group_key, train_group_key
from interp.llm.registry import backend_names, backend_spec

if TYPE_CHECKING:
    from interp.config import RunConfig


@dataclass(frozen=True)
class Task:
    """One array task: index within its job, and the interval it owns."""

    index: int
    start: int
    stop: int


def intervals(total: int, size: int) -> tuple[Task, ...]:
    """Tile ``[0, total)`` with consecutive intervals of ``size`` (the last may be short)."""
    return tuple(
        Task(i, start, min(start + size, total)) for i, start in enumerate(range(0, total, size))
    )


def num_latents(cfg: RunConfig, d_in: int) -> int:
    """The dictionary's width at input width ``d_in``."""
    return cfg.sae.num_latents or d_in * cfg.sae.expansion_factor


# ----------------------------------------------------------------------------- run id inputs


@dataclass(frozen=True)
class IdInput:
    """One entry of the dict a run id hashes: its key, and where its value comes from.

    ``source`` is ``id:<name>`` (an upstream run id), ``section:<path>`` (the id view of a
    config section: fields marked ``id=False`` left out, ``when_set`` ones only when set),
    ``value:<path>`` (a config value as it is) or ``when_set:<path>`` (the value, only
    when it is set: so adding such a key left existing ids as they were).
    """

    key: str
    source: str

    @property
    def kind(self) -> str:
        return self.source.split(":", 1)[0]

    @property
    def path(self) -> str:
        return self.source.split(":", 1)[1]

    def entry(self, cfg: RunConfig, ids: Mapping[str, str]) -> tuple[bool, Any]:
        """(present, value) of this input for ``cfg`` given the upstream ``ids``."""
        if self.kind == "id":
            return True, ids[self.path]
        value: Any = cfg
        for part in self.path.split("."):
            value = getattr(value, part)
        if self.kind == "section":
            from interp.config import id_dict

            return True, id_dict(value)
        if self.kind == "when_set":
            return bool(value), value
        assert self.kind == "value", f"unknown id input source {self.source!r}"
        return True, value


def _inputs(**sources: str) -> tuple[IdInput, ...]:
    return tuple(IdInput(k, v) for k, v in sources.items())


DATA_INPUTS = _inputs(tokenizer="value:model.name", data="section:data")
"""What the tokenised corpus (``data/<data id>/``) every stage reads is computed from."""

POINT_ID = "interpret"
"""The run id that names a sweep point (``points/<id>/``): its last built-in stage's."""

SWEEP_KEYS = ("name",)
"""Config keys that pick the sweep folder every stage of a point writes in (not an id)."""


# ----------------------------------------------------------------------------- array tasks


def one_task(cfg: RunConfig, d_in: int) -> tuple[Task, ...]:
    return (Task(0, 0, 1),)


def token_slices(cfg: RunConfig, d_in: int) -> tuple[Task, ...]:
    return intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens)


def latent_ranges(cfg: RunConfig, d_in: int) -> tuple[Task, ...]:
    return intervals(num_latents(cfg, d_in), cfg.collect.range_latents)


def interpret_ranges(cfg: RunConfig, d_in: int) -> tuple[Task, ...]:
    """Ranges of *positions* in the selection (``interpret.latents``): its size is known
    here, its ids at run time (:mod:`interp.interpret.select`)."""
    width = num_latents(cfg, d_in)
    sel = cfg.interpret.selection
    if sel.mode == "range" and sel.start == 0:  # num_latents=N: capped at the width, as ever
        return intervals(min(sel.stop, width), cfg.interpret.range_latents)
    problem = sel.problem(width)
    if problem:
        raise ValueError(problem)
    return intervals(sel.size(width), cfg.interpret.range_latents)


def replicas(cfg: RunConfig, d_in: int) -> tuple[Task, ...]:
    return intervals(cfg.serve.replicas, 1)


def always(cfg: RunConfig) -> bool:
    return True


def trains(cfg: RunConfig) -> bool:
    """The train stage runs for every point but a pretrained one (collect loads that)."""
    return not cfg.sae.spec.pretrained


def pretrained_inputs(cfg: RunConfig) -> tuple[IdInput, ...] | None:
    from interp.pretrained_point import train_id_inputs

    return train_id_inputs(cfg)


# ----------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class StageSpec:
    """What one stage is; see the module docstring."""

    name: str
    entry: str
    """``module:function`` run by every task: ``run(ctx: StageContext) -> Any``."""
    folder: str
    """Top-level folder under the sweep root its outputs and manifests live in."""
    run_id: str = ""
    """The :class:`interp.runs.RunIds` field naming its folder below ``folder`` ("": none)."""
    inputs: tuple[IdInput, ...] = ()
    """What feeds ``run_id``, declared by the stage that owns that id."""
    inputs_for: Callable[[RunConfig], tuple[IdInput, ...] | None] | None = None
    """The inputs of one config when they are not ``inputs`` (returns None when they are): a
    pretrained dictionary's train id hashes its content, not training settings."""
    after: tuple[str, ...] = ()
    """Stages of the same point (every point's, for a sweep-level stage) to succeed first."""
    split: Callable[[RunConfig, int], tuple[Task, ...]] = one_task
    """``(config, hookpoint width) ->`` its array tasks."""
    group_key: Callable[[RunConfig], str] | None = None
    """Jobs of points with equal keys merge into one group job (one LM forward)."""
    loads_subject: bool = False
    """Its tasks load the subject model (``model.max_memory``'s GPUs must be theirs)."""
    service: bool = False
    """Serves other stages while it runs; commits nothing; never requeued."""
    uses: tuple[str, ...] = ()
    """Services its tasks talk to: its jobs wait for them to *start*."""
    enabled: Callable[[RunConfig], bool] = always
    """An optional stage: planned only where this is true (may raise naming a bad setup)."""
    service_id: Callable[[RunConfig], str] | None = None
    """A service's run id: points with equal ids share its jobs."""
    resources: Callable[[RunConfig, int], dict[str, Any]] | None = None
    """Hint ``(config, number of tasks) -> {resource: value}`` over the cluster profile's."""
    sweep: bool = False
    """One job for the whole sweep (it gets no point config), after every point."""
    redo: bool = False
    """Commits no manifest: redone whole each time unless ``current`` says it is up to date;
    a resubmission replaces a task even while it runs (it is cheap)."""
    current: str = ""
    """``module:function(root) -> bool``: its output already reflects what is committed."""
    refuse_executor: Callable[[RunConfig, str], str | None] | None = None
    """``(config, cluster.executor) ->`` why this stage cannot run there (None: it can)."""
    retry_errors: bool = False
    """``rerun --retry-errors`` reopens its committed tasks whose manifest counts errors."""
    task_name: str = "task"
    """What one of its array tasks is called in status lines ("replica" for serve)."""
    notes_title: str = ""
    """Heading of the notes its ``report`` hook gives, in the sweep status."""
    report: str = ""
    """``module:function(root, job, alive) -> (problems, notes)``: lines for the sweep
    status (``alive(job_id)``: whether the scheduler still runs that job)."""

    def load(self) -> Callable[..., Any]:
        """Its ``run`` entry (imports the stage module now)."""
        return call(self.entry)


def call(spec: str) -> Callable[..., Any]:
    """The function ``module:function`` names (imported on use, never at import time)."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def serve_enabled(cfg: RunConfig) -> bool:
    """``serve.enabled``; the replicas talk HTTP, so the LLM must be an HTTP client."""
    if not cfg.serve.enabled:
        return False
    if not backend_spec(cfg.llm.backend).discovery:  # it cannot reach served replicas
        served = "|".join(n for n in backend_names() if backend_spec(n).discovery)
        raise ValueError(
            f"serve.enabled=true needs llm.backend={served} (got {cfg.llm.backend!r}): the "
            "interpret tasks talk to the served replicas over HTTP; set llm=http or "
            "llm=llama_server, or serve=in_task for an in-task LLM"
        )
    return True


def serve_refusal(cfg: RunConfig, executor: str) -> str | None:
    """Served LLMs are SLURM jobs: why they cannot run under ``executor``, if so."""
    if not cfg.serve.enabled or executor == "slurm":
        return None
    return (
        f"serve.enabled=true (serve={cfg.serve.engine}) needs a SLURM cluster profile "
        f"(the LLM server replicas are SLURM jobs), but cluster.executor={executor!r}: use "
        "cluster=local_slurm or your site's profile, or serve=in_task with llm.base_urls "
        "pointing at a server you started yourself"
    )


def serve_id(cfg: RunConfig) -> str:
    from interp.llm.replicas import serve_id as sid

    return sid(cfg.llm, cfg.serve)


def serve_resources(cfg: RunConfig, n_tasks: int) -> dict[str, Any]:
    """The ServeConfig's time and GPUs; all replicas run at once and none is requeued."""
    s = cfg.serve
    hint: dict[str, Any] = {"array_parallelism": max(1, n_tasks), "max_requeues": 0}
    if s.time_min:
        hint["time_min"] = s.time_min
    if s.gpus_per_replica:
        hint.update(gpus_per_node=s.gpus_per_replica, gpus_per_task=0)
    return hint


STAGES: tuple[StageSpec, ...] = (
    StageSpec(
        "train",
        "interp.stages.train:run",
        folder="train",
        run_id="train",
        inputs=_inputs(
            data="id:data",
            model="section:model",
            layer="value:layer",
            hook="when_set:hook",
            target_hookpoint="when_set:target_hookpoint",
            sae="section:sae",
            train="section:train",
        ),
        inputs_for=pretrained_inputs,
        group_key=train_group_key,
        enabled=trains,
        loads_subject=True,
    ),
    StageSpec(
        "collect",
        "interp.stages.collect:run",
        folder="store",
        run_id="collect",
        inputs=_inputs(train="id:train", collect="section:collect"),
        after=("train",),
        split=token_slices,
        group_key=collect_group_key,
        loads_subject=True,
    ),
    StageSpec(
        "compact",
        "interp.stages.compact:run",
        folder="store",
        run_id="collect",
        after=("collect",),
        split=latent_ranges,
    ),
    StageSpec(
        "serve",
        "interp.stages.serve:run",
        folder="serve",
        after=("compact",),  # no GPU idles while the point trains
        split=replicas,
        service=True,
        enabled=serve_enabled,
        service_id=serve_id,
        resources=serve_resources,
        refuse_executor=serve_refusal,
        task_name="replica",
        notes_title="served LLM replicas",
        report="interp.stages.serve:report",
    ),
    StageSpec(
        "interpret",
        "interp.stages.interpret:run",
        folder="interpret",
        run_id="interpret",
        inputs=_inputs(
            collect="id:collect",
            interpret="section:interpret",
            llm="section:llm",
            scorer="section:scorer",
        ),
        after=("compact",),
        split=interpret_ranges,
        uses=("serve",),
        retry_errors=True,
        task_name="range",
        notes_title="interpret selections (interpret.latents)",
        report="interp.stages.selected:report",
    ),
    StageSpec(
        "gather",
        "interp.stages.gather:run",
        folder="gather",
        after=("interpret",),
        sweep=True,
        redo=True,
        current="interp.stages.gather:is_current",
        report="interp.stages.gather:report",
    ),
)
"""The built-in stages, in the order a point's jobs run (a dependency comes first)."""

_REGISTRY: dict[str, StageSpec] = {s.name: s for s in STAGES}


def stages() -> tuple[StageSpec, ...]:
    """Every registered stage, in the order a point's jobs run."""
    return tuple(_REGISTRY.values())


def register(spec: StageSpec, *, after: str | None = None) -> None:
    """Add stage ``spec`` (placed right after stage ``after``, else last). A stage may own
    a new run id (``run_id`` + ``inputs``, kept in :attr:`interp.runs.RunIds.extra`) or
    reuse an upstream stage's, as compact reuses collect's."""
    if spec.name in _REGISTRY:
        raise ValueError(f"stage {spec.name!r} is already registered")
    order = list(_REGISTRY.values())
    at = len(order) if after is None else [s.name for s in order].index(after) + 1
    order.insert(at, spec)
    _REGISTRY.clear()
    _REGISTRY.update((s.name, s) for s in order)


def unregister(name: str) -> None:
    """Remove stage ``name`` (tests that registered one)."""
    _REGISTRY.pop(name, None)


def stage(name: str) -> StageSpec:
    """The spec of stage ``name``; ``ValueError`` naming the stages there are."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"no stage {name!r}; stages are {list(_REGISTRY)}") from None


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def id_stages() -> tuple[StageSpec, ...]:
    """The stages that own a run id (declare its inputs), upstream first."""
    return tuple(s for s in stages() if s.inputs)
