"""Stand-in stages, so the SLURM layer is tested in seconds rather than model-minutes.

``fake_execute`` is the real ``slurm.worker.execute`` (logging, signals -> should_stop) with
the stage body swapped for :func:`fake_run_task`, which commits each task like a real stage
(output renamed into place, then the manifest). Marker files in the sweep folder steer it:

  fail-<stage>-<index>   the task raises (a stage bug, a corrupt input)
  hold-<stage>-<index>   the task waits, checking should_stop(), until the file is gone;
                         stopped early it returns uncommitted, as a real stage does

Imported by reference in the jobs, so tests put this folder on PYTHONPATH (sbatch passes
the submitting environment to the job).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp.plan import Task


def fake_execute(stage: str, cfg_dict: dict[str, Any] | None, root: str, task: Task) -> float:
    import slurm.worker as worker

    real = worker.run_task  # restored: in-process callers (test fixtures) run real stages after
    worker.run_task = fake_run_task
    try:
        return worker.execute(stage, cfg_dict, root, task)
    finally:
        worker.run_task = real


def fake_run_task(
    stage: str,
    cfg_dict: dict[str, Any] | None,
    root: str | Path,
    task: Task,
    should_stop: Callable[[], bool],
    **runtime: Any,
) -> None:
    from interp.config import load_run_config
    from interp.runs import RunPaths, atomic_write_json, commit_task
    from interp.stages import run_task
    from interp.stages.registry import stage as spec_of

    if spec_of(stage).service:  # a real service (an LLM server): it commits nothing anyway
        run_task(stage, cfg_dict, root, task, should_stop, **runtime)
        return
    root = Path(root)
    marker = f"{stage}-{task.index}"
    if (root / f"fail-{marker}").exists():
        raise RuntimeError(f"injected failure of {marker}")
    while (root / f"hold-{marker}").exists():
        if should_stop():
            return
        time.sleep(0.1)
    if stage == "gather":
        fake_gather(root)
        return
    assert cfg_dict is not None
    for member in cfg_dict.get("members", [cfg_dict]):  # a train group commits every member
        paths = RunPaths(root, load_run_config(member))
        out = paths.stage_dir(stage) / "fake" / f"{stage}-{task.index:05d}.json"
        atomic_write_json(
            out, {"stage": stage, "task": task.index, "sum": sum(range(task.start, task.stop))}
        )
        commit_task(paths.manifest_file(stage, task.index), {"stage": stage, "task": task.index})


def fake_gather(root: Path) -> None:
    """Refuse an incomplete sweep (like gather), else one table of every task's output."""
    from interp.runs import atomic_write_json, gather_dir, gather_manifest
    from interp.stages.gather import check_complete, fingerprint, load_points

    cfgs = load_points(root)
    problems = check_complete(root, cfgs)
    if problems:
        raise RuntimeError("incomplete sweep:\n" + "\n".join(problems))
    rows = [
        json.loads(f.read_text()) | {"run": f.parent.parent.name}
        for f in root.glob("*/*/fake/*.json")
    ]
    rows.sort(key=lambda r: (r["run"], r["stage"], r["task"]))
    atomic_write_json(gather_dir(root) / "table.json", rows)
    atomic_write_json(gather_manifest(root), {"fingerprint": fingerprint(root, cfgs)})
