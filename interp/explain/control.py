"""The random-explanation control: score another latent's explanation like the real one.

A latent's control explanation is the explanation of a different latent of the same
range, chosen by a fixed derangement (a permutation without fixed points) of the
range's explained latents: every explanation is used as a control exactly once, no
latent gets its own, and the choice depends only on (seed, the latents), so a rerun
picks the same pairs and the response cache answers them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def derangement(latents: Sequence[int], seed: int | Sequence[int]) -> dict[int, int]:
    """latent -> source latent of its control explanation; {} with fewer than 2 latents.

    Sattolo's shuffle draws a uniformly random single cycle over ``latents``, so no
    latent maps to itself. Deterministic in (``seed``, ``latents``).
    """
    items = list(latents)
    if len(set(items)) != len(items):
        raise ValueError("derangement needs distinct latents")
    if len(items) < 2:
        return {}
    rng = np.random.default_rng(seed)
    perm = list(range(len(items)))
    for i in range(len(perm) - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i, never i itself: one cycle
        perm[i], perm[j] = perm[j], perm[i]
    return {items[i]: items[perm[i]] for i in range(len(items))}
