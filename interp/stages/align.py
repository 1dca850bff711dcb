"""align, a step of the gather job: the sweep's points -> their dictionaries -> alignment.

Wiring only: reads every point's resolved config (``points/*/config.json``), builds what
alignment reads of each (:func:`interp.stages.inputs.dictionary`) and runs
:func:`interp.align.sweep.align_dictionaries`, which writes ``<root>/gather/align/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from interp.runs import RunPaths, read_points
from interp.stages.inputs import dictionary

if TYPE_CHECKING:
    from interp.align.align import AlignConfig
    from interp.align.report import Embedder


def align_sweep(
    root: Path,
    cfg: AlignConfig | None = None,
    *,
    embedder: Embedder | None = None,
    embed_explanations: bool = True,
    should_stop: Callable[[], bool] = lambda: False,
    progress: bool = False,
) -> Path | None:
    """Align every planned pair of the sweep in ``root``; returns ``index.json``'s path,
    or None when ``should_stop()`` interrupted it (see
    :func:`interp.align.sweep.align_dictionaries`)."""
    from interp.align.sweep import align_dictionaries

    root = Path(root)
    dicts = [dictionary(c, RunPaths(root, c)) for c in read_points(root)]
    return align_dictionaries(
        root,
        dicts,
        cfg,
        embedder=embedder,
        embed_explanations=embed_explanations,
        should_stop=should_stop,
        progress=progress,
    )
