"""What SLURM itself allows and does: array sizes, a dry run of each stage's resources,
submitit executors, cancellation. Knows no stage by name.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import submitit

from interp.plan import Task
from interp.stages.registry import names as stage_names
from slurm.resources import SlurmCluster, StageResources
from slurm.status import SlurmError, SlurmUnavailable

log = logging.getLogger("interp.slurm")


def site_max_array_size() -> int:
    out = run_slurm(["scontrol", "show", "config"])
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", out, re.MULTILINE)
    return int(match.group(1)) if match else 1001  # SLURM's default


def max_array_size(cluster: SlurmCluster) -> int:
    """Tasks per array: the site's MaxArraySize, or less if the profile asks for less."""
    site = site_max_array_size()
    return min(site, cluster.max_array_size) if cluster.max_array_size else site


def split_tasks(tasks: Sequence[Task], max_size: int) -> list[list[Task]]:
    """Balanced chunks of at most ``max_size`` tasks (1024 -> 512 + 512, not 1001 + 23)."""
    if not tasks:
        return []
    n_chunks = math.ceil(len(tasks) / max_size)
    size, extra = divmod(len(tasks), n_chunks)
    chunks, start = [], 0
    for i in range(n_chunks):
        stop = start + size + (i < extra)
        chunks.append(list(tasks[start:stop]))
        start = stop
    return chunks


def chunk_parallelism(parallelism: int, n_chunks: int) -> int:
    """SLURM throttles each array on its own: share ``parallelism`` among the chunks."""
    return max(1, math.ceil(parallelism / n_chunks))


class ResourcesRejected(SlurmError, ValueError):
    """sbatch would refuse a stage's jobs (partition, gres, qos, time limit...)."""


def check_resources(cluster: SlurmCluster, stages: set[str]) -> None:
    """Ask sbatch (``--test-only``) whether it would take each stage's jobs; submits nothing.

    A partition, gres, qos or time limit the site rejects becomes an error before any job
    of the sweep is submitted, instead of half a DAG in the queue.
    """
    if shutil.which("sbatch") is None:
        raise SlurmUnavailable(
            "sbatch is not on PATH: a SLURM profile submits from a login node; "
            "on this machine start the test cluster with bash slurm/local_cluster/up.sh"
        )
    seen: set[StageResources] = set()
    for stage in stage_names():
        res = cluster.stages[stage]
        if stage not in stages or res in seen:
            continue
        seen.add(res)
        with tempfile.TemporaryDirectory() as tmp:
            executor = build_executor(Path(tmp), res, cluster, f"{cluster.job_prefix}-check")
            script = executor._make_submission_file_text("true", "check")  # the real script
        proc = subprocess.run(
            ["sbatch", "--test-only"], input=script, capture_output=True, text=True, timeout=60
        )
        if proc.returncode != 0:
            raise ResourcesRejected(
                f"SLURM rejects the {stage} jobs' resources: {proc.stderr.strip()}\n"
                f"fix cluster.stages.{stage} or cluster.resources in the cluster profile "
                "(conf/cluster/<profile>.yaml or cluster.<key>=... on the command line)"
            )


def run_slurm(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise SlurmUnavailable(f"{cmd[0]} could not run ({err}): is this a SLURM host?") from err
    if proc.returncode != 0:
        raise SlurmUnavailable(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    return proc.stdout


def cancel(ids: Sequence[str]) -> None:
    if ids:
        run_slurm(["scancel", *ids])
        log.info("cancelled %d stale task(s): %s", len(ids), abbrev(ids))


def build_executor(
    folder: Path, res: StageResources, cluster: SlurmCluster, name: str
) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(
        folder=folder, max_num_timeout=res.max_requeues, python=cluster.python or None
    )
    executor.update_parameters(**res.executor_params(name))
    return executor


def abbrev(items: Sequence[str], n: int = 8) -> str:
    shown = ",".join(items[:n])
    return shown + (f",... ({len(items)} in all)" if len(items) > n else "")
