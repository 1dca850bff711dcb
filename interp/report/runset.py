"""The report's inputs: sweep folders and Hydra multirun folders read as run sets, each
named by the overrides that set it apart from the others."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from interp.report.dashboard import DashboardConfig
from interp.report.sweepdata import (
    Alignment,
    LatentTable,
    Point,
    load_alignments,
    load_points,
    multirun_job,
    read_table,
)


@dataclass(frozen=True)
class ReportConfig:
    """What the report draws and how much of it."""

    dashboards: DashboardConfig = field(default_factory=DashboardConfig)
    build_dashboards: bool = True  # latent pages need the store, the SAE and the subject model
    n_boot: int = 500  # bootstrap resamples for the confidence interval of a median
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_boot < 10:
            raise ValueError(f"n_boot={self.n_boot}: use at least 10 bootstrap resamples")


@dataclass
class RunSet:
    """The points of one sweep folder or one Hydra multirun, and what was gathered."""

    name: str
    root: Path
    points: list[Point]
    table: LatentTable | None
    alignments: list[Alignment] | None


def load_inputs(inputs: Sequence[Path]) -> list[RunSet]:
    """The run sets of sweep / multirun folders ``inputs``, each named by the overrides
    its points share that the other runs' points lack (else its folder name)."""
    runs = [r for p in inputs for r in resolve_input(Path(p))]
    if not any(r.points for r in runs):
        raise ValueError(f"no sweep points found in {[str(p) for p in inputs]}")
    _name_runs(runs)
    return runs


def load_runset(root: Path, name: str, only: set[str] | None = None) -> RunSet:
    points = [p for p in load_points(root) if only is None or p.point_id in only]
    return RunSet(name, root, points, read_table(root), load_alignments(root))


def resolve_input(path: Path) -> list[RunSet]:
    """A sweep folder (has ``points/``) or a Hydra multirun folder (job folders with
    ``.hydra/overrides.yaml``): the run sets it names."""
    path = path.resolve()
    if (path / "points").is_dir():
        return [load_runset(path, path.name)]
    jobs = [j for j in sorted(path.iterdir()) if (j / ".hydra" / "overrides.yaml").is_file()] \
        if path.is_dir() else []  # fmt: skip
    found = [f for j in jobs if (f := multirun_job(j)) is not None]
    if not found:
        raise ValueError(
            f"{path} is neither a sweep folder (no points/) nor a Hydra multirun folder "
            "(no <n>/.hydra/overrides.yaml): pass runs/<name> or runs/<name>/.hydra/multirun-*"
        )
    by_root: dict[Path, set[str]] = {}
    for pid, _, recorded_root in found:
        root = _sweep_root_of(recorded_root, path)
        by_root.setdefault(root, set()).add(pid)
    return [load_runset(root, path.name, ids) for root, ids in sorted(by_root.items())]


def _sweep_root_of(recorded_root: Path, multirun: Path) -> Path:
    candidates = [recorded_root, multirun.parent.parent]
    for root in candidates:
        if (root / "points").is_dir():
            return root.resolve()
    raise ValueError(
        f"the sweep folder of multirun {multirun} is not at {candidates[0]} nor at "
        f"{candidates[1]}: run compare.py from the directory the sweep was launched in"
    )


def _name_runs(runs: list[RunSet]) -> None:
    """Name each run by its overrides common to all its points that other runs lack."""
    common = [_common_overrides(r.points) for r in runs]
    shared = set.intersection(*common) if common else set()
    for run, mine in zip(runs, common):
        own = sorted(mine - shared)
        if own and len(runs) > 1:
            run.name = " ".join(own)
    names = [r.name for r in runs]
    for i, run in enumerate(runs):
        if names.count(run.name) > 1:
            run.name = f"{run.name} #{i + 1}"


def _common_overrides(points: list[Point]) -> set[str]:
    sets = [{f"{k}={v}" for k, v in p.override_dict().items()} for p in points]
    return set.intersection(*sets) if sets else set()
