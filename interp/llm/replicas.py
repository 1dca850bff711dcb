"""Replicas of a served LLM, published in the sweep folder while they live.

A serve job writes one small JSON file per replica once its server answers::

    <sweep>/serve/<serve id>/replicas/<slurm job id>.json
        {"job", "host", "port", "model", "engine", "pid", "started"}

atomically (temporary name, then rename), and removes it when it stops. Readers trust
only what the system itself could have published: a file whose job id is not a SLURM id
(digits, ``_<index>`` for an array task) or is not its file name, whose host is not a
plain host name or IP literal, or whose port is not a port is skipped with a warning; a
replica whose job is not running as this user (when the scheduler can be asked: the
cluster edge passes a :data:`JobsAlive` check, or installs one with :func:`scheduler`
for the stage it runs) or whose server does not answer a health check is ignored. So a
SIGKILLed job's leftover file costs one refused connection, and a planted file gets no
request. Replicas never get the API key (``llm.api_key_env`` goes only to
``llm.base_urls``; see :mod:`interp.llm.http`).

The serve id names what is served (engine, weights, served name, context, arguments):
sweep points that talk to the same model share one set of replicas.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from interp.llm.config import LLMConfig, ServeConfig
from interp.runs import atomic_write_json, is_tmp, short_hash

log = logging.getLogger(__name__)

JobsAlive = Callable[[Iterable[str]], set[str]]
"""Given job ids, the subset the scheduler runs as this user (``None`` = do not ask)."""

JOB_ID = re.compile(r"\d{1,20}(_\d{1,10})?")  # what this_job() gives inside SLURM
HOST_LABEL = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})?")  # no '/', '@', ':', '?', '#'
_SCHEDULER: contextvars.ContextVar[JobsAlive | None] = contextvars.ContextVar(
    "interp_replica_scheduler", default=None
)


@contextlib.contextmanager
def scheduler(jobs_alive: JobsAlive | None) -> Iterator[None]:
    """Within the block, discovery asks ``jobs_alive`` which replica jobs run (the cluster
    edge wraps the stage it runs in this; the library never asks a scheduler itself)."""
    token = _SCHEDULER.set(jobs_alive)
    try:
        yield
    finally:
        _SCHEDULER.reset(token)


def served_name(llm: LLMConfig) -> str:
    """The model name clients send and the server answers to."""
    return llm.served_model or llm.model


def served_weights(llm: LLMConfig, s: ServeConfig) -> str:
    """What the server loads: ``serve.model``, by default ``llm.model``."""
    return s.model or llm.model


def serve_id(llm: LLMConfig, s: ServeConfig) -> str:
    """Points with equal ids are served by the same replicas."""
    return short_hash(
        {
            "engine": s.engine,
            "weights": served_weights(llm, s),
            "name": served_name(llm),
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
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return f"http://{host}:{self.port}/v1"


def valid_host(host: object) -> bool:
    """A host name (dot-separated labels of letters, digits, '-' and '_') or an IP
    literal: nothing that could change the URL it is put in."""
    if not isinstance(host, str) or not host or len(host) > 253:
        return False
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    return all(HOST_LABEL.fullmatch(label) for label in host.removesuffix(".").split("."))


def check_replica(data: object, stem: str) -> Replica:
    """The replica a file named ``<stem>.json`` announces; ValueError naming what is wrong."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    r = Replica(**data)
    if not isinstance(r.job, str) or not JOB_ID.fullmatch(r.job) or r.job != stem:
        raise ValueError(f"job {r.job!r} is not a SLURM job id matching the file name")
    if not valid_host(r.host):
        raise ValueError(f"host {r.host!r} is not a host name or IP address")
    if isinstance(r.port, bool) or not isinstance(r.port, int) or not 0 < r.port < 65536:
        raise ValueError(f"port {r.port!r} is not a TCP port")
    if not isinstance(r.started, int | float) or isinstance(r.started, bool):
        raise ValueError(f"started {r.started!r} is not a time")
    return r


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
    """Every well-formed published replica, oldest first (see :func:`check_replica`);
    unreadable, half-written or malformed files are skipped with a warning."""
    folder = replicas_dir(root, sid)
    out = []
    for f in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if is_tmp(f):
            continue
        try:
            out.append(check_replica(json.loads(f.read_text()), f.stem))
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

    if not valid_host(host):
        return False
    netloc = f"[{host}]" if ":" in host else host
    try:
        resp = httpx.get(f"http://{netloc}:{port}/health", timeout=timeout_s)
    except httpx.HTTPError:
        return False
    return resp.status_code < 500


def live_replicas(
    root: Path, sid: str, jobs_alive: JobsAlive | None = None, timeout_s: float = 3.0
) -> list[Replica]:
    """Published replicas whose job runs as this user and that answer. ``jobs_alive``
    defaults to the check installed by :func:`scheduler` (none: the health check alone)."""
    published = read_replicas(root, sid)
    jobs_alive = jobs_alive or _SCHEDULER.get()
    if jobs_alive is not None and published:
        alive = jobs_alive([r.job for r in published])
        gone = [r.job for r in published if r.job not in alive]
        if gone:
            log.info("ignoring replica files of jobs not running as this user: %s", gone)
        published = [r for r in published if r.job in alive]
    return [r for r in published if healthy(r.host, r.port, timeout_s)]


def discoverer(
    root: Path, sid: str, jobs_alive: JobsAlive | None = None
) -> Callable[[], list[str]]:
    """``discover`` for the HTTP client: the base URLs of the live replicas (the liveness
    check is :func:`live_replicas`'s, the same at the edge and in the stage)."""
    jobs_alive = jobs_alive or _SCHEDULER.get()

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
