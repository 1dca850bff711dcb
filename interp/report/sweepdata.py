"""What the report reads from a sweep folder: points, their overrides, training
summaries, the gathered latent table and alignment results, each optional.

A sweep folder (see interp/runs.py) is read only through what its stages committed:
``points/<id>/config.json`` (+ ``overrides.json`` for multirun points; older sweeps'
overrides are recovered from Hydra's ``.hydra/multirun-*/<n>/.hydra/`` job folders),
the train stage's ``summary.json`` / ``metrics.jsonl``, ``gather/latents.parquet`` and
the alignment results under ``gather/``. Anything missing reads as None or empty, and
the report says so.

Score columns of the latent table are recognised in both layouts gather has written:
``scores.<scorer>.<metric>`` / ``control.<scorer>.<metric>`` / ``baseline.<scorer>.<metric>``
and the older ``<scorer>_<metric>`` (real explanations only).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interp.point_info import PointFiles, PointInfo, locate, recorded_points
from interp.records import PRIMARY_METRICS, parse_score_column
from interp.runs import gather_dir
from interp.score.registry import headline_metric

log = logging.getLogger(__name__)


@dataclass
class Point:
    """One sweep point as the report sees it: its plain values (:mod:`interp.point_info`)
    and what its stages recorded."""

    root: Path
    info: PointInfo
    overrides: list[str] | None = None  # Hydra task overrides ("layer=3"); None: not a multirun
    multirun_dir: str | None = None
    train: dict[str, Any] = field(default_factory=dict)  # train summary.json ({} if absent)

    @property
    def point_id(self) -> str:
        return self.info.point_id

    @property
    def files(self) -> PointFiles:
        return self.info.files

    @property
    def layer(self) -> int:
        return self.info.layer

    @property
    def sae_id(self) -> str:
        return self.info.sae_id

    @property
    def hookpoint(self) -> str:
        return self.info.hookpoint

    @property
    def kind(self) -> str:
        """'SAE latents', 'neurons' or 'rotated neurons': the groups scores are compared by."""
        if self.info.architecture != "neurons":
            return "SAE latents"
        return "rotated neurons" if self.info.rotate else "neurons"

    @property
    def series(self) -> str:
        """The dictionary without its layer: a line/colour in plots over layers."""
        return self.info.sae_id

    @property
    def label(self) -> str:
        return f"{self.info.sae_id} @ {self.info.hookpoint}"

    def override_dict(self) -> dict[str, str]:
        """The overrides as key -> value; without recorded overrides, the dictionary and
        layer (what a sweep usually varies) stand in."""
        if self.overrides is None:
            return {"sae": self.info.sae_id, "layer": str(self.info.layer)}
        out = {}
        for item in self.overrides:
            key, _, value = item.partition("=")
            out[key.lstrip("+~")] = value
        return out


def load_points(root: Path) -> list[Point]:
    """Every recorded point of sweep folder ``root`` with its overrides and training summary."""
    root = Path(root)
    points = []
    hydra_overrides = _hydra_job_overrides(root)
    for info in recorded_points(root):
        point = Point(root, info)
        if info.files.overrides.is_file():
            rec = json.loads(info.files.overrides.read_text())
            point.overrides, point.multirun_dir = list(rec["overrides"]), rec.get("multirun_dir")
        elif point.point_id in hydra_overrides:
            point.overrides, point.multirun_dir = hydra_overrides[point.point_id]
        summary = info.files.train_summary
        point.train = json.loads(summary.read_text()) if summary.is_file() else {}
        points.append(point)
    return points


def _hydra_job_overrides(root: Path) -> dict[str, tuple[list[str], str]]:
    """Point id -> (overrides, multirun dir) from Hydra's own job folders in ``root``."""
    out: dict[str, tuple[list[str], str]] = {}
    for job in sorted((root / ".hydra").glob("multirun-*/*/.hydra")):
        found = multirun_job(job.parent)
        if found is not None:
            out[found[0]] = (found[1], str(job.parent.parent))
    return out


def multirun_job(job_dir: Path) -> tuple[str, list[str], Path] | None:
    """(point id, overrides, sweep folder of the point) of one Hydra multirun job folder,
    None if unreadable."""
    import yaml

    try:
        overrides = yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text()) or []
        raw = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text())
        raw.pop("cluster", None)
        point_id, sweep_root = locate(raw)
    except (OSError, ValueError, TypeError, KeyError, yaml.YAMLError) as err:
        log.warning("skipping Hydra job folder %s: %s", job_dir, err)
        return None
    return point_id, [str(o) for o in overrides], sweep_root


def read_metrics(point: Point) -> list[dict[str, Any]]:
    """Training metrics rows (``metrics.jsonl``) of a point; [] if none."""
    path = point.files.train_metrics
    if not path.is_file():
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- latent table


