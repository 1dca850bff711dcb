"""One replica of a served LLM: start its server process, publish it, watch it, stop it.

A replica starts its server (llama-cpp-python's on CPU, or ``vllm serve`` on its GPUs) on
the first free port of ``serve.port_range``, waits until it answers, publishes its address
in the sweep folder (:mod:`interp.llm.replicas`), then watches: it stops when
``finished()`` says the work it serves is over, when ``should_stop()`` turns true (time
limit, cancellation), and fails if its server dies. Its address is withdrawn and the
server stopped on every way out. The serve stage (:mod:`interp.stages.serve`) is the
wiring; this module takes the serve settings and plain values, never the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import httpx

from interp.llm.replicas import Replica, free_port, publish, serve_dir, withdraw
from interp.llm.server import log_tail, stop_process

if TYPE_CHECKING:
    from interp.llm.config import ServeConfig

log = logging.getLogger(__name__)


class ServerDied(RuntimeError):
    """The replica's server process exited while it was published."""


@dataclass(frozen=True)
class ServedModel:
    """What a set of replicas serves: the serve settings, the weights the server loads,
    the name it answers to, and the set's id (its folder under ``<sweep>/serve/``)."""

    serve: ServeConfig
    weights: str
    name: str
    sid: str


class Server(Protocol):
    host: str
    port: int | None
    proc: subprocess.Popen | None

    def start(self, timeout_s: float) -> Any: ...
    def stop(self, grace_s: float = 10.0) -> None: ...
    def running(self) -> bool: ...
    def log_tail(self, n_lines: int = 30) -> str: ...


class VLLMServer:
    """``python -m vllm.entrypoints.openai.api_server`` on this node's GPUs."""

    def __init__(
        self, model: str, alias: str, host: str, port: int, tp: int, extra: tuple[str, ...],
        log_path: Path,
    ) -> None:  # fmt: skip
        self.model, self.alias, self.host, self.port = model, alias, host, port
        self.tp, self.extra, self.log_path = tp, extra, log_path
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server",
            "--model", self.model, "--served-model-name", self.alias,
            "--host", self.host, "--port", str(self.port),
            "--tensor-parallel-size", str(self.tp), *self.extra,
        ]  # fmt: skip

    def start(self, timeout_s: float) -> VLLMServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            log.info("starting %s", " ".join(self.command()))
            self.proc = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerDied(f"vllm exited with {self.proc.returncode}:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=2).status_code == 200:
                    return self
            time.sleep(1.0)
        self.stop()
        raise ServerDied(
            f"vllm did not answer /health within {timeout_s:.0f} s:\n{self.log_tail()}"
        )

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, grace_s, "vllm server")

    def log_tail(self, n_lines: int = 30) -> str:
        return log_tail(self.log_path, n_lines)


def bind_host(engine: str) -> tuple[str, str]:
    """(address to bind, host to publish). llama.cpp replicas stay on loopback (tests,
    one-node runs); vLLM replicas listen on every interface and publish the node's name."""
    if engine == "llama_cpp":
        return "127.0.0.1", "127.0.0.1"
    return "0.0.0.0", socket.getfqdn()


def build_server(model: ServedModel, host: str, port: int, log_path: Path) -> Server:
    """The engine's server for ``model`` on ``host:port`` (not started)."""
    s = model.serve
    if s.engine == "vllm":
        return VLLMServer(
            model.weights, model.name, host, port, s.tensor_parallel, s.extra_args, log_path
        )
    from interp.llm.server import LlamaServer

    threads = int(os.environ.get("SLURM_CPUS_PER_TASK") or 0) or None
    return LlamaServer(
        model.weights, alias=model.name, host=host, port=port, n_ctx=s.n_ctx,
        n_threads=threads, extra_args=s.extra_args, log_path=log_path,
    )  # fmt: skip


def start_replica(model: ServedModel, root: Path, job: str, attempts: int = 5) -> Server:
    """Start the server on the first free port of ``serve.port_range`` (another on a lost
    race) and wait until it answers; its log is ``<root>/serve/<sid>/logs/<job>.log``."""
    bind, _ = bind_host(model.serve.engine)
    first, last = model.serve.port_range
    tried: list[int] = []
    log_path = serve_dir(root, model.sid) / "logs" / f"{job}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(attempts):
        port = free_port(bind, first, last, skip=tried)
        server = build_server(model, bind, port, log_path)
        try:
            server.start(timeout_s=model.serve.startup_timeout_s)
            return server
        except Exception as err:
            server.stop()
            if "address already in use" not in str(err).lower():
                raise
            tried.append(port)
            log.warning("port %d was taken meanwhile; trying another", port)
    raise ServerDied(f"no port of serve.port_range could be bound after {attempts} attempts")


def serve(
    model: ServedModel,
    root: Path,
    should_stop: Callable[[], bool],
    finished: Callable[[], bool],
    job: str,
    tick_s: float = 0.2,
) -> dict[str, Any]:
    """Run one replica until the work is finished or it is told to stop; see module doc.

    Returns what happened: ``{"job", "base_url", "reason", "served_s"}``.
    """
    server = start_replica(model, root, job)
    _, public = bind_host(model.serve.engine)
    assert server.port is not None and server.proc is not None
    replica = Replica(
        job, public, server.port, model.name, model.serve.engine, server.proc.pid, time.time()
    )
    t0 = time.monotonic()
    try:
        publish(root, model.sid, replica)
        reason = watch(server, should_stop, finished, model.serve.poll_s, tick_s)
    finally:
        withdraw(root, model.sid, job)
        server.stop(grace_s=5.0)
    served = time.monotonic() - t0
    log.info("replica %s (%s) stopped after %.0f s: %s", job, replica.base_url, served, reason)
    return {"job": job, "base_url": replica.base_url, "reason": reason, "served_s": served}


def watch(
    server: Server,
    should_stop: Callable[[], bool],
    finished: Callable[[], bool],
    poll_s: float,
    tick_s: float = 0.2,
) -> str:
    """Block while the replica is needed; the reason it no longer is."""
    next_poll = time.monotonic() + poll_s
    while True:
        if should_stop():
            return "told to stop (time limit or cancelled)"
        if not server.running():
            raise ServerDied(
                f"the server on port {server.port} exited while serving; its log ends with:\n"
                f"{server.log_tail()}"
            )
        if time.monotonic() >= next_poll:
            if finished():
                return "the interpret work it serves is finished"
            next_poll = time.monotonic() + poll_s
        time.sleep(tick_s)
