"""Activation streaming: train windows -> subject model -> shuffle buffer -> SAE batches.

Shapes: B windows per LM forward, T = ctx_len, E = exclude_first, N vectors, W = the
summed width of every hookpoint the group reads (D_h for hookpoint h).

One LM forward captures every hookpoint the group needs; the hookpoints' vectors of one
token are concatenated side by side ([N, W]) and pass through the shuffle buffer
together, so one permutation shuffles them all and every member sees the same tokens in
the same order as it would alone. :class:`Columns` says which columns hold which
hookpoint.

Windows are read in order, ``lm_batch_size`` at a time, so the stream's whole state is
the index of the next window. The shuffle buffer mixes vectors from many windows (one
batch of whole windows is strongly correlated); its state is its contents and its
generator. Together they make a resumed run see exactly the batches an uninterrupted
one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from interp.models import SubjectModel


class Columns:
    """Column slices of each hookpoint in the concatenated [N, W] vectors."""

    def __init__(self, hookpoints: Sequence[str], widths: dict[str, int]) -> None:
        self.hookpoints = tuple(hookpoints)
        self.slices: dict[str, slice] = {}
        start = 0
        for name in self.hookpoints:
            self.slices[name] = slice(start, start + widths[name])
            start += widths[name]
        self.width = start

    def take(self, batch_NW: torch.Tensor, hookpoint: str) -> torch.Tensor:
        """[N, D_h] vectors of one hookpoint."""
        return batch_NW[:, self.slices[hookpoint]]


class ActivationStream:
    """Hookpoint vectors of ``windows`` [n, T], one LM batch at a time, in order.

    ``gather`` (distributed, hookpoint sharding) concatenates every rank's chunk so each
    rank's buffer receives the world's vectors.
    """

    def __init__(
        self,
        subject: SubjectModel,
        windows: np.ndarray,
        lm_batch_size: int,
        exclude_first: int,
        columns: Columns,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
        position: int = 0,
    ) -> None:
        self.subject = subject
        self.windows = windows
        self.lm_batch_size = lm_batch_size
        self.exclude_first = exclude_first
        self.columns = columns
        self.gather = gather
        self.position = position  # next window to read; always a multiple of lm_batch_size

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.windows)

    def next_chunk(self) -> torch.Tensor:
        """The next LM batch's vectors, positions >= exclude_first: [B * (T - E), W]."""
        assert not self.exhausted, "read past the end of the train split"
        stop = min(self.position + self.lm_batch_size, len(self.windows))
        ids_BT = torch.from_numpy(np.asarray(self.windows[self.position : stop], dtype=np.int64))
        self.position = stop
        captured = self.subject.capture(ids_BT)
        parts = [captured[h][:, self.exclude_first :] for h in self.columns.hookpoints]
        chunk_NW = torch.cat(parts, dim=-1).reshape(-1, self.columns.width)
        return self.gather(chunk_NW) if self.gather is not None else chunk_NW


class ShuffleBuffer:
    """A pool of vectors from which each batch is drawn uniformly without replacement.

    The pool is one preallocated tensor (grown when a push does not fit) holding
    ``len(self)`` vectors in its first rows: a pop copies the drawn rows out and moves
    undrawn rows from the end into the holes, so a step allocates only its batch (the
    previous gather-and-concatenate rebuilt the whole pool every step: ~400 MB of fresh
    memory and ~78k page faults per step on the benchmark's CPU). The generator lives
    on the CPU whatever the device, so the draw order (and hence resume) does not depend
    on the accelerator.
    """

    def __init__(self, width: int, seed: int, device: torch.device) -> None:
        self._pool_NW = torch.empty(0, width, device=device)
        self._n = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self._n

    @property
    def pool_NW(self) -> torch.Tensor:
        """The vectors in the pool (a view, in pool order)."""
        return self._pool_NW[: self._n]

    def push(self, vectors_NW: torch.Tensor) -> None:
        end = self._n + vectors_NW.shape[0]
        if end > self._pool_NW.shape[0]:
            grown = self._pool_NW.new_empty(max(end, 2 * self._pool_NW.shape[0]), self.width)
            grown[: self._n] = self._pool_NW[: self._n]
            self._pool_NW = grown
        self._pool_NW[self._n : end] = vectors_NW
        self._n = end

    @property
    def width(self) -> int:
        return self._pool_NW.shape[1]

    def pop(self, n: int) -> torch.Tensor:
        """``n`` vectors drawn at random; the rest stay in the pool."""
        assert n <= len(self), f"asked for {n} vectors, the pool holds {len(self)}"
        left = self._n - n
        drawn = torch.randperm(self._n, generator=self.generator)[:n]
        taken = torch.zeros(self._n, dtype=torch.bool)
        taken[drawn] = True
        holes = drawn[drawn < left]  # drawn rows that the kept rows must fill
        movers = torch.arange(left, self._n)[~taken[left:]]  # kept rows past the end
        device = self._pool_NW.device
        batch_NW = self._pool_NW[drawn.to(device)]
        if len(holes):
            self._pool_NW[holes.to(device)] = self._pool_NW[movers.to(device)]
        self._n = left
        return batch_NW

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool_NW.cpu(), "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pool = state["pool"]
        self._pool_NW = pool.to(self._pool_NW.device).clone()
        self._n = pool.shape[0]
        self.generator.set_state(state["rng"])


def usable_vectors(num_windows: int, ctx_len: int, exclude_first: int) -> int:
    """Vectors the train split yields: every window's positions >= exclude_first."""
    return num_windows * (ctx_len - exclude_first)
