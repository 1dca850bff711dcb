"""One writer per sweep folder: an advisory lock on ``<sweep>/.lock``.

Two sweep commands on one folder would both run every pending task (two identical local
runs paid every LLM call twice and appended each response to the cache twice). The
command that submits or runs a sweep (``launch/sweep.py``, ``launch/rerun.py``) holds the
folder with :func:`hold_sweep` while it records points and runs or submits tasks; a second
one is refused naming the holder. The lock is ``flock`` on an open file, so it dies with
its holder: a ``SIGKILL``ed sweep frees the folder, no stale lock file to delete.

The gather task takes it too (waiting), so it never reads a sweep another command is
changing. A task started by the holder (submitit's local executor runs each task as a
child process; ``cluster=inprocess`` runs it in the same process) must not wait for its
own parent: the holder puts a token in its environment (:data:`ENV`), children inherit
it, and a lock held under that token counts as held by the caller.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from interp.runs import sweep_lock_file

log = logging.getLogger(__name__)

ENV = "INTERP_SWEEP_LOCK"
"""Token of the sweep lock this process (or its parent) holds."""


class SweepBusyError(RuntimeError):
    """Another process holds the sweep folder."""


@contextlib.contextmanager
def hold_sweep(root: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold sweep folder ``root`` for the ``with`` block.

    Held by another process: raise :class:`SweepBusyError` naming it, or with ``wait``
    block until it ends. Held under this process's token (a task of the holder): go on.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = sweep_lock_file(root)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec'd children
    try:
        if not _try_lock(fd):
            holder = read_holder(path)
            if holder.get("token") and holder.get("token") == os.environ.get(ENV):
                yield  # our parent sweep holds it: it runs this task
                return
            if not wait:
                raise SweepBusyError(busy_message(root, holder))
            log.info("waiting for the sweep folder: %s", busy_message(root, holder))
            fcntl.flock(fd, fcntl.LOCK_EX)
        with _as_holder(fd):
            yield
    finally:
        os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextlib.contextmanager
def _as_holder(fd: int) -> Iterator[None]:
    """Write who holds the lock into it and publish the token to child processes."""
    token = uuid.uuid4().hex
    info = {
        "token": token,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    previous = os.environ.get(ENV)
    os.environ[ENV] = token
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous


def read_holder(path: Path) -> dict[str, Any]:
    """What the holder wrote into the lock file ({} if unreadable or being written)."""
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def busy_message(root: Path, holder: dict[str, Any]) -> str:
    who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"
    since = f" since {holder['since']}" if holder.get("since") else ""
    command = f" ({holder['command']})" if holder.get("command") else ""
    return (
        f"sweep folder {root} is in use by {who}{since}{command}: one command at a time "
        "writes a sweep folder; wait for it to end, or use another name=... (a killed "
        "holder frees the folder by itself)"
    )
