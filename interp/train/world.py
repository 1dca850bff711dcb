"""Who is in the process group: ranks, world size and rendezvous address from torchrun's
or SLURM's variables (:func:`world_from_env`), SLURM node lists, and which rank owns
which member or windows. No torch: plain values only.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from interp.train.config import DistConfig

log = logging.getLogger(__name__)

DEFAULT_PORT = 29500
SLURM_PORT_BASE = 20000  # ports 20000..39999, one per job id, below Linux's ephemeral range
SLURM_PORT_SPAN = 20000


# --------------------------------------------------------------------------------------
# The world, from the environment (pure)


@dataclass(frozen=True)
class WorldInfo:
    """Where this process sits in the job, as read from the environment."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    source: Literal["torchrun", "slurm", "single"]


def world_from_env(
    env: Mapping[str, str],
    cfg: DistConfig | None = None,
    hostnames: Callable[[str], list[str]] | None = None,
) -> WorldInfo:
    """Read rank, world size, local rank and the rendezvous address from ``env``.

    torchrun's variables win (a torchrun started by srun sets both). Under SLURM the
    step's task count and node list are preferred to the job's (an ``srun`` inside a
    bigger allocation), the master is the first host of that list (``hostnames``
    expands it; default ``scontrol show hostnames``, else :func:`expand_nodelist`),
    and the port is derived from the job id so every task of the job agrees on it and
    two jobs on one node do not collide. ``MASTER_ADDR``/``MASTER_PORT`` override both.
    """
    cfg = cfg or DistConfig()
    if "RANK" in env and "WORLD_SIZE" in env:
        return _torchrun_world(env, cfg)
    ntasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" in env and ntasks and int(ntasks) > 1:
        return _slurm_world(env, cfg, int(ntasks), hostnames or slurm_hostnames)
    return WorldInfo(0, 1, 0, "127.0.0.1", _port(env, cfg, None), "single")


def _torchrun_world(env: Mapping[str, str], cfg: DistConfig) -> WorldInfo:
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    local = _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    addr = env.get("MASTER_ADDR", "127.0.0.1")
    return _checked(WorldInfo(rank, world, local, addr, _port(env, cfg, None), "torchrun"))


def _slurm_world(
    env: Mapping[str, str], cfg: DistConfig, world: int, hostnames: Callable[[str], list[str]]
) -> WorldInfo:
    rank = _int(env, "SLURM_PROCID")
    local = _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0
    addr = env.get("MASTER_ADDR")
    if not addr:
        nodelist = (
            env.get("SLURM_STEP_NODELIST")
            or env.get("SLURM_JOB_NODELIST")
            or env.get("SLURM_NODELIST")
        )
        if not nodelist:
            raise ValueError(
                "SLURM_PROCID and SLURM_NTASKS are set but no SLURM_*NODELIST: launch the "
                "tasks with srun, or set MASTER_ADDR to the first task's host"
            )
        addr = hostnames(nodelist)[0]
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    return _checked(WorldInfo(rank, world, local, addr, _port(env, cfg, job_id), "slurm"))


def _port(env: Mapping[str, str], cfg: DistConfig, slurm_job_id: str | None) -> int:
    if env.get("MASTER_PORT"):
        return _int(env, "MASTER_PORT")
    if cfg.master_port:
        return cfg.master_port
    if slurm_job_id and slurm_job_id.isdigit():
        return SLURM_PORT_BASE + int(slurm_job_id) % SLURM_PORT_SPAN
    return DEFAULT_PORT


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise ValueError(f"environment variable {key}={env[key]!r} is not an integer") from None


def _checked(world: WorldInfo) -> WorldInfo:
    if world.world_size < 1 or not 0 <= world.rank < world.world_size:
        raise ValueError(
            f"rank {world.rank} is outside world size {world.world_size} (from the "
            f"{world.source} environment): check the launcher's task count"
        )
    if world.local_rank < 0:
        raise ValueError(f"local rank {world.local_rank} must be >= 0")
    return world


def slurm_hostnames(nodelist: str) -> list[str]:
    """Expand a SLURM node list with ``scontrol show hostnames`` when scontrol exists,
    else with :func:`expand_nodelist` (same result for the common syntax)."""
    scontrol = shutil.which("scontrol")
    if scontrol:
        try:
            out = subprocess.run(
                [scontrol, "show", "hostnames", nodelist],
                check=True,
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.split()
            if out:
                return out
        except (subprocess.SubprocessError, OSError) as err:
            log.warning("scontrol show hostnames %s failed (%s); parsing it here", nodelist, err)
    return expand_nodelist(nodelist)


_BRACKET = re.compile(r"\[([^\]]*)\]")


def expand_nodelist(nodelist: str) -> list[str]:
    """``"gpu[01-03,07],cpu5"`` -> ``["gpu01", "gpu02", "gpu03", "gpu07", "cpu5"]``.

    Zero padding follows the range's start, several bracket groups expand as a product.
    """
    hosts: list[str] = []
    for part in _split_top_level(nodelist.strip()):
        hosts.extend(_expand_one(part))
    if not hosts:
        raise ValueError(f"SLURM node list {nodelist!r} names no host")
    return hosts


def _split_top_level(nodelist: str) -> list[str]:
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(nodelist[start:i])
            start = i + 1
    parts.append(nodelist[start:])
    return [p for p in parts if p]


def _expand_one(pattern: str) -> list[str]:
    match = _BRACKET.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out = []
    for item in match.group(1).split(","):
        lo, _, hi = item.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise ValueError(f"cannot parse {item!r} in SLURM node list pattern {pattern!r}")
        for n in range(int(lo), int(hi or lo) + 1):
            out.extend(_expand_one(f"{head}{n:0{len(lo)}d}{tail}"))
    return out


# --------------------------------------------------------------------------------------
# Member assignment for shard_hookpoints (pure)


def assign_members(costs: Sequence[float], world_size: int) -> list[int]:
    """The rank that trains each member: greedy longest-processing-time first, so ranks
    get about equal total cost (e.g. num_latents * d_in). Deterministic: ties go to the
    lower member index and the lower rank, so every rank computes the same assignment."""
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1")
    if len(costs) < world_size:
        raise ValueError(
            f"strategy shard_hookpoints puts each SAE on one rank, but there are "
            f"{len(costs)} SAEs for {world_size} ranks: train at least {world_size} SAEs "
            "(hookpoints x sweep members) or use strategy ddp"
        )
    if any(c <= 0 for c in costs):
        raise ValueError(f"member costs must be > 0, got {list(costs)}")
    load = [0.0] * world_size
    owner = [0] * len(costs)
    for member in sorted(range(len(costs)), key=lambda m: (-costs[m], m)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        owner[member] = rank
        load[rank] += costs[member]
    return owner


def shard_evenly(n: int, rank: int, world_size: int) -> np.ndarray:
    """Indices of ``range(n)`` that ``rank`` takes: every ``world_size``-th one, starting
    at ``rank``, after dropping the last ``n % world_size`` so all ranks take the same
    number (ranks that run out first would leave the others hanging in a collective)."""
    usable = n - n % world_size
    return np.arange(rank, usable, world_size)
