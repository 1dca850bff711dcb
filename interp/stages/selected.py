"""A point's selected latents, and the records of them other selections already made.

**Which latents.** ``interpret.latents`` (:mod:`interp.interpret.selection`) is part of
the interpret run id; the plan splits the *positions* of the selection into array tasks
and every task resolves the same ordered ids here (:func:`selected_ids`, a sample from
the committed store's per-latent counts) and takes its positions.

**Changing the selection resumes what overlaps.** Records stay where they always were
(``interpret/<interpret id>/records/``: one folder per point, gather unchanged). The
*work key* of a point is the interpret id it would have with the selection taken out
(``latents``, ``num_latents``, ``latents_seed`` and ``range_latents`` at their defaults):
points that differ only in which latents they interpret share it. Before a task calls the
LLM, :func:`reusable_records` looks through the sweep's other points with the same work
key for committed records of its latents (the record file checked against its manifest's
sha256) and copies every one that is not an ``error`` into this task's records, unchanged:
the explanation, the scores and the control as they were computed (the control drawn from
the range it was computed in; ``source_latent`` names it). Only the rest go to the LLM;
the task's manifest counts what was reused and from where (``reused``). A record's
``tokens`` say what that latent cost when it was computed; what each point actually paid
is its LLM ledger.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from interp.config import RunConfig
from interp.interpret.selection import Selection
from interp.records import LatentRecord
from interp.runs import RunIds, RunPaths, points_dir, read_manifest
from interp.verify import committed_records


def selected_ids(cfg: RunConfig, paths: RunPaths) -> np.ndarray:
    """The ids ``interpret.latents`` selects, in task-position order (same for every task)."""
    from interp.store.reader import StoreReader

    icfg = cfg.interpret
    width = StoreReader(paths.store_dir()).n_latents
    return _resolved(
        paths.store_dir(), width, icfg.selection, icfg.examples.min_examples, icfg.latents_seed
    )


@lru_cache(maxsize=8)
def _resolved(store: Path, width: int, sel: Selection, min_count: int, seed: int) -> np.ndarray:
    """Cached per process: a task resolves it once (a sample reads every latent's count)."""
    from interp.interpret.select import resolve, store_counts

    ids = resolve(sel, width, lambda: store_counts(store, width), min_count, seed)
    ids.setflags(write=False)
    return ids


def describe(cfg: RunConfig) -> str:
    """The selection as one string for summaries (``num_latents=N`` reads ``0:N``)."""
    return cfg.interpret.selection.canonical


# ----------------------------------------------------------------------------- reuse


def work_key(cfg: RunConfig) -> str:
    """The interpret id of ``cfg`` with its selection taken out (see the module docstring)."""
    fields = {f.name: f for f in dataclasses.fields(cfg.interpret)}
    neutral = dataclasses.replace(
        cfg.interpret,
        **{
            k: fields[k].default
            for k in ("latents", "num_latents", "latents_seed", "range_latents")
        },
    )
    return RunIds.of(dataclasses.replace(cfg, interpret=neutral)).interpret


def siblings(cfg: RunConfig, root: Path) -> list[RunPaths]:
    """The sweep's other points that differ from ``cfg`` only in their selection."""
    from interp.config import load_saved_config

    own, key = RunIds.of(cfg).interpret, work_key(cfg)
    out = []
    for file in sorted(points_dir(root).glob("*/config.json")):
        try:  # a point that no longer loads (its id file moved) is no sibling
            other = load_saved_config(json.loads(file.read_text()))
        except (OSError, ValueError):
            continue
        paths = RunPaths(root, other)
        done = paths.manifest_dir("interpret").is_dir()
        if paths.ids.interpret != own and done and work_key(other) == key:
            out.append(paths)
    return out


def reusable_records(
    cfg: RunConfig, paths: RunPaths, latents: Iterable[int]
) -> tuple[dict[int, LatentRecord], dict[str, int]]:
    """Committed, non-error records of ``latents`` from sibling points: (latent -> record,
    interpret id -> how many came from it)."""
    need = set(int(i) for i in latents)
    found: dict[int, LatentRecord] = {}
    origin: dict[str, int] = {}
    for other in siblings(cfg, paths.root) if need else []:
        for manifest in sorted(other.manifest_dir("interpret").glob("*.json")):
            index = int(manifest.stem)
            for rec in committed_records(other.records_file(index), read_manifest(manifest)):
                if rec.latent in need and rec.latent not in found and rec.status != "error":
                    found[rec.latent] = rec
                    origin[other.ids.interpret] = origin.get(other.ids.interpret, 0) + 1
            if len(found) == len(need):
                return found, origin
    return found, origin


# ----------------------------------------------------------------------------- status


def report(root: Path, job: Any, alive: Any) -> tuple[list[str], list[str]]:
    """(problems, notes) for the sweep status (the registry's ``report`` hook): one note
    per point counting its interpret work against its selection."""
    from interp.config import load_saved_config

    config = root / "points" / job.point / "config.json"
    if not config.is_file():
        return [], []
    cfg = load_saved_config(json.loads(config.read_text()))
    return [], [selection_note(RunPaths(root, cfg), job.tasks)]


def selection_note(paths: RunPaths, tasks: Any) -> str:
    """``point: interpret.latents=X: N selected, k done (d dead or too rare, r reused)``."""
    done = skipped = reused = 0
    n = sum(t.stop - t.start for t in tasks)  # planned; a sample finds fewer alive
    for t in tasks:
        m = read_manifest(paths.manifest_file("interpret", t.index))
        if m is not None:
            done += int(m.get("n_latents", t.stop - t.start))
            skipped += int(m.get("n_skipped", 0))
            reused += sum((m.get("reused") or {}).values())
            n = int(m.get("n_selected", n))
    return (
        f"{paths.ids.point}: interpret.latents={describe(paths.cfg)}: {n} selected, {done} done "
        f"({skipped} dead or too rare, no LLM call; {reused} reused from other selections)"
    )
