"""The client side of a served LLM, for a stage task that talks to serve replicas.

Before the task's work starts it waits for a live replica (published by a serve job and,
where the executor can ask the scheduler, run by a job alive as this user:
``ctx.jobs_alive``), then a watchdog polls the replicas it found; when none answers twice
in a row the task's ``should_stop()`` turns true, the stage returns uncommitted instead of
recording every remaining latent as an error, and :class:`ReplicasGone` fails the task.
Replicas are found at run time, never written into the config: they never become
``llm.base_urls``, the only URLs the API key is sent to.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from interp.config import RunConfig
from interp.llm.replicas import JobsAlive, scheduler
from interp.runs import is_committed
from interp.stages.context import StageContext

log = logging.getLogger(__name__)


class ReplicasGone(RuntimeError):
    """Every replica a task talked to stopped answering."""


class Watchdog:
    """Polls the replicas a task uses; ``fired`` once none answered twice in a row."""

    def __init__(self, urls: list[str], poll_s: float) -> None:
        self.urls, self.poll_s, self.fired = urls, poll_s, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replica-watchdog", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from urllib.parse import urlsplit

        from interp.llm.replicas import healthy

        misses = 0
        while not self._stop.wait(self.poll_s):
            parts = [urlsplit(u) for u in self.urls]
            up = any(healthy(p.hostname or "", p.port or 80, 3.0) for p in parts)
            misses = 0 if up else misses + 1
            if misses >= 2:
                log.error("no replica of the served LLM answers (%s): stopping", self.urls)
                self.fired = True
                return

    def close(self) -> None:
        self._stop.set()


def attach_replicas(
    cfg: RunConfig,
    root: Path,
    jobs_alive: JobsAlive | None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Watchdog:
    """Wait for a live replica, then start the task's watchdog over the live ones (the
    stage's client finds them itself through the same check)."""
    from interp.llm.replicas import serve_id, wait_for_replicas

    log.info("waiting for a live replica of %s", cfg.llm.served_model)
    live = wait_for_replicas(
        root,
        serve_id(cfg.llm, cfg.serve),
        cfg.serve.startup_timeout_s,
        min(cfg.serve.poll_s, 2.0),
        jobs_alive,
        should_stop,
    )
    urls = [r.base_url for r in live]
    log.info("served LLM %s: %d live replica(s): %s", cfg.llm.served_model, len(urls), urls)
    return Watchdog(urls, cfg.serve.poll_s)


@contextlib.contextmanager
def attend(ctx: StageContext, stage: str) -> Iterator[Callable[[], bool]]:
    """The ``should_stop`` for the task's work: ``ctx.should_stop``, or, with a served LLM,
    also true once every replica is gone (then :class:`ReplicasGone` on the way out).
    Discovery inside the block trusts only jobs ``ctx.jobs_alive`` says run."""
    manifest = ctx.paths.manifest_file(stage, ctx.task.index)
    with scheduler(ctx.jobs_alive):
        if not ctx.cfg.serve.enabled or is_committed(manifest):
            yield ctx.should_stop
            return
        watchdog = attach_replicas(ctx.cfg, ctx.root, ctx.jobs_alive, ctx.should_stop)
        try:
            yield lambda: ctx.should_stop() or watchdog.fired
        finally:
            watchdog.close()
    if watchdog.fired and not is_committed(manifest):
        raise ReplicasGone(
            f"{stage} task {ctx.task.index}: every replica of the served LLM is gone "
            f"({', '.join(watchdog.urls)}); the range is left uncommitted (its LLM cache "
            "keeps what finished): python launch/rerun.py <sweep dir> starts a fresh "
            "server and redoes it"
        )