class LatentTable:
    """Columns of ``gather/latents.parquet`` as numpy arrays, with score columns indexed.

    Numeric columns are float64 with NaN for missing values; text columns are object
    arrays (None for missing).
    """

    def __init__(self, columns: dict[str, np.ndarray]) -> None:
        self.columns = columns
        self.n = len(next(iter(columns.values()))) if columns else 0
        self.score_cols: dict[tuple[str, str, str], str] = {}
        for name in columns:
            key = parse_score_column(name)
            if key is not None and columns[name].dtype != object:  # CIs, per-quantile lists
                self.score_cols[key] = name

    @classmethod
    def read(cls, path: Path) -> LatentTable:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        cols = {}
        for name, col in zip(table.column_names, table.columns):
            if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) \
                    or pa.types.is_boolean(col.type) or pa.types.is_null(col.type):  # fmt: skip
                cols[name] = np.asarray(
                    col.cast(pa.float64()).to_numpy(zero_copy_only=False), dtype=float
                )
            else:
                cols[name] = np.asarray(col.to_pylist(), dtype=object)
        return cls(cols)

    def get(self, name: str) -> np.ndarray | None:
        return self.columns.get(name)

    def scorers(self, source: str = "scores") -> list[str]:
        """Scorers with at least one non-missing value for ``source``."""
        out = set()
        for (src, scorer, _), col in self.score_cols.items():
            if src == source and np.isfinite(self.columns[col]).any():
                out.add(scorer)
        return sorted(out)

    def metric_of(self, scorer: str) -> str | None:
        """The scorer's headline metric (its spec's, :mod:`interp.score.registry`), else
        the first of PRIMARY_METRICS it has, else its first metric."""
        metrics = [m for (s, sc, m) in self.score_cols if s == "scores" and sc == scorer]
        for m in (headline_metric(scorer), *PRIMARY_METRICS):
            if m in metrics:
                return m
        rest = sorted(m for m in metrics if m != "n")
        return rest[0] if rest else None

    def score(self, scorer: str, source: str = "scores", metric: str | None = None) -> np.ndarray:
        """[n] float: the scorer's (primary) metric for ``source``; NaN where missing."""
        metric = metric or self.metric_of(scorer)
        col = self.score_cols.get((source, scorer, metric or ""))
        return self.columns[col] if col is not None else np.full(self.n, np.nan)

    def text(self, name: str) -> np.ndarray:
        col = self.columns.get(name)
        return col if col is not None else np.full(self.n, None, dtype=object)

    def number(self, name: str) -> np.ndarray:
        col = self.columns.get(name)
        if col is None or col.dtype == object:
            return np.full(self.n, np.nan)
        return col

    def point_mask(self, point: Point) -> np.ndarray:
        """[n] bool: rows of ``point`` (by point id, else by dictionary and layer)."""
        pid = self.columns.get("point")
        if pid is not None:
            return pid == point.point_id
        sae, layer = self.text("sae_id"), self.number("layer")
        return (sae == point.sae_id) & (layer == point.layer)


def read_table(root: Path) -> LatentTable | None:
    path = gather_dir(Path(root)) / "latents.parquet"
    return LatentTable.read(path) if path.is_file() else None


# ----------------------------------------------------------------------------- alignment


@dataclass
class Alignment:
    """One planned pair of the align step (an entry of ``gather/align/index.json``)."""

    name: str
    kind: str  # "layers" | "same_layer" | "neurons"
    a: str  # point id of dictionary A
    b: str  # point id of dictionary B
    status: str  # "ok" | "skipped"
    info: dict[str, Any]  # the entry as written: similarity, median, mean, frac_above, ...
    folder: Path  # gather/align/pairs/<name>/

    def get(self, key: str) -> Any:
        return self.info.get(key)

    def matches(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(latent in A [P], latent in B [P], similarity [P]) of the matched pairs, or None."""
        path = self.folder / "matches.parquet"
        if self.status != "ok" or not path.is_file():
            return None
        import pyarrow.parquet as pq

        t = pq.read_table(path, columns=["a", "b", "similarity"])
        return tuple(np.asarray(t.column(c).to_numpy()) for c in ("a", "b", "similarity"))  # type: ignore[return-value]


def load_alignments(root: Path) -> list[Alignment] | None:
    """The align step's pairs (``gather/align/index.json``, written last by
    ``interp.stages.align.align_sweep``), None if it has not committed one."""
    align = gather_dir(Path(root)) / "align"
    index = align / "index.json"
    if not index.is_file():
        return None
    out = []
    for entry in json.loads(index.read_text()).get("pairs", []):
        a, b = entry.get("a") or {}, entry.get("b") or {}
        out.append(Alignment(
            str(entry.get("name")), str(entry.get("kind")), str(a.get("point")),
            str(b.get("point")), str(entry.get("status")), entry,
            align / "pairs" / str(entry.get("name")),
        ))  # fmt: skip
    return out
