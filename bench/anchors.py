"""Anchor tools (eai-sparsify, eai-delphi, ...) in their own venvs, for side-by-side benches.

An :class:`Anchor` names a venv under ``~/.cache/interp/venvs/<name>`` (or
``$INTERP_CACHE/venvs/<name>``) and the exact packages that go in it. :func:`ensure_venv`
creates it once and stamps it (``anchor.json``: the spec, and the resolved versions);
a venv whose stamp does not match the spec is rebuilt, so a changed pin never runs
against stale packages. torch is always ``torch==2.13.0`` installed first, alone: the
CPU wheel from local disk (a bare ``torch`` would pull a CUDA build of several GB).

Two ways to run code in an anchor's venv:

- :func:`run_snippet`: one process, one JSON result. The snippet gets ``ARGS`` (the
  JSON-decoded ``args``) and calls ``emit(obj)`` once.
- :class:`AnchorWorker`: a long-lived process that answers JSON requests one at a time,
  so a bench can interleave the anchor's work with ours while both stay warm. The
  snippet defines ``handle(request: dict) -> dict``; ``ARGS`` is set as above.

The child's stderr goes to ours (its logs and progress stay visible); results travel on
a private channel (a file, or the worker's stdout with the snippet's own prints moved
to stderr), so a library that prints cannot corrupt them.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TORCH_PIN = "torch==2.13.0"
STAMP = "anchor.json"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_MODE": "disabled",
}


@dataclass(frozen=True)
class Anchor:
    """One anchor venv: what goes in it. Changing any field rebuilds the venv."""

    name: str
    """Folder name under the venvs cache."""

    packages: tuple[str, ...]
    """Pinned requirements installed with their dependencies (after torch)."""

    no_deps: tuple[str, ...] = ()
    """Pinned requirements installed with ``--no-deps`` (packages whose declared
    dependencies pull CUDA stacks or do not exist); list what their imports need in
    ``packages``."""

    torch: str = TORCH_PIN
    """The torch requirement, installed first and alone."""

    env: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    """Extra environment variables for every process run in the venv."""


SPARSIFY = Anchor(name="sparsify", packages=("eai-sparsify==1.3.3",))
"""eai-sparsify 1.3.3 with its own dependencies (accelerate, datasets, schedulefree, ...):
none of them is a CUDA stack once torch is installed."""


DELPHI = Anchor(
    name="delphi",
    packages=(
        "eai-sparsify==1.3.3",
        "faiss-cpu==1.15.1",
        "sentence-transformers==6.2.0",
        "orjson",
        "jaxtyping==0.3.11",
        "blobfile",
        "aiofiles",
        "anyio>=4.8.0",
        "asyncer>=0.0.8",
        "beartype",
        "tiktoken==0.14.0",
        "httpx",
        "fire",
        "plotly==7.1.0",
    ),
    no_deps=("eai-delphi==0.1.3",),
)
"""eai-delphi 0.1.3 without its declared dependencies (vllm pins a CUDA torch of several
GB; bitsandbytes and flask are never imported by caching or scoring), plus what its
imports need: sparsify (its SAE loader), faiss and sentence-transformers
(``delphi.latents.constructors`` imports them at module level), the client stack, and
plotly (``delphi.__main__`` imports ``delphi.log.result_analysis``). ``vllm`` itself
must be stubbed in ``sys.modules`` before importing ``delphi.clients``."""


def cache_root() -> Path:
    """``$INTERP_CACHE`` or ``~/.cache/interp`` (the project's cache folder)."""
    return Path(os.environ.get("INTERP_CACHE", Path.home() / ".cache" / "interp"))


def venv_dir(anchor: Anchor) -> Path:
    return cache_root() / "venvs" / anchor.name


def venv_python(anchor: Anchor) -> Path:
    return venv_dir(anchor) / "bin" / "python"


def _spec(anchor: Anchor) -> dict[str, Any]:
    spec = asdict(anchor)
    spec["python"] = f"{sys.version_info.major}.{sys.version_info.minor}"
    return json.loads(json.dumps(spec))  # tuples -> lists, as read back from the stamp


def read_stamp(anchor: Anchor) -> dict[str, Any] | None:
    """The venv's stamp, or None when it is missing or unreadable."""
    try:
        return json.loads((venv_dir(anchor) / STAMP).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def is_ready(anchor: Anchor) -> bool:
    stamp = read_stamp(anchor)
    return stamp is not None and stamp.get("spec") == _spec(anchor)


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def ensure_venv(anchor: Anchor) -> Path:
    """Create (or reuse) the anchor's venv; return its python. Safe to call concurrently.

    A venv is not relocatable, so it is built in place and the stamp is written last:
    a half-built venv has no stamp and is wiped and rebuilt by the next call.
    """
    directory = venv_dir(anchor)
    with _lock(directory.with_name(directory.name + ".lock")):
        if is_ready(anchor):
            return venv_python(anchor)
        if directory.exists():
            log.info("anchor venv %s is stale or half-built: rebuilding", directory)
            shutil.rmtree(directory)
        t0 = time.perf_counter()
        _build(anchor, directory)
        stamp = {
            "spec": _spec(anchor),
            "versions": installed_versions(anchor),
            "built_s": round(time.perf_counter() - t0, 1),
        }
        (directory / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
        log.info("anchor venv %s ready in %.0f s", directory, stamp["built_s"])
    return venv_python(anchor)


def _build(anchor: Anchor, directory: Path) -> None:
    base_python = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}"
    log.info("creating anchor venv %s (%s)", directory, ", ".join(anchor.packages))
    _check_call([str(base_python), "-m", "venv", str(directory)])
    pip = [str(directory / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    pip += ["--disable-pip-version-check"]
    # torch alone first: every later resolution sees it satisfied and keeps it.
    _check_call([*pip, anchor.torch])
    if anchor.packages:
        _check_call([*pip, anchor.torch, *anchor.packages])
    if anchor.no_deps:
        _check_call([*pip, "--no-deps", *anchor.no_deps])


def _check_call(cmd: list[str]) -> None:
    result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"anchor venv build failed ({result.returncode}): {' '.join(cmd)}\n"
            f"{result.stdout[-4000:]}\nFix the pins in bench/anchors.py, or delete the venv "
            "folder and retry."
        )


def installed_versions(anchor: Anchor) -> dict[str, str]:
    """{distribution name: version} of everything in the anchor's venv."""
    code = (
        "import json, importlib.metadata as m\n"
        "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    )
    out = subprocess.run(
        [str(venv_python(anchor)), "-c", code], capture_output=True, text=True, check=True
    )
    return dict(sorted(json.loads(out.stdout).items(), key=lambda kv: kv[0].lower()))


def _child_env(anchor: Anchor, env: dict[str, str] | None) -> dict[str, str]:
    child = dict(os.environ)
    child.pop("PYTHONPATH", None)  # never leak our packages into the anchor's venv
    child.update(OFFLINE_ENV)
    child.update(dict(anchor.env))
    child.update(env or {})
    return child


_SNIPPET_PRELUDE = """\
import json as _json, sys as _sys
ARGS = _json.loads(_sys.stdin.read())
_emitted = []
def emit(obj):
    if _emitted:
        raise RuntimeError("emit() called twice")
    _emitted.append(1)
    with open(_sys.argv[1], "w") as _f:
        _json.dump(obj, _f)
"""


def run_snippet(
    anchor: Anchor,
    code: str,
    args: dict[str, Any] | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> Any:
    """Run ``code`` in the anchor's venv and return what it passed to ``emit``.

    ``code`` sees ``ARGS`` (``args``, JSON round-tripped) and ``emit(obj)``. Raises
    RuntimeError with the exit status when the snippet fails or emits nothing.
    """
    python = ensure_venv(anchor)
    with tempfile.TemporaryDirectory(prefix=f"anchor-{anchor.name}-") as tmp:
        script, result = Path(tmp) / "snippet.py", Path(tmp) / "result.json"
        script.write_text(_SNIPPET_PRELUDE + code)
        proc = subprocess.run(
            [str(python), str(script), str(result)],
            input=json.dumps(args or {}),
            text=True,
            stdout=sys.stderr,
            env=_child_env(anchor, env),
            timeout=timeout,
            cwd=tmp,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"snippet in anchor venv {anchor.name!r} exited {proc.returncode} "
                "(its traceback is above)"
            )
        if not result.exists():
            raise RuntimeError(f"snippet in anchor venv {anchor.name!r} never called emit()")
        return json.loads(result.read_text())


_WORKER_PRELUDE = """\
import json as _json, os as _os, sys as _sys
_channel = _os.fdopen(_os.dup(1), "w")
_os.dup2(2, 1)  # the snippet's and its libraries' prints go to stderr
_sys.stdout = _sys.stderr
ARGS = _json.loads(_sys.argv[1])
"""

_WORKER_LOOP = """
_channel.write(_json.dumps({"ready": True}) + "\\n")
_channel.flush()
for _line in _sys.stdin:
    _request = _json.loads(_line)
    if _request.get("op") == "exit":
        break
    try:
        _reply = {"ok": handle(_request)}
    except Exception as _e:
        import traceback
        traceback.print_exc()
        _reply = {"error": f"{type(_e).__name__}: {_e}"}
    _channel.write(_json.dumps(_reply) + "\\n")
    _channel.flush()
"""


class AnchorWorker:
    """A long-lived process in the anchor's venv answering one JSON request at a time.

    ``code`` must define ``handle(request: dict) -> dict``; it sees ``ARGS``. Use as a
    context manager; the process exits when the block ends. ``python`` overrides the
    interpreter (no venv is built then).
    """

    def __init__(
        self,
        anchor: Anchor,
        code: str,
        args: dict[str, Any] | None = None,
        *,
        env: dict[str, str] | None = None,
        python: str | Path | None = None,
    ) -> None:
        self.anchor = anchor
        # ``python`` runs the worker in another interpreter (e.g. ``sys.executable`` for our
        # own side of a bench, so both sides are separate processes measured alike).
        python = Path(python) if python is not None else ensure_venv(anchor)
        self._tmp = tempfile.TemporaryDirectory(prefix=f"anchor-{anchor.name}-")
        script = Path(self._tmp.name) / "worker.py"
        script.write_text(_WORKER_PRELUDE + code + _WORKER_LOOP)
        self.proc = subprocess.Popen(
            [str(python), str(script), json.dumps(args or {})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=_child_env(anchor, env),
            cwd=self._tmp.name,
        )
        self._read()  # {"ready": true} once the snippet's top level has run

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            raise RuntimeError(
                f"anchor worker {self.anchor.name!r} exited {code} (its traceback is above)"
            )
        return json.loads(line)

    def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request; return ``handle``'s reply (RuntimeError if it raised)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = self._read()
        if "error" in reply:
            raise RuntimeError(f"anchor worker {self.anchor.name!r}: {reply['error']}")
        return reply["ok"]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._tmp.cleanup()

    def __enter__(self) -> AnchorWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main() -> None:
    """``python bench/anchors.py [name ...]``: build (or check) anchor venvs, print stamps."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    known = {a.name: a for a in (SPARSIFY, DELPHI)}
    names = sys.argv[1:] or list(known)
    for name in names:
        if name not in known:
            raise SystemExit(f"unknown anchor {name!r}: choose from {sorted(known)}")
        ensure_venv(known[name])
        stamp = read_stamp(known[name]) or {}
        print(json.dumps({"venv": str(venv_dir(known[name])), **stamp}, indent=1))


if __name__ == "__main__":
    main()
