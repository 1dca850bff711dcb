"""The stage registry: every config field is accounted for by some stage's run id (or
marked ``id=False``), the planner and runs.py read the registry, and a stage registered by
a test runs through the plan, the paths and the uniform entry like a built-in one."""

from __future__ import annotations

import dataclasses
import inspect
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from interp.config import RunConfig, load_run_config
from interp.plan import job_pending, plan_sweep
from interp.runs import RunIds, RunPaths, commit_task, is_committed
from interp.stages import run_task
from interp.stages.context import StageContext
from interp.stages.registry import (
    DATA_INPUTS,
    SWEEP_KEYS,
    IdInput,
    StageSpec,
    register,
    stage,
    stages,
    unregister,
)

pytestmark = pytest.mark.unit
D_IN = 576


def declared_paths() -> set[str]:
    """Config paths some run id reads (a section covers every field below it)."""
    inputs = [*DATA_INPUTS, *(i for s in stages() for i in s.inputs)]
    return {i.path for i in inputs if i.kind != "id"} | set(SWEEP_KEYS)


def unaccounted(cfg: object, declared: set[str], prefix: str = "") -> list[str]:
    """Fields of config ``cfg`` (recursively) neither under a declared path nor marked
    ``id=False``."""
    out = []
    for f in dataclasses.fields(cfg):  # type: ignore[arg-type]
        path = f"{prefix}{f.name}"
        if f.metadata.get("id", True) is False or path in declared:
            continue
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out += unaccounted(value, declared, f"{path}.")
        else:
            out.append(path)
    return out


def resolves(path: str) -> bool:
    value: object = RunConfig()
    for part in path.split("."):
        if not hasattr(value, part):
            return False
        value = getattr(value, part)
    return True


def test_every_config_field_feeds_a_run_id_or_is_marked_not() -> None:
    missing = unaccounted(RunConfig(), declared_paths())
    assert not missing, (
        f"config fields {missing} enter no stage's run id: declare them as an input of the "
        "stage that computes from them (interp/stages/registry.py) or mark them id=False"
    )


def test_every_declared_input_is_a_real_config_path() -> None:
    assert [p for p in declared_paths() if not resolves(p)] == []


def test_the_accounting_catches_an_undeclared_field() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extra:
        counted: int = 1
        logging_only: int = dataclasses.field(default=0, metadata={"id": False})

    @dataclasses.dataclass(frozen=True)
    class WithExtra:
        extra: Extra = dataclasses.field(default_factory=Extra)
        tag: str = ""

    assert unaccounted(WithExtra(), set()) == ["extra.counted", "tag"]
    assert unaccounted(WithExtra(), {"extra", "tag"}) == []


def test_ids_hash_exactly_the_declared_inputs() -> None:
    base = RunIds.of(load_run_config({}))
    assert RunIds.of(load_run_config({"out_dir": "/elsewhere"})) == base  # id=False
    assert RunIds.of(load_run_config({"name": "other"})) == base  # picks the folder only
    hooked = RunIds.of(load_run_config({"hook": "layers.3.mlp"}))  # when_set input
    assert hooked.data == base.data and hooked.train != base.train
    served = RunIds.of(load_run_config({"serve": {"replicas": 3}}))
    assert served == base  # serving is not what is computed


def test_every_stage_runs_through_one_entry_signature() -> None:
    for spec in stages():
        params = list(inspect.signature(spec.load()).parameters)
        assert params == ["ctx"], f"{spec.entry} takes {params}, not (ctx)"


def test_the_planner_does_not_import_training_code() -> None:
    code = (
        "import sys; from interp.config import load_run_config; from interp.plan import "
        "plan_sweep; plan_sweep([(load_run_config({}), 576), (load_run_config({'layer': 3}), "
        "576)]); print(sorted(m for m in sys.modules if (m.startswith('interp.train.') "
        "and m != 'interp.train.config') or m == 'torch'))"
    )  # interp.train.config is TrainConfig's schema (light): RunConfig composes it
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ----------------------------------------------------------------------------- a plugin stage
SEEN: list[StageContext] = []


def probe_run(ctx: StageContext) -> None:
    """A test stage: commits one manifest per task in its own folder."""
    SEEN.append(ctx)
    commit_task(ctx.paths.manifest_file("probe", ctx.task.index), {"stage": "probe"})


@pytest.fixture
def probe() -> Iterator[StageSpec]:
    inputs = (IdInput("collect", "id:collect"), IdInput("k", "value:sae.k"))
    spec = StageSpec("probe", f"{__name__}:probe_run", "probe", "probe", inputs, after=("compact",))
    register(spec, after="compact")
    SEEN.clear()
    yield spec
    unregister("probe")


def test_a_registered_stage_is_planned_placed_and_run(probe: StageSpec, tmp_path: Path) -> None:
    cfg = load_run_config({})
    plan = plan_sweep([(cfg, D_IN)])
    keys = [j.key for j in plan.jobs]
    (job,) = [j for j in plan.jobs if j.stage == "probe"]
    compact = next(j for j in plan.jobs if j.stage == "compact")
    assert job.depends_on == (compact.key,) and keys.index(compact.key) < keys.index(job.key)
    paths = RunPaths(tmp_path, cfg)
    ids = RunIds.of(cfg)
    assert paths.stage_dir("probe") == tmp_path / "probe" / ids.get("probe")
    assert ids.get("probe") != ids.collect and ids.point == ids.interpret  # point id kept
    other = RunIds.of(load_run_config({"sae": {"k": 16}})).get("probe")
    assert other != ids.get("probe")
    cfgs = {job.point: cfg}
    assert job_pending(job, tmp_path, cfgs) == list(job.tasks)
    from interp.config import to_dict

    run_task("probe", to_dict(cfg), tmp_path, job.tasks[0])
    assert SEEN and SEEN[0].cfg == cfg and SEEN[0].root == tmp_path
    assert is_committed(paths.manifest_file("probe", 0))
    assert job_pending(job, tmp_path, cfgs) == []
    assert stage("probe") is probe
    with pytest.raises(ValueError, match="already registered"):
        register(probe)
