"""Whether the files in ``<sweep>/gather/`` are a current gather, and if not, why.

gather removes its ``manifest.json`` before it rewrites anything and writes it last, so
a gather that fails or is killed midway leaves the folder with an older (or part older,
part newer) table, summary, exports and report and no manifest. Nothing there would
say so, and the brief the main job prints, ``status`` and ``verify`` would read the old
summary as the result. So:

* a gather that raises writes ``gather/FAILED.json`` (:func:`record_failure`): when,
  the error's first line, the step it failed in, which outputs this gather had already
  rewritten and which are left from an earlier gather (or half-written by the step that
  failed);
* a gather that succeeds removes it before it commits its manifest;
* :func:`stale_lines` turns either state (``FAILED.json``, or outputs without a
  manifest: a gather killed midway, or one running now) into lines for a person.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.runs import (
    atomic_write_json,
    gather_dir,
    gather_failed_file,
    gather_manifest,
    is_tmp,
)


@dataclass
class GatherProgress:
    """The steps one gather has finished and the outputs each rewrote."""

    root: Path
    started: float = field(default_factory=time.time)
    rewritten: list[str] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    current: str = ""

    def start(self, step: str) -> None:
        self.current = step

    def done(self, *outputs: str) -> None:
        self.steps.append(self.current)
        self.rewritten += outputs
        self.current = ""


def record_failure(progress: GatherProgress, err: BaseException) -> Path:
    """Write ``gather/FAILED.json`` for a gather that raised ``err``."""
    out = gather_dir(progress.root)
    skip = {gather_failed_file(progress.root).name, gather_manifest(progress.root).name}
    present = sorted(p.name for p in out.iterdir() if p.name not in skip and not is_tmp(p))
    older = [name for name in present if name not in progress.rewritten]
    first = (str(err).strip().splitlines() or [""])[0]
    info = {
        "started": _iso(progress.started),
        "failed": _iso(time.time()),
        "error": f"{type(err).__name__}: {first}"[:500],
        "failed_in": progress.current or "(between steps)",
        "steps_done": progress.steps,
        "rewritten_by_the_failed_gather": [n for n in progress.rewritten if n in present],
        "from_an_earlier_gather_or_partly_written": older,
        "fix": "fix the error, then run the gather again (the sweep command, or "
        "python launch/rerun.py <sweep> on SLURM): this file goes when a gather succeeds",
    }
    path = gather_failed_file(progress.root)
    atomic_write_json(path, info)
    return path


def clear_failure(root: Path) -> None:
    gather_failed_file(root).unlink(missing_ok=True)


def read_failure(root: Path) -> dict[str, Any] | None:
    path = gather_failed_file(root)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        return {"error": f"{path} is unreadable"}


def stale_lines(root: Path) -> list[str]:
    """Lines saying the gather outputs are stale, and why (empty: current or none)."""
    out = gather_dir(root)
    failure = read_failure(root)
    if failure is not None:
        older = ", ".join(failure.get("from_an_earlier_gather_or_partly_written") or []) or "-"
        newer = ", ".join(failure.get("rewritten_by_the_failed_gather") or []) or "-"
        return [
            f"GATHER FAILED at {failure.get('failed', '?')} in {failure.get('failed_in', '?')}: "
            f"{failure.get('error', '?')}",
            f"  the outputs in {out} are stale: rewritten by the failed gather: {newer}; "
            f"from an earlier gather or partly written: {older} (details: "
            f"{gather_failed_file(root)})",
            "  fix the error, then run the gather again",
        ]
    if (out / "summary.json").is_file() and not gather_manifest(root).is_file():
        return [
            f"GATHER NOT FINISHED: {out} has outputs but no manifest.json (a gather was "
            "killed midway, or is running now): they may be stale or mixed; run the gather "
            "again"
        ]
    return []


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
