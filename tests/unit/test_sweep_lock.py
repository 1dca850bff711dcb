"""One writer per sweep folder: real processes contend for ``<sweep>/.lock``.

A holder process takes the folder; a second real ``launch/sweep.py`` on it is refused
naming the holder and records nothing; a gather task waits, and runs once the holder is
SIGKILLed (flock dies with its process). The tasks a holder runs itself (submitit's
LocalExecutor children, in-process tasks) go through without deadlocking.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from interp.plan import Plan, StageJob, Task
from interp.runs import sweep_lock_file
from interp.stages.gather import IncompleteSweepError
from interp.sweep_lock import ENV, SweepBusyError, hold_sweep
from slurm.local import TaskFailed, run_plan

pytestmark = pytest.mark.timeout(600)  # a deadlock fails the test instead of hanging

ROOT = Path(__file__).resolve().parents[2]
TINY = "tiny-random-llama"
HOLD = (
    "import sys; from pathlib import Path; from interp.sweep_lock import hold_sweep\n"
    "with hold_sweep(Path(sys.argv[1])):\n"
    "    print('held', flush=True)\n"
    "    sys.stdin.read()\n"
)
GATHER = (
    "import sys; from slurm.worker import execute; from interp.plan import Task\n"
    "execute('gather', None, sys.argv[1], Task(0, 0, 1))\n"
)


def env_without_token() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    return {**env, "PYTHONPATH": str(ROOT)}


def start_holder(root: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env_without_token(),
    )
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_second_command_is_refused_a_gather_waits_and_sigkill_frees(tmp_path: Path) -> None:
    root = tmp_path / "s"
    holder = start_holder(root)
    try:
        sweep = subprocess.run(
            [sys.executable, "launch/sweep.py", f"model={TINY}", f"llm.model={TINY}", "layer=2",
             f"out_dir={tmp_path}", "name=s", "cluster=inprocess"],
            cwd=ROOT, capture_output=True, text=True, timeout=600, env=env_without_token(),
        )  # fmt: skip
        assert sweep.returncode != 0, sweep.stdout + sweep.stderr
        assert f"sweep folder {root} is in use by pid {holder.pid}" in sweep.stderr, sweep.stderr
        assert not list(root.glob("points/*")), "a refused sweep recorded a point"
        gather = subprocess.Popen(
            [sys.executable, "-c", GATHER, str(root)],
            stderr=subprocess.PIPE, text=True, env=env_without_token(),
        )  # fmt: skip
        assert gather.stderr is not None
        line = ""
        while "waiting for the sweep folder" not in line:
            line = gather.stderr.readline()
            assert line, "the gather task ended without waiting for the holder"
        assert f"in use by pid {holder.pid}" in line
    finally:
        holder.send_signal(signal.SIGKILL)  # no cleanup runs: the kernel drops the flock
        holder.wait()
    _, err = gather.communicate(timeout=600)
    assert gather.returncode != 0 and f"no sweep points under {root}" in err, err  # it ran
    with hold_sweep(root):  # free again
        pass


def test_the_holders_own_tasks_pass_and_others_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    plan = Plan((StageJob("gather", "gather", "g", (Task(0, 0, 1),), (), ""),))
    with hold_sweep(root):
        token = os.environ[ENV]
        assert token in sweep_lock_file(root).read_text()
        # submitit's LocalExecutor: the gather task is a child process of the holder
        with pytest.raises(TaskFailed, match="no sweep points under"):
            run_plan(plan, {}, root, {"executor": "local", "max_parallel": 1, "timeout_min": 0})
        # cluster=inprocess: the gather task runs in the holder's own process
        with pytest.raises(IncompleteSweepError, match="no sweep points under"):
            run_plan(plan, {}, root, {"executor": "inprocess"})
        # a process that is not the holder's task is refused, naming the holder
        other = subprocess.run(
            [sys.executable, "-c", HOLD, str(root)],
            capture_output=True, text=True, env=env_without_token(), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert other.returncode != 0 and "SweepBusyError" in other.stderr
        assert f"is in use by pid {os.getpid()}" in other.stderr
        with pytest.raises(SweepBusyError, match="use another name="):
            os.environ[ENV] = "someone else's token"
            try:
                with hold_sweep(root):
                    pass
            finally:
                os.environ[ENV] = token
    assert ENV not in os.environ  # the token goes with the lock
