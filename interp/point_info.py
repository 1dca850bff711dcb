"""A sweep point as plain values: what the report reads about a point, built here from
its recorded config so that :mod:`interp.report` never handles a ``RunConfig`` or
``RunPaths`` (ids, layer, dictionary, model and the files its stages committed).

``recorded_points(root)`` reads ``points/*/config.json`` of a sweep folder;
``locate(raw)`` gives the point id and sweep folder of a Hydra job's config.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.config import RunConfig, load_run_config, load_saved_config
from interp.runs import RunIds, RunPaths, points_dir


@dataclass(frozen=True)
class PointFiles:
    """Where a point's stages committed what the report reads (each may be absent)."""

    overrides: Path  # points/<id>/overrides.json (multirun points only)
    train_summary: Path  # the train stage's summary.json
    train_metrics: Path  # the train stage's metrics.jsonl
    sae_dir: Path  # the trained (or built) dictionary
    store_dir: Path  # the latent store


@dataclass(frozen=True)
class PointInfo:
    """One sweep point's ids and settings as plain values."""

    point_id: str
    layer: int
    sae_id: str  # the dictionary without its layer
    architecture: str  # "topk", ..., "neurons"
    rotate: bool  # neurons only: rotated basis
    hookpoint: str
    model_name: str
    ctx_len: int
    files: PointFiles


def point_info(root: Path, cfg: RunConfig) -> PointInfo:
    """The plain values of point ``cfg`` of sweep folder ``root``."""
    paths = RunPaths(Path(root), cfg)
    files = PointFiles(
        overrides=paths.point_overrides(),
        train_summary=paths.train_summary(),
        train_metrics=paths.train_metrics(),
        sae_dir=paths.sae_dir(),
        store_dir=paths.store_dir(),
    )
    return PointInfo(
        point_id=paths.ids.point,
        layer=cfg.layer,
        sae_id=cfg.sae.sae_id,
        architecture=cfg.sae.architecture,
        rotate=bool(cfg.sae.rotate),
        hookpoint=cfg.hookpoint,
        model_name=cfg.model.name,
        ctx_len=cfg.data.ctx_len,
        files=files,
    )


def recorded_points(root: Path) -> list[PointInfo]:
    """Every point recorded in sweep folder ``root`` (``points/*/config.json``), by id."""
    files = sorted(points_dir(Path(root)).glob("*/config.json"))
    return [point_info(root, load_saved_config(json.loads(f.read_text()))) for f in files]


def locate(raw: dict[str, Any]) -> tuple[str, Path]:
    """(point id, sweep folder) of a run config given as a plain dict (a Hydra job's
    ``config.yaml``); raises ValueError / TypeError / KeyError if it is not one."""
    cfg = load_run_config(raw)
    return RunIds.of(cfg).point, RunPaths.sweep_root(cfg)
