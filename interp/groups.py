"""Which sweep points can share one LM forward (pure: no torch, no training code).

A *group* job serves several points from one subject-model forward: a train group
trains their dictionaries together, a collect group encodes every member's dictionary
from the same activations per token slice. The keys here say which points may share;
the planner merges the jobs of points with equal keys (see :mod:`interp.stages.registry`).
"""

from __future__ import annotations

from interp.config import RunConfig, id_dict
from interp.runs import RunIds, short_hash

STREAM_KEYS = ("num_tokens", "batch_size", "lm_batch_size", "buffer_batches", "seed")
"""Train settings that shape the activation stream every member of a train group reads."""


def train_group_key(cfg: RunConfig) -> str:
    """Points with equal keys can train from one LM forward: the same model, the same data
    (data id) and the same stream settings (:data:`STREAM_KEYS`); hookpoint, dictionary and
    optimiser settings may differ (see :mod:`interp.train.group`)."""
    stream = {key: getattr(cfg.train, key) for key in STREAM_KEYS}
    return short_hash({"data": RunIds.of(cfg).data, "model": id_dict(cfg.model), "stream": stream})


def collect_group_key(cfg: RunConfig) -> str:
    """Points with equal keys can collect from one LM forward per slice: the same model,
    data and token slices; their dictionaries (and hookpoints) may differ."""
    c = cfg.collect
    slices = {"num_tokens": c.num_tokens, "slice_tokens": c.slice_tokens, "lm": c.lm_batch_size}
    return short_hash({"data": RunIds.of(cfg).data, "model": id_dict(cfg.model), "slices": slices})
