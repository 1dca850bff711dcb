"""Where a latent's random-explanation control comes from (``interpret.control_source``).

``dictionary`` (the default): the source latent is drawn from the WHOLE dictionary's
alive latents (active tokens >= ``interpret.examples.min_examples``, the rule of
``interpret.latents=sample:N``), never the scored latent and never one that co-fires with
it. The rule: candidates come in a seeded random order (``(examples.seed, latent)``, so a
rerun draws the same source and the response cache answers it); the first whose
*overlap* with the scored latent is at most ``interpret.control_max_overlap`` is taken.
Overlap = active tokens the two share / the smaller of their active-token counts: a
broad "digits" latent firing on most of a numeric-pattern latent's tokens is excluded,
and so is a narrow latent living inside the scored one's tokens. Any selection, even of
one latent, gets a control. A source the range did not explain is explained for the
control from its own examples, like a real latent (one explainer call, charged to the
scored latent's ``control`` tokens; the record says ``explained_for_control``).

``range``: another explained latent of the same range, a fixed derangement
(:func:`interp.explain.derangement`), the behaviour before this key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

_STREAM = 0xC0  # independent of the selection's and the scorers' draws
MAX_TRIES = 64  # candidates checked before giving up (each reads one latent)


def overlap(tok_a: np.ndarray, tok_b: np.ndarray) -> float:
    """Shared active tokens / the smaller active-token count (0 if either is empty)."""
    if len(tok_a) == 0 or len(tok_b) == 0:
        return 0.0
    shared = len(np.intersect1d(tok_a, tok_b, assume_unique=True))
    return shared / min(len(tok_a), len(tok_b))


@dataclass(frozen=True)
class DictionaryPool:
    """The whole dictionary, as control sources: ``count_L`` active tokens per latent,
    ``fetch(latent)`` its one-latent CSR (``interp.store.csr.LatentCSR``: ``tok``
    ascending global token indices, ``val``, ``offsets``)."""

    count_L: np.ndarray
    min_count: int
    fetch: Callable[[int], Any]
    max_overlap: float
    seed: int

    def draw(self, latent: int, tok: np.ndarray) -> tuple[int | None, str | None]:
        """(source latent, None) or (None, why there is none) for ``latent`` with active
        tokens ``tok``; deterministic in (seed, latent, the store)."""
        alive = np.flatnonzero(np.asarray(self.count_L) >= self.min_count)
        alive = alive[alive != latent]
        if len(alive) == 0:
            return None, "no other alive latent in the dictionary"
        rng = np.random.default_rng((self.seed, latent, _STREAM))
        order = rng.permutation(alive)[:MAX_TRIES]
        for cand in order:
            if overlap(np.asarray(tok), np.asarray(self.fetch(int(cand)).tok)) <= self.max_overlap:
                return int(cand), None
        return None, (
            f"the {len(order)} alive latents drawn all co-fire with this one above "
            f"interpret.control_max_overlap={self.max_overlap}"
        )


def store_pool(reader: object, min_count: int, max_overlap: float, seed: int) -> DictionaryPool:
    """The pool of a compacted store (``interp.store.StoreReader``): its per-latent stats
    for the counts, one latent read per candidate."""
    count_L = np.asarray(reader.stats(0, reader.n_latents).count)  # type: ignore[attr-defined]

    def fetch(latent: int) -> Any:
        return reader.latent_range(latent, latent + 1)  # type: ignore[attr-defined]

    return DictionaryPool(count_L, min_count, fetch, max_overlap, seed)


@dataclass(frozen=True)
class ControlSource:
    """A scored latent's control: the source latent's work (None: ``error`` says why)
    and whether that latent was explained only for the control."""

    work: Any = None  # interp.interpret.work.LatentWork
    explained_for_control: bool = False
    error: str | None = None


def draw_sources(
    explained: list[Any], known: dict[int, Any], pool: DictionaryPool, tok_of: Callable
) -> tuple[dict[int, int | str], list[int]]:
    """Each explained latent -> its drawn source latent (or why none); and the sources
    that are not in ``known`` (the range's and reused latents), in first-drawn order."""
    drawn: dict[int, int | str] = {}
    extra: list[int] = []
    for w in explained:
        src, why = pool.draw(w.latent, tok_of(w.latent))
        drawn[w.latent] = src if src is not None else str(why)
        if src is not None and src not in known and src not in extra:
            extra.append(src)
    return drawn, extra


def resolve_sources(
    drawn: dict[int, int | str], known: dict[int, Any], extra: dict[int, Any]
) -> dict[int, ControlSource]:
    """The :class:`ControlSource` of every scored latent, from its drawn source's work."""
    out = {}
    for latent, src in drawn.items():
        if isinstance(src, str):
            out[latent] = ControlSource(error=src)
            continue
        work = known.get(src) or extra[src]
        if work.record.explanation is None:
            why = (work.record.error or work.record.status).strip().splitlines()[-1]
            out[latent] = ControlSource(
                error=f"control source latent {src} has no explanation ({why})"
            )
        else:
            out[latent] = ControlSource(work, explained_for_control=src not in known)
    return out
