"""What runs inside every job: logging, signal -> should_stop, then the stage."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from interp.plan import Task
from interp.stages import run_task
from slurm.job import job_runtime

log = logging.getLogger("interp.worker")


def setup_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("INTERP_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )
    for noisy in ("httpx", "urllib3", "filelock", "numcodecs"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def set_threads() -> None:
    """Use the CPUs SLURM allotted, not every core of the node (oversubscription cost 4.5x)."""
    cpus = os.environ.get("INTERP_NUM_THREADS") or os.environ.get("SLURM_CPUS_PER_TASK")
    if cpus:
        import torch

        torch.set_num_threads(int(cpus))


def execute(stage: str, cfg_dict: dict[str, Any] | None, root: str, task: Task) -> float:
    """Run one array task; SIGTERM/SIGUSR2 only set the stop flag the stage polls. Under
    SLURM the stage also gets what only the job knows (:func:`slurm.job.job_runtime`)."""
    # Large CPU tensors on transparent huge pages (read by torch at its first allocation):
    # fresh memory costs ~3-10 us per 4 KiB page fault on the VMs measured, which the LM
    # forward and the SAE step pay every step (bench/RESULTS.md, train_vs_sparsify).
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    setup_logging()
    set_threads()
    stop = threading.Event()

    def _flag(signum: int, _frame: Any) -> None:
        log.warning("signal %d received: stopping at the next safe point", signum)
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGUSR2):
            signal.signal(sig, _flag)
    t0 = time.perf_counter()
    log.info("%s task %d [%d, %d) in %s", stage, task.index, task.start, task.stop, Path(root))
    payload, runtime = job_runtime(cfg_dict, Path(root))  # never written into the config
    run_task(stage, payload, root, task, should_stop=stop.is_set, **runtime)
    return time.perf_counter() - t0
