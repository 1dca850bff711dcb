"""Which sweep points can share one LM forward (pure: no torch, no training code).

A *group* job serves several points from one subject-model forward: a train group
trains their dictionaries together, a collect group encodes every member's dictionary
from the same activations per token slice. The keys here say which points may share;
the planner merges the jobs of points with equal keys (see :mod:`interp.stages.registry`).

Train group members must read the same activation stream: the same model, the same data
(data id), and the same stream settings (:data:`STREAM_KEYS`). They may differ in
hookpoint / layer, dictionary (any architecture) and optimiser settings (lr, warmup).
Each member then sees exactly the vectors, in exactly the order, it would see alone (one
shared shuffle over every hookpoint), so grouping changes how many forwards are paid,
never a member's result.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.config import RunConfig, id_dict
from interp.runs import RunIds, short_hash

STREAM_KEYS = ("num_tokens", "batch_size", "lm_batch_size", "buffer_batches", "seed")
"""Train settings that shape the activation stream every member of a train group reads."""


def train_group_key(cfg: RunConfig) -> str:
    """Points with equal keys can train from one LM forward: the same model, the same data
    (data id) and the same stream settings (:data:`STREAM_KEYS`); hookpoint, dictionary and
    optimiser settings may differ (see the module docstring)."""
    stream = {key: getattr(cfg.train, key) for key in STREAM_KEYS}
    return short_hash({"data": RunIds.of(cfg).data, "model": id_dict(cfg.model), "stream": stream})


def collect_group_key(cfg: RunConfig) -> str:
    """Points with equal keys can collect from one LM forward per slice: the same model,
    data and token slices; their dictionaries (and hookpoints) may differ."""
    c = cfg.collect
    slices = {"num_tokens": c.num_tokens, "slice_tokens": c.slice_tokens, "lm": c.lm_batch_size}
    return short_hash({"data": RunIds.of(cfg).data, "model": id_dict(cfg.model), "slices": slices})


def train_group_id(cfgs: Sequence[RunConfig]) -> str:
    """Id of one concrete group: its key and its members' train ids (order-free).

    The group's checkpoints live under this id, so a resumed group is always the same
    set of members; a differently composed group starts its own state.
    """
    return short_hash(
        {"key": train_group_key(cfgs[0]), "members": sorted(RunIds.of(c).train for c in cfgs)}
    )


def check_group(cfgs: Sequence[RunConfig]) -> None:
    """Refuse a member list that cannot share a forward (ValueError naming the fix)."""
    if not cfgs:
        raise ValueError("a train group needs at least one member")
    keys = {train_group_key(c) for c in cfgs}
    if len(keys) > 1:
        diffs = {
            name: sorted({str(getattr(c.train, name)) for c in cfgs})
            for name in STREAM_KEYS
            if len({getattr(c.train, name) for c in cfgs}) > 1
        }
        raise ValueError(
            "these points cannot train from one LM forward: they differ in the model, the "
            f"data or the stream settings {diffs or '(model/data)'}; group points only by "
            "interp.groups.train_group_key"
        )
    ids = [RunIds.of(c).train for c in cfgs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a train group lists the same training twice (train ids {ids})")
