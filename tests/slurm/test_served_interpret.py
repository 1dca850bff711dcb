"""Served mode through the real scheduler: a llama-cpp-python server job (SmolLM2-135M-
Instruct GGUF, offline, on loopback) feeds the interpret array.

The train/collect/compact stages are the fake ones (seconds, see fake_stages.py); the
serve job is the real one, and each interpret task asks the served model for real through
the replicas the SLURM edge discovered for it (greedy, so answers are reproducible). The
server is killed mid-array: the affected ranges fail cleanly, ``rerun.py`` starts a fresh
server and completes them, and the final table equals an undisturbed run's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ROOT,
    all_done,
    cancel_sweep,
    cluster,
    counts,
    fake_plan,
    slurm_id_of,
    squeue_state,
    status_text,
    submissions,
    table,
    wait_for,
)

from interp.config import load_run_config
from interp.llm.replicas import read_replicas, serve_id
from interp.plan import Task
from slurm.slurm_executor import submit_plan
from slurm.submit import record_point

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(1500)]
MODEL = "smollm2-135m-instruct"


# ------------------------------------------------------------------------ job-side worker
def served_execute(stage: str, cfg_dict: dict[str, Any] | None, root: str, task: Task) -> float:
    """The real worker (logging, signals -> should_stop) with the stages swapped: fake
    ones, except interpret, which asks the served LLM (see :func:`ask_llm`)."""
    import fake_stages

    import slurm.worker as worker

    def run_task(
        stage: str, cfg_dict: Any, root: Any, task: Task, should_stop: Any, **runtime: Any
    ) -> None:
        if stage != "interpret":
            fake_stages.fake_run_task(stage, cfg_dict, root, task, should_stop, **runtime)
            return
        from interp.stages.context import StageContext
        from interp.stages.served import attend

        # like interpret.run: wait for a replica, watch it, discovery checked against squeue
        ctx = StageContext.from_payload(cfg_dict, Path(root), task, should_stop, **runtime)
        with attend(ctx, "interpret") as stop:
            ask_llm(cfg_dict, Path(root), task, stop)

    worker.run_task = run_task
    return worker.execute(stage, cfg_dict, root, task)


def ask_llm(
    cfg_dict: dict[str, Any], root: Path, task: Task, should_stop: Callable[[], bool]
) -> None:
    """One short greedy completion per latent of the range, then commit (like interpret)."""
    from interp.llm import build_client
    from interp.llm.replicas import discoverer
    from interp.runs import RunPaths, atomic_write_json, commit_task

    cfg = load_run_config(cfg_dict)
    paths = RunPaths(root, cfg)
    # like the interpret stage: the live replicas, checked against squeue by the check
    # attend() installed from the job's runtime
    client = build_client(cfg.llm, discover=discoverer(root, serve_id(cfg.llm, cfg.serve)))
    (root / f"started-interpret-{task.index}").touch()  # the test kills the server now
    answers = {}
    for latent in range(task.start, task.stop):
        while (root / f"hold-interpret-{task.index}").exists() and not should_stop():
            time.sleep(0.1)
        if should_stop():
            return  # uncommitted, as a real stage
        msg = [{"role": "user", "content": f"Count from {latent} to {latent + 3}."}]
        gen = asyncio.run(client.generate(msg, max_new_tokens=12, temperature=0.0))
        answers[str(latent)] = gen.text
    out = paths.stage_dir("interpret") / "fake" / f"interpret-{task.index:05d}.json"
    atomic_write_json(out, {"stage": "interpret", "task": task.index, "answers": answers})
    commit_task(paths.manifest_file("interpret", task.index), {"task": task.index})


# ------------------------------------------------------------------------------- the test
def served_points(out: Path) -> list:
    raw = {
        "name": "fake",
        "out_dir": str(out),
        "layer": 0,
        "model": {"name": "tiny-random-llama"},
        "data": {"max_tokens": 4096},
        "train": {"num_tokens": 1024},
        "collect": {"num_tokens": 1024, "slice_tokens": 512, "range_latents": 128},
        "sae": {"num_latents": 256},
        "interpret": {"num_latents": 8, "range_latents": 2},
        "llm": {"backend": "http", "model": MODEL, "served_model": MODEL, "max_retries": 1},
        "serve": {
            "enabled": True,
            "engine": "llama_cpp",
            "n_ctx": 1024,
            "startup_timeout_s": 90,
            "poll_s": 1,
            "port_range": [18100, 18199],
        },
    }
    cfg = load_run_config(raw)
    record_point(cfg)
    return [cfg]


def profile() -> dict[str, Any]:
    return cluster(
        worker="test_served_interpret:served_execute", stages={"serve": {"cpus_per_task": 2}}
    )


def serve_jobs_in_queue(root: Path) -> list[str]:
    ids = [i for s in submissions(root, "serve") for i in s.slurm_ids()]
    return [i for i in ids if squeue_state(i)]


def run_undisturbed(out: Path) -> list[dict]:
    cfgs = served_points(out)
    root = out / "fake"
    plan, by_point = fake_plan(cfgs)
    submit_plan(plan, by_point, root, profile())
    try:
        wait_for(lambda: all_done(root), 900, "the served sweep to finish", every=3)
        # the server ends by itself once the interpret array is finished
        wait_for(lambda: not serve_jobs_in_queue(root), 120, "the serve job to end", every=2)
    finally:
        cancel_sweep(root)
    assert read_replicas(root, serve_id(cfgs[0].llm, cfgs[0].serve)) == []  # withdrawn
    return table(root)


def test_killed_server_fails_ranges_cleanly_and_rerun_with_a_fresh_server_completes(
    tmp_path: Path,
) -> None:
    expected = run_undisturbed(tmp_path / "calm")
    answers = [r for r in expected if r["stage"] == "interpret"]
    assert len(answers) == 4 and all(len(r["answers"]) == 2 for r in answers)

    out = tmp_path / "storm"
    cfgs = served_points(out)
    root = out / "fake"
    sid = serve_id(cfgs[0].llm, cfgs[0].serve)
    (root / "hold-interpret-1").touch()  # range 1 stays mid-work while the server dies
    plan, by_point = fake_plan(cfgs)
    submit_plan(plan, by_point, root, profile())
    try:
        target = slurm_id_of(root, "interpret", 1)
        wait_for(lambda: squeue_state(target) == "RUNNING", 600, f"{target} to run", every=2)
        started = root / "started-interpret-1"
        wait_for(started.exists, 300, "range 1 to talk to the server", every=0.5)
        wait_for(lambda: bool(read_replicas(root, sid)), 120, "a published replica")
        assert "served LLM replicas:" in status_text(root)
        os.kill(read_replicas(root, sid)[0].pid, signal.SIGKILL)  # the server dies
        wait_for(lambda: not read_replicas(root, sid), 60, "the replica to be withdrawn")

        def settled() -> bool:
            c = counts(root)
            return c["running"] + c["queued"] == 0 or (c["failed"] >= 1 and c["running"] == 0)

        wait_for(settled, 300, "the affected ranges to fail", every=2)
        c = counts(root)
        assert c["failed"] >= 2, c  # the serve job and at least the held range
        assert not all_done(root)
        log = "".join(p.read_text() for p in (root / "slurm/logs").glob("interpret-*/*.err"))
        assert "every replica of the served LLM is gone" in log  # the held range, mid-work
        (root / "hold-interpret-1").unlink()

        rerun = [sys.executable, "launch/rerun.py", str(root)]
        proc = subprocess.run(rerun, cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-4000:]
        assert len(submissions(root, "serve")) == 2  # a fresh server
        wait_for(lambda: all_done(root), 900, "the rerun to finish", every=3)
        wait_for(lambda: not serve_jobs_in_queue(root), 120, "the new server to end", every=2)
    finally:
        cancel_sweep(root)
    assert table(root) == expected


def test_cancelling_the_dag_leaves_no_server(tmp_path: Path) -> None:
    cfgs = served_points(tmp_path)
    root = tmp_path / "fake"
    sid = serve_id(cfgs[0].llm, cfgs[0].serve)
    (root / "hold-interpret-0").touch()
    plan, by_point = fake_plan(cfgs)
    submit_plan(plan, by_point, root, profile())
    try:
        wait_for(lambda: bool(read_replicas(root, sid)), 600, "a published replica", every=2)
        pid = read_replicas(root, sid)[0].pid
        assert Path(f"/proc/{pid}").exists()
    finally:
        cancel_sweep(root)
    wait_for(lambda: not Path(f"/proc/{pid}").exists(), 60, "the server process to end")
    wait_for(lambda: not serve_jobs_in_queue(root), 60, "the serve job to leave the queue")
