"""Each sweep point as the plain values the gather's outputs need: its table columns
(identity, training figures, LLM tokens paid) and its interpret record files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.config import RunConfig
from interp.llm.ledger import read_ledger
from interp.models import hookpoint_width
from interp.plan import Task, intervals, plan_point
from interp.pretrained_point import is_pretrained, measured_target, source_label
from interp.runs import RunPaths, atomic_write_json, read_manifest


@dataclass(frozen=True)
class RecordFile:
    """One interpret task's record file and the latents ``[start, stop)`` it holds."""

    path: Path
    start: int
    stop: int
    latents: tuple[int, ...] | None = None
    """The selected ids it holds (its manifest's ``latents``); None: ``[start, stop)``."""
    manifest: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class PointSource:
    """What the table reads of one point: its columns and its record files, in order."""

    columns: dict[str, Any]
    records: tuple[RecordFile, ...]


def point_columns(root: Path, cfg: RunConfig) -> dict[str, Any]:
    """The point's identity (table columns), its dictionary's training figures and
    the LLM tokens every interpret attempt paid (the ledgers)."""
    paths = RunPaths(root, cfg)
    if is_pretrained(cfg):  # no training figures: measured on the collect tokens instead
        train = collect_figures(paths, cfg)
    else:
        train = json.loads(paths.train_summary().read_text()) if paths.train_summary().exists() else {}  # fmt: skip
    source, source_format = source_label(cfg)
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
        **({"measured_on": train["measured_on"]} if "measured_on" in train else {}),
    }


def collect_figures(paths: RunPaths, cfg: RunConfig) -> dict[str, Any]:
    """A pretrained point's FVU and mean L0 over the kept collect tokens (the sums
    collect kept per slice) and dead % (latents with no activation in the committed
    store), written where a trained point's training summary is read; CE increase is
    not measured. A figure that cannot be had is None, with the reason in ``<key>_na``."""
    from interp.interpret.select import store_counts
    from interp.sae.recon import read_sums

    slices = intervals(cfg.collect.num_tokens, cfg.collect.slice_tokens)
    sums = read_sums([paths.collect_recon_file(i) for i in range(len(slices))])
    counts = store_counts(paths.store_dir(), cfg.sae.num_latents)
    out: dict[str, Any] = {
        "measured_on": f"{cfg.collect.num_tokens} collect tokens, positions >= "
        f"{cfg.data.exclude_first} of each window",
        "fvu": sums.fvu() if sums else None,
        "l0": sums.l0() if sums else None,
        "dead_pct": 100.0 * float((counts == 0).mean()),
        "ce_increase": None,
        "ce_increase_na": "not measured for a pretrained dictionary",
        "target_hookpoint": measured_target(cfg),
        "eval_tokens": sums.tokens if sums else None,
    }
    if sums is None:
        why = (
            "a transcoder whose output hookpoint is unknown: set target_hookpoint= and collect again"
            if measured_target(cfg) is None
            else "some collect slices kept no reconstruction sums (collected before they were "
            "measured): rerun collect for this point to measure them"
        )
        out["fvu_na"] = out["l0_na"] = why
    atomic_write_json(paths.train_summary(), out)
    return out


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
    out = []
    for cfg in cfgs:
        files = record_files(RunPaths(root, cfg), interpret_tasks(cfg))
        out.append(PointSource({**point_columns(root, cfg), **selection_counts(cfg, files)}, files))
    return out


def record_files(paths: RunPaths, tasks: tuple[Task, ...]) -> tuple[RecordFile, ...]:
    """The committed tasks' record files with the ids each holds (a selection's task
    that got no latents, a sample shorter than its array, has none)."""
    out = []
    for t in tasks:
        manifest = read_manifest(paths.manifest_file("interpret", t.index)) or {}
        latents = manifest.get("latents")
        if latents == []:
            continue
        ids = None if latents is None else tuple(latents)
        out.append(RecordFile(paths.records_file(t.index), t.start, t.stop, ids, manifest))
    return tuple(out)


def selection_counts(cfg: RunConfig, files: tuple[RecordFile, ...]) -> dict[str, Any]:
    """Which selection the point reports, how many it selects, how many were reused."""
    reused = sum(sum((f.manifest.get("reused") or {}).values()) for f in files)
    n = sum(len(f.latents) if f.latents is not None else f.stop - f.start for f in files)
    return {"selection": cfg.interpret.selection.canonical, "n_selected": n, "n_reused": reused}
