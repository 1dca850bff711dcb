"""Each sweep point as the plain values the gather's outputs need: its table columns
(identity, training figures, LLM tokens paid) and its interpret record files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.llm.ledger import read_ledger
from interp.models import hookpoint_width
from interp.plan import Task, plan_point
from interp.pretrained_point import source_label
from interp.runs import RunPaths


@dataclass(frozen=True)
class RecordFile:
    """One interpret task's record file and the latents ``[start, stop)`` it holds."""

    path: Path
    start: int
    stop: int


@dataclass(frozen=True)
class PointSource:
    """What the table reads of one point: its columns and its record files, in order."""

    columns: dict[str, Any]
    records: tuple[RecordFile, ...]


def point_columns(root: Path, cfg: RunConfig) -> dict[str, Any]:
    """The point's identity (table columns), its dictionary's training figures and
    the LLM tokens every interpret attempt paid (the ledgers)."""
    paths = RunPaths(root, cfg)
    train = json.loads(paths.train_summary().read_text()) if paths.train_summary().exists() else {}
    source, source_format = source_label(cfg)  # a pretrained point has no training figures
    return {
        "point": paths.ids.point,
        "model": cfg.model.name,
        "layer": cfg.layer,
        "hookpoint": cfg.hookpoint,
        "sae_id": cfg.sae.sae_id,
        "architecture": cfg.sae.architecture,
        "source": source,
        "source_format": source_format,
        "explainer_model": cfg.llm.model,
        "fvu": train.get("fvu"),
        "l0": train.get("l0"),
        "dead_pct": train.get("dead_pct"),
        "ce_increase": train.get("ce_increase"),
        "llm_paid": read_ledger(paths.llm_ledger_dir()),  # every attempt, killed ones too
    }


def interpret_tasks(cfg: RunConfig) -> tuple[Task, ...]:
    """The point's interpret array tasks (one record file each)."""
    (job,) = [
        j
        for j in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint))
        if j.stage == "interpret"
    ]
    return job.tasks


def point_sources(root: Path, cfgs: list[RunConfig]) -> list[PointSource]:
    """Every point's columns and record files, in table order."""
    columns = [point_columns(root, cfg) for cfg in cfgs]
    return [
        PointSource(
            cols,
            tuple(
                RecordFile(RunPaths(root, cfg).records_file(t.index), t.start, t.stop)
                for t in interpret_tasks(cfg)
            ),
        )
        for cfg, cols in zip(cfgs, columns)
    ]
