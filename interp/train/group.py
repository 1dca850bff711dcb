"""Which sweep points can train from one LM forward pass (pure: no torch import).

A train *group* is a list of points whose dictionaries are trained together: one
subject-model forward per LM batch feeds every member's SAE. Members must read the same
activation stream: the same model, the same data (data id), and the same stream settings
(``train.num_tokens``, ``lm_batch_size``, ``batch_size``, ``buffer_batches``, ``seed``).
They may differ in hookpoint / layer, dictionary (any architecture) and optimiser
settings (lr, warmup). Each member then sees exactly the vectors, in exactly the order,
it would see alone (one shared shuffle over every hookpoint), so grouping changes how
many forwards are paid, never a member's result.
"""

from __future__ import annotations

from collections.abc import Sequence

from interp.config import RunConfig
from interp.groups import STREAM_KEYS, train_group_key
from interp.runs import RunIds, short_hash

__all__ = ["STREAM_KEYS", "check_group", "train_group_id", "train_group_key"]


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
            "interp.train.group.train_group_key"
        )
    ids = [RunIds.of(c).train for c in cfgs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a train group lists the same training twice (train ids {ids})")
