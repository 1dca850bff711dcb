"""Replicas of a served LLM, published in the sweep folder while they live.

A serve job writes one small JSON file per replica once its server answers::

    <sweep>/serve/<serve id>/replicas/<slurm job id>.json
        {"job", "host", "port", "model", "engine", "pid", "started"}

atomically (temporary name, then rename), and removes it when it stops. Readers never
trust a file alone: a replica whose job is gone (when the caller can ask the scheduler)
or whose server does not answer a health check is ignored, so a SIGKILLed job's
leftover file costs one refused connection, nothing more.

The serve id names what is served (engine, weights, served name, context, arguments):
sweep points that talk to the same model share one set of replicas.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.config import RunConfig
from interp.runs import atomic_write_json, is_tmp, short_hash

log = logging.getLogger(__name__)

JobsAlive = Callable[[Iterable[str]], set[str]]
"""Given job ids, the subset the scheduler still runs (``None`` = do not ask)."""


def served_name(cfg: RunConfig) -> str:
    """The model name clients send and the server answers to."""
    return cfg.llm.served_model or cfg.llm.model


def served_weights(cfg: RunConfig) -> str:
    """What the server loads: ``serve.model``, by default ``llm.model``."""
    return cfg.serve.model or cfg.llm.model


def serve_id(cfg: RunConfig) -> str:
    """Points with equal ids are served by the same replicas."""
    s = cfg.serve
    return short_hash(
        {
            "engine": s.engine,
            "weights": served_weights(cfg),
            "name": served_name(cfg),
            "n_ctx": s.n_ctx,
            "tp": s.tensor_parallel,
            "args": list(s.extra_args),
        }
    )


def serve_dir(root: Path, sid: str) -> Path:
    """Everything of one set of replicas: ``replicas/`` (live addresses), ``logs/``."""
    return root / "serve" / sid


def replicas_dir(root: Path, sid: str) -> Path:
    return serve_dir(root, sid) / "replicas"


@dataclass(frozen=True)
class Replica:
    """One running server, as published."""

    job: str  # SLURM job id of the serve job ("12_0" for an array task), or a local label
    host: str
    port: int
    model: str  # the served name
    engine: str
    pid: int
    started: float  # time.time() when it answered its first health check

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"


def publish(root: Path, sid: str, replica: Replica) -> Path:
    """Announce ``replica`` (atomic: a reader sees the whole file or none)."""
    path = replicas_dir(root, sid) / f"{replica.job}.json"
    atomic_write_json(path, asdict(replica))
    log.info("published replica %s at %s (%s)", replica.job, replica.base_url, path)
    return path


def withdraw(root: Path, sid: str, job: str) -> None:
    """Remove a replica's announcement (idempotent)."""
    with contextlib.suppress(FileNotFoundError):
        (replicas_dir(root, sid) / f"{job}.json").unlink()
        log.info("withdrew replica %s", job)


def read_replicas(root: Path, sid: str) -> list[Replica]:
    """Every published replica, oldest first; unreadable or half-written files skipped."""
    folder = replicas_dir(root, sid)
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if is_tmp(f):
            continue
        try:
            out.append(Replica(**json.loads(f.read_text())))
        except (OSError, ValueError, TypeError) as err:
            log.warning("ignoring replica file %s: %s", f, err)
    return sorted(out, key=lambda r: (r.started, r.job))


def healthy(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Whether an HTTP server answers on ``host:port`` (any status below 500 on /health).

    vLLM answers 200 on /health (500 once its engine died); llama-cpp-python has no such
    route and answers 404 at once, without waiting for the model lock that /v1/models
    takes while a request computes.
    """
    import httpx

    try:
        resp = httpx.get(f"http://{host}:{port}/health", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return resp.status_code < 500


def live_replicas(
    root: Path, sid: str, jobs_alive: JobsAlive | None = None, timeout_s: float = 3.0
) -> list[Replica]:
    """Published replicas whose job still runs (if ``jobs_alive``) and that answer."""
    published = read_replicas(root, sid)
    if jobs_alive is not None and published:
        alive = jobs_alive([r.job for r in published])
        published = [r for r in published if r.job in alive]
    return [r for r in published if healthy(r.host, r.port, timeout_s)]


def discoverer(
    root: Path, sid: str, jobs_alive: JobsAlive | None = None
) -> Callable[[], list[str]]:
    """``discover`` for the HTTP client: the base URLs of the live replicas."""

    def discover() -> list[str]:
        return [r.base_url for r in live_replicas(root, sid, jobs_alive)]

    return discover


class NoReplicaError(RuntimeError):
    """No replica of a served LLM came up in time (or all of them are gone)."""


def wait_for_replicas(
    root: Path,
    sid: str,
    timeout_s: float,
    poll_s: float = 2.0,
    jobs_alive: JobsAlive | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> list[Replica]:
    """Block until at least one replica is live; :class:`NoReplicaError` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        live = live_replicas(root, sid, jobs_alive)
        if live:
            return live
        if should_stop() or time.monotonic() > deadline:
            raise NoReplicaError(
                f"no live replica of served LLM {sid} under {replicas_dir(root, sid)} after "
                f"{timeout_s:.0f} s: are its serve jobs running (python launch/status.py "
                f"<sweep dir>)? Their logs are under {root / 'slurm' / 'logs'}; "
                "python launch/rerun.py <sweep dir> starts a fresh server with the range"
            )
        time.sleep(poll_s)


def free_port(host: str, first: int, last: int, skip: Iterable[int] = ()) -> int:
    """The first port in ``[first, last]`` nothing listens on (the server may still lose a
    race for it: the caller retries with ``skip``)."""
    skipped = set(skip)
    for port in range(first, last + 1):
        if port in skipped:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise NoReplicaError(
        f"no free port in serve.port_range [{first}, {last}] on {socket.gethostname()}: "
        "widen serve.port_range or stop what listens there"
    )


def this_job() -> str:
    """The SLURM id of the running job (``123_4`` for an array task), else ``local-<pid>``."""
    env = os.environ
    if env.get("SLURM_ARRAY_JOB_ID") and env.get("SLURM_ARRAY_TASK_ID"):
        return f"{env['SLURM_ARRAY_JOB_ID']}_{env['SLURM_ARRAY_TASK_ID']}"
    return env.get("SLURM_JOB_ID") or f"local-{os.getpid()}"
