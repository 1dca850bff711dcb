"""Read latent activations and token ids from a store, compacted or not.

Latent ranges come from compacted range groups where they exist (one contiguous read
per array) and from a merge of the slice groups elsewhere, so a store is readable
as soon as collect has committed, and fast once compact has.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from interp.store.compact import merge_slices
from interp.store.csr import (
    LatentActs,
    LatentCSR,
    LatentStats,
    compute_stats,
    concat_ranges,
    empty_csr,
)
from interp.store.format import (
    RangeInfo,
    StoreMeta,
    committed_ranges,
    committed_slices,
    open_group,
    read_array,
    read_part,
    read_store_meta,
)

log = logging.getLogger(__name__)


class StoreReader:
    """A snapshot of the committed groups of one store, taken when it is constructed.

    Groups are immutable once committed, so the snapshot stays valid; build a new
    reader to see groups committed later.
    """

    def __init__(self, store_dir: Path) -> None:
        self.store_dir = Path(store_dir)
        self.meta: StoreMeta | None = read_store_meta(self.store_dir)
        self.slices = committed_slices(self.store_dir)
        self.ranges = committed_ranges(self.store_dir)

    @property
    def n_latents(self) -> int:
        if self.meta is not None:
            return self.meta.n_latents
        counts = {s.n_latents for s in self.slices}
        if len(counts) != 1:
            raise ValueError(
                f"{self.store_dir}: no store.json and slices report n_latents {sorted(counts)}: "
                "run collect first"
            )
        return counts.pop()

    @property
    def n_tokens(self) -> int:
        """Tokens the store is meant to hold (store.json), else those committed so far."""
        if self.meta is not None:
            return self.meta.n_tokens
        return max((s.token_stop for s in self.slices), default=0)

    def token_ids(self) -> np.ndarray:
        """Token id of every global token index ``[0, n_tokens)`` (whole-slice reads)."""
        gaps = self.missing_tokens()
        if gaps:
            raise ValueError(
                f"{self.store_dir}: tokens {_fmt(gaps)} have no committed slice, so global "
                "token indices cannot be mapped to ids: rerun the missing collect tasks"
            )
        if not self.slices:
            return np.empty(0, np.uint32)
        return np.concatenate([read_array(open_group(s.path), "tokens") for s in self.slices])

    def missing_tokens(self) -> list[tuple[int, int]]:
        """Token intervals of ``[0, n_tokens)`` no committed slice covers."""
        gaps, pos = [], 0
        for s in self.slices:
            if s.token_start > pos:
                gaps.append((pos, s.token_start))
            pos = max(pos, s.token_stop)
        if pos < self.n_tokens:
            gaps.append((pos, self.n_tokens))
        return gaps

    def latent_range(self, a: int, b: int) -> LatentCSR:
        """Every activation of latents ``[a, b)``; offsets are relative to ``a``."""
        self._check_range(a, b)
        parts = []
        for lo, hi, rng in self._plan(a, b):
            if rng is not None:
                parts.append(read_part(rng.path, lo, hi, first=rng.latent_start))
            else:
                parts.append(self._from_slices(lo, hi))
        return concat_ranges(parts)

    def latent(self, latent: int) -> LatentActs:
        """Every activation of one latent: global token indices and values."""
        return self.latent_range(latent, latent + 1).latent(0)

    def stats(self, a: int, b: int) -> LatentStats:
        """Per-latent stats of ``[a, b)``: stored ones where compacted, else computed."""
        self._check_range(a, b)
        parts = []
        for lo, hi, rng in self._plan(a, b):
            if rng is None:
                parts.append(compute_stats(self._from_slices(lo, hi)))
                continue
            group = open_group(rng.path)
            i, j = lo - rng.latent_start, hi - rng.latent_start
            parts.append(LatentStats(*(read_array(group, f, i, j) for f in LatentStats._fields)))
        return LatentStats(*(np.concatenate(col) for col in zip(*parts)))

    # ------------------------------------------------------------------------ internals

    def _check_range(self, a: int, b: int) -> None:
        if not 0 <= a < b <= self.n_latents:
            raise ValueError(
                f"latent range [{a}, {b}) must be non-empty within [0, {self.n_latents})"
            )

    def _plan(self, a: int, b: int) -> list[tuple[int, int, RangeInfo | None]]:
        """Split ``[a, b)`` into pieces served by one range group each, or by the slices."""
        plan: list[tuple[int, int, RangeInfo | None]] = []
        pos = a
        while pos < b:
            covering = [r for r in self.ranges if r.latent_start <= pos < r.latent_stop]
            if covering:
                rng = max(covering, key=lambda r: r.latent_stop)
                stop = min(b, rng.latent_stop)
                plan.append((pos, stop, rng))
            else:
                later = [r.latent_start for r in self.ranges if r.latent_start > pos]
                stop = min([b, *later])
                plan.append((pos, stop, None))
            pos = stop
        return plan

    def _from_slices(self, lo: int, hi: int) -> LatentCSR:
        if not self.slices:
            return empty_csr(hi - lo)
        gaps = self.missing_tokens()
        if gaps:
            log.warning(
                "latents [%d, %d) read from an incomplete store: tokens %s not collected yet",
                lo, hi, gaps,
            )  # fmt: skip
        return merge_slices(self.slices, lo, hi)


def _fmt(intervals: list[tuple[int, int]]) -> str:
    return ", ".join(f"[{a}, {b})" for a, b in intervals)
