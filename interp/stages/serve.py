"""serve: one replica of the explainer/scorer LLM as an OpenAI-compatible server.

Wiring: the run's config becomes a :class:`~interp.llm.serving.ServedModel` (the serve
settings, the weights, the served name, the replicas' id) and :mod:`interp.llm.serving`
runs the replica: start its server, publish its address in the sweep folder, watch until
the interpret work it serves is over or it is told to stop, withdraw and stop on every
way out. It commits nothing: a server is not a result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.llm import serving
from interp.llm.replicas import read_replicas, serve_id, served_name, served_weights, this_job
from interp.llm.serving import ServedModel, Server, ServerDied, VLLMServer, watch
from interp.plan import StageJob
from interp.stages.context import StageContext

__all__ = [  # the serving names, importable from here as before
    "Server", "ServedModel", "ServerDied", "VLLMServer", "report", "run", "serve",
    "served_model", "start_replica", "watch",
]  # fmt: skip

log = logging.getLogger(__name__)


def served_model(cfg: RunConfig) -> ServedModel:
    """What the point's replicas serve, from its config."""
    llm, s = cfg.llm, cfg.serve
    return ServedModel(s, served_weights(llm, s), served_name(llm), serve_id(llm, s))


def start_replica(cfg: RunConfig, root: Path, job: str, attempts: int = 5) -> Server:
    """Start the point's server and wait until it answers (:func:`serving.start_replica`)."""
    return serving.start_replica(served_model(cfg), root, job, attempts)


def serve(
    cfg: RunConfig,
    root: Path,
    should_stop: Callable[[], bool],
    finished: Callable[[], bool],
    job: str | None = None,
    tick_s: float = 0.2,
) -> dict[str, Any]:
    """One replica of the point's model (:func:`serving.serve`); what happened."""
    return serving.serve(served_model(cfg), root, should_stop, finished, job or this_job(), tick_s)


def run(ctx: StageContext) -> dict[str, Any]:
    """One replica until the work it serves is over (``ctx.users_finished``, which the
    executor passes; without it, until told to stop) or the time limit / a cancellation
    stops it. Never requeued: a rerun starts a fresh one if it is still needed."""
    job = this_job()
    log.info("serve replica %d (job %s) of %s", ctx.task.index, job, ctx.cfg.llm.served_model)
    finished = ctx.users_finished or (lambda: False)
    return serve(ctx.cfg, ctx.root, ctx.should_stop, finished, job=job)


def report(root: Path, job: StageJob, alive: Callable[[str], bool]) -> tuple[list[str], list[str]]:
    """(problems, notes) for the sweep status: a note per published replica, whether its
    job (``alive``: the scheduler's answer) still runs."""
    now = time.time()
    notes = []
    for r in read_replicas(root, job.run_id):
        live = not r.job[:1].isdigit() or alive(r.job)
        up = f"up {(now - r.started) / 60:.0f} min" if live else "job gone, file left over"
        notes.append(f"{job.key}: {r.base_url} model {r.model} (job {r.job}, {up})")
    return [], notes
