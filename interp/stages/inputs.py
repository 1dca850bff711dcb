"""The run -> the plain values library code takes: the one place that translates.

Library modules (``interp/data``, ``interp/align``, ``interp/score``, ...) never see a
:class:`~interp.config.RunConfig` or :class:`~interp.runs.RunPaths`; the stages build
what each part reads here, from one point's config and paths.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp.config import RunConfig, id_dict
from interp.runs import RunIds, RunPaths, short_hash

if TYPE_CHECKING:
    from interp.align.sweep import Dictionary
    from interp.data.tokens import TokenSource


def token_source(paths: RunPaths) -> TokenSource:
    """The point's token file and the sizes of its train and collect splits."""
    from interp.data.tokens import TokenSource

    cfg = paths.cfg
    return TokenSource(
        paths.tokens_file(),
        cfg.data,
        cfg.model.name,
        cfg.train.num_tokens,
        cfg.collect.num_tokens,
    )


def dictionary(cfg: RunConfig, paths: RunPaths) -> Dictionary:
    """One point's dictionary as alignment sees it (no weights are read)."""
    import re

    from interp.align.sweep import Dictionary
    from interp.data.tokens import split_windows

    layers = re.compile(r"layers\.\d+")
    # everything but the layer: dictionaries of one family are aligned layer to layer
    family = short_hash(
        [
            cfg.model.name,
            cfg.sae.sae_id,
            id_dict(cfg.train),
            layers.sub("layers.{}", cfg.hookpoint),
            layers.sub("layers.{}", cfg.target),
        ]
    )
    # equal for two points whose stores hold the same tokens: same token file, same
    # collect windows (they start after the point's training windows), same settings
    windows = split_windows(token_source(paths), "collect")
    tokens = short_hash([RunIds.of(cfg).data, list(windows), id_dict(cfg.collect)])
    return Dictionary(
        point=paths.ids.point,
        model=cfg.model.name,
        sae_id=cfg.sae.sae_id,
        architecture=cfg.sae.architecture,
        layer=cfg.layer,
        hookpoint=cfg.hookpoint,
        family=family,
        tokens_key=tokens,
        sae_dir=paths.sae_dir(),
        store_dir=paths.store_dir(),
        records_dir=paths.stage_dir("interpret") / "records",
    )
