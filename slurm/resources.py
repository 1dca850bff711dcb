"""Cluster profiles (``conf/cluster/*.yaml`` with ``executor: slurm``), validated: what every
job of each stage asks SLURM for. Stage names come from the stage registry; nothing here
knows what a stage does.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interp.config import build
from interp.plan import StageJob
from interp.stages.registry import names as stage_names

CLUSTER_KEYS = (
    "executor", "max_array_size", "python", "job_prefix", "worker", "resources", "stages"
)  # fmt: skip
MANAGED_FLAGS = frozenset(
    {"array", "dependency", "output", "error", "job-name", "signal", "open-mode", "wrap"}
)
"""sbatch flags this module sets itself; an extra ``sbatch`` flag may not override them."""
OWN_KEYS = {
    "partition": "partition",
    "account": "account",
    "qos": "qos",
    "time": "time_min",
    "mem": "mem_gb",
    "cpus-per-task": "cpus_per_task",
    "gpus-per-node": "gpus_per_node",
    "gpus-per-task": "gpus_per_task",
    "gres": "gres",
    "nodes": "nodes",
    "ntasks-per-node": "tasks_per_node",
}
"""sbatch flags that have their own cluster key (one way to say each thing)."""


@dataclass(frozen=True)
class StageResources:
    """What every job of one stage asks SLURM for (``None`` / 0: the site's default)."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_min: int = 60  # wall-clock limit per array task
    mem_gb: float = 0  # memory per node
    cpus_per_task: int = 1
    gpus_per_node: int = 0
    gpus_per_task: int = 0
    gres: str | None = None  # e.g. "gpu:a100:1" where a site wants typed gres
    nodes: int = 1  # >1 for multi-node training
    tasks_per_node: int = 1  # one process per GPU for torch.distributed
    array_parallelism: int = 64  # array tasks running at once (per array)
    signal_delay_s: int = 120  # USR2 this long before the limit: checkpoint, then requeue
    max_requeues: int = 3  # time-limit requeues before a task counts as failed
    setup: tuple[str, ...] = ()  # shell lines before the task: module load, venv activate
    sbatch: tuple[str, ...] = ()  # any other sbatch flag, e.g. "--constraint=a100"

    def __post_init__(self) -> None:
        for name in ("time_min", "cpus_per_task", "nodes", "tasks_per_node", "array_parallelism"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)} must be > 0")
        for name in ("mem_gb", "gpus_per_node", "gpus_per_task", "max_requeues", "signal_delay_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 0")
        if self.signal_delay_s >= self.time_min * 60:
            raise ValueError(
                f"signal_delay_s={self.signal_delay_s} must be well under time_min*60="
                f"{self.time_min * 60} s, or the stop signal arrives as the job starts: "
                "lower signal_delay_s or raise time_min"
            )
        if self.gpus_per_node and self.gpus_per_task:
            raise ValueError("set gpus_per_node or gpus_per_task, not both")
        self.extra_flags()  # validates the sbatch flags

    def extra_flags(self) -> dict[str, Any]:
        """``sbatch`` as submitit's ``additional_parameters`` ("--exclusive" -> True)."""
        flags: dict[str, Any] = {}
        for flag in self.sbatch:
            match = re.fullmatch(r"--([a-z][a-z0-9-]*)(?:=(.+))?", flag)
            if not match:
                raise ValueError(f"sbatch flag {flag!r}: write it as --name=value or --name")
            name, value = match.group(1), match.group(2)
            if name in MANAGED_FLAGS:
                raise ValueError(f"sbatch flag --{name} is set by interp itself; remove it")
            if name in OWN_KEYS:
                raise ValueError(f"sbatch flag --{name}: use the key {OWN_KEYS[name]} instead")
            flags[name] = True if value is None else value
        return flags

    def executor_params(self, job_name: str) -> dict[str, Any]:
        """Parameters of ``submitit.SlurmExecutor.update_parameters`` (SLURM's own names)."""
        params: dict[str, Any] = {
            "job_name": job_name,
            "time": self.time_min,
            "nodes": self.nodes,
            "ntasks_per_node": self.tasks_per_node,
            "cpus_per_task": self.cpus_per_task,
            "signal_delay_s": self.signal_delay_s,
            "array_parallelism": self.array_parallelism,
        }
        optional = {
            "partition": self.partition,
            "account": self.account,
            "qos": self.qos,
            "gres": self.gres,
            "mem": f"{math.ceil(self.mem_gb * 1024)}M" if self.mem_gb else None,
            "gpus_per_node": self.gpus_per_node or None,
            "gpus_per_task": self.gpus_per_task or None,
            "setup": list(self.setup) or None,
            "additional_parameters": self.extra_flags() or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return params


def stage_gpus(res: StageResources) -> int | None:
    """GPUs one task of a stage sees (None: a gres this does not read)."""
    if res.gpus_per_node or res.gpus_per_task:
        return res.gpus_per_node or res.gpus_per_task
    if not res.gres:
        return 0
    match = re.fullmatch(r"gpu(?::[\w.-]+)?:(\d+)", res.gres)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class SlurmCluster:
    """A validated ``executor: slurm`` cluster profile (``conf/cluster/*.yaml``)."""

    stages: Mapping[str, StageResources]
    max_array_size: int = 0  # 0: the site's MaxArraySize
    python: str = ""  # how nodes start python; "" = this interpreter (same venv path)
    job_prefix: str = "interp"  # job names: <prefix>-<stage>-<run id>
    worker: str = ""  # "module:function" every job runs; "" = slurm.worker.execute (tests swap it)

    def job_name(self, job: StageJob) -> str:
        return f"{self.job_prefix}-{job.key}"


def load_cluster(raw: Mapping[str, Any]) -> SlurmCluster:
    """Validate a cluster profile before anything is submitted (``ValueError`` names the fix)."""
    unknown = sorted(set(raw) - set(CLUSTER_KEYS))
    if unknown:
        raise ValueError(f"unknown key(s) {unknown} in cluster; valid keys: {list(CLUSTER_KEYS)}")
    if raw.get("executor") != "slurm":
        raise ValueError(f"cluster.executor={raw.get('executor')!r}: this profile needs 'slurm'")
    defaults = dict(raw.get("resources") or {})
    per_stage = dict(raw.get("stages") or {})
    stages_known = stage_names()
    bad = sorted(set(per_stage) - set(stages_known))
    if bad:
        raise ValueError(f"cluster.stages has {bad}; stages are {list(stages_known)}")
    _resources(defaults, "cluster.resources")  # so an error names the key the user wrote
    stages = {
        s: _resources(_merge(defaults, per_stage.get(s) or {}), f"cluster.stages.{s}")
        for s in stages_known
    }
    max_array = raw.get("max_array_size") or 0
    if not isinstance(max_array, int) or max_array < 0:
        raise ValueError(f"cluster.max_array_size={max_array!r} must be an integer >= 0")
    worker = str(raw.get("worker") or "")
    if worker and not re.fullmatch(r"[\w.]+:\w+", worker):
        raise ValueError(
            f"cluster.worker={worker!r}: write it as module:function, or leave it empty"
        )
    python, prefix = str(raw.get("python") or ""), str(raw.get("job_prefix") or "interp")
    return SlurmCluster(stages, max_array, python, prefix, worker)


def _merge(defaults: dict[str, Any], stage: Mapping[str, Any]) -> dict[str, Any]:
    """A stage's keys win; ``setup`` lines and ``sbatch`` flags add to the defaults'."""
    merged = {**defaults, **stage}
    for key in ("setup", "sbatch"):
        if key in defaults and key in stage:
            merged[key] = [*(defaults[key] or []), *(stage[key] or [])]
    return merged


def with_hint(res: StageResources, hint: Mapping[str, Any]) -> StageResources:
    """``res`` with a stage's resources hint (:attr:`StageSpec.resources`) applied."""
    return dataclasses.replace(res, **hint) if hint else res


def _resources(raw: dict[str, Any], where: str) -> StageResources:
    try:
        return build(StageResources, raw, where)
    except ValueError as err:
        msg = str(err)
        raise ValueError(msg if where in msg else f"{where}: {msg}") from None
