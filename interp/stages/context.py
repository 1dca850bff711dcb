"""What every stage's ``run`` gets: one :class:`StageContext`.

The context carries the job's configs (one point, the members of a group job, or none
for a sweep-level stage), the sweep folder, the array task, ``should_stop`` and what the
executor knows at run time (which scheduler jobs are alive, whether the work a service
serves is over). Runtime facts are fields here, never written into the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp.config import RunConfig, load_run_config
from interp.runs import RunPaths
from interp.stages.registry import Task

if TYPE_CHECKING:
    from interp.llm.replicas import JobsAlive


def never_stop() -> bool:
    return False


@dataclass(frozen=True)
class StageContext:
    """One array task of one stage job; see the module docstring."""

    root: Path
    task: Task
    members: tuple[RunConfig, ...] = ()
    """The point's config; every member's for a group job; () for a sweep-level stage."""
    should_stop: Callable[[], bool] = never_stop
    """True once the task should return at its next safe point, uncommitted."""
    jobs_alive: JobsAlive | None = None
    """Runtime: which of some scheduler job ids run as this user (None: nobody to ask).
    Served-LLM discovery trusts only replicas whose jobs this says are alive."""
    users_finished: Callable[[], bool] | None = None
    """Runtime, services only: whether the work this service serves is over."""

    @classmethod
    def of(
        cls,
        cfg: RunConfig,
        paths: RunPaths,
        task: Task,
        should_stop: Callable[[], bool] = never_stop,
        **runtime: Any,
    ) -> StageContext:
        """The context of one point's task (tests and benchmarks build it like this)."""
        return cls(Path(paths.root), task, (cfg,), should_stop, **runtime)

    @classmethod
    def from_payload(
        cls,
        payload: dict[str, Any] | None,
        root: Path,
        task: Task,
        should_stop: Callable[[], bool] = never_stop,
        **runtime: Any,
    ) -> StageContext:
        """The context of a job's payload (:func:`interp.plan.job_payload`)."""
        if payload is None:
            members: tuple[RunConfig, ...] = ()
        elif "members" in payload:
            members = tuple(load_run_config(d) for d in payload["members"])
        else:
            members = (load_run_config(payload),)
        return cls(root, task, members, should_stop, **runtime)

    @property
    def cfg(self) -> RunConfig:
        """The point's config (the first member's for a group job)."""
        assert self.members, "a sweep-level stage has no point config"
        return self.members[0]

    @property
    def paths(self) -> RunPaths:
        return RunPaths(self.root, self.cfg)

    def pairs(self) -> list[tuple[RunConfig, RunPaths]]:
        """(config, paths) of every member."""
        return [(c, RunPaths(self.root, c)) for c in self.members]
