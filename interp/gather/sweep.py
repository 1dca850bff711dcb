"""The whole gather of one sweep folder: check it is committed, write the outputs
(:mod:`interp.gather.outputs`), then ``manifest.json`` last (the commit: its fingerprint
tells ``status`` the gather is current). A gather that fails midway writes ``FAILED.json``
instead, saying its outputs are stale (:mod:`interp.report.gather_state`). If any array
task of any stage of any point is not committed, it names them and writes nothing
(:mod:`interp.gather.complete`)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from interp.gather import outputs
from interp.gather.complete import (
    IncompleteSweepError,
    check_complete,
    fingerprint,
    incomplete_message,
    incomplete_points,
    load_points,
)
from interp.gather.points import point_sources
from interp.report.gather_state import GatherProgress, clear_failure, record_failure
from interp.runs import (
    atomic_write_json,
    gather_dir,
    gather_manifest,
    read_manifest,
    remove_stale_tmp,
)

log = logging.getLogger(__name__)


def gather(root: Path, *, exports: tuple[str, ...] = ("delphi", "neuronpedia")) -> dict[str, Any]:
    """Check, then write the table, summary and exports of sweep folder ``root``.

    Returns the summary. Raises :class:`IncompleteSweepError` (nothing written) when
    any task is missing. A step that raises leaves ``gather/FAILED.json`` (what failed,
    which outputs are from which gather) and no manifest; a later gather that succeeds
    removes it (:mod:`interp.report.gather_state`).
    """
    cfgs = load_points(root)
    incomplete = incomplete_points(root, cfgs, records=True)
    if incomplete:
        raise IncompleteSweepError(incomplete_message(root, cfgs, incomplete))
    out = gather_dir(root)
    stamp = fingerprint(root, cfgs)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(out)
    gather_manifest(root).unlink(missing_ok=True)  # not current while it is rewritten
    progress = GatherProgress(root)
    try:
        progress.start("table")  # the points' columns are read for the table
        t0 = time.perf_counter()
        sources = point_sources(root, cfgs)
        read_s = time.perf_counter() - t0
        summary, timing = outputs.write_outputs(root, sources, exports, progress)
        timing["table_s"] += read_s  # the table's step includes reading the points
    except BaseException as err:  # a signal's exception too: the outputs are stale
        _mark_failed(progress, err)
        raise
    clear_failure(root)  # before the manifest: a kill in between reads "not finished"
    atomic_write_json(
        gather_manifest(root),
        {"fingerprint": stamp, "n_rows": summary["n_latents"], "timing": timing},
    )
    log.info(
        "gathered %d latent records of %d point(s) into %s (table %.1f s, summary %.1f s, "
        "exports %.1f s)",
        summary["n_latents"], len(cfgs), out, *timing.values(),
    )  # fmt: skip
    return summary


def _mark_failed(progress: GatherProgress, err: BaseException) -> None:
    """FAILED.json, never hiding ``err`` (a failure to write it is only logged)."""
    try:
        path = record_failure(progress, err)
    except Exception as e:  # e.g. the disk that failed the gather
        log.error("gather failed in %s; could not write its failure file: %s", progress.current, e)
        return
    log.error("gather failed in %s: the outputs beside %s are stale", progress.current, path)


def is_current(root: Path) -> bool:
    """True when gather's table was built from exactly what is committed now."""
    done = read_manifest(gather_manifest(root))
    return bool(done) and done.get("fingerprint") == fingerprint(root, load_points(root))


def up_to_date(root: Path) -> bool:
    """:func:`is_current`, and every committed record file is as committed (a gather
    job redoes the gather otherwise)."""
    cfgs = load_points(root)
    done = read_manifest(gather_manifest(root))
    return bool(
        done
        and done.get("fingerprint") == fingerprint(root, cfgs)
        and not check_complete(root, cfgs, records=True)
    )
