"""Activation streaming: train windows -> subject model -> shuffle buffer -> SAE batches.

Shapes: B windows per LM forward, T = ctx_len, E = exclude_first, D = d_in, N vectors.

Windows are read in order, ``lm_batch_size`` at a time, so the stream's whole state is
the index of the next window. The shuffle buffer mixes vectors from many windows (one
batch of whole windows is strongly correlated); its state is its contents and its
generator. Together they make a resumed run see exactly the batches an uninterrupted
one would.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from interp.models import SubjectModel


class ActivationStream:
    """Residual-stream vectors of ``windows`` [n, T], one LM batch at a time, in order."""

    def __init__(
        self,
        subject: SubjectModel,
        windows: np.ndarray,
        lm_batch_size: int,
        exclude_first: int,
        position: int = 0,
    ) -> None:
        self.subject = subject
        self.windows = windows
        self.lm_batch_size = lm_batch_size
        self.exclude_first = exclude_first
        self.position = position  # next window to read; always a multiple of lm_batch_size

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.windows)

    def next_chunk(self) -> torch.Tensor:
        """The next LM batch's vectors, positions >= exclude_first: [B * (T - E), D]."""
        assert not self.exhausted, "read past the end of the train split"
        stop = min(self.position + self.lm_batch_size, len(self.windows))
        ids_BT = torch.from_numpy(np.asarray(self.windows[self.position : stop], dtype=np.int64))
        self.position = stop
        hidden_BTD = self.subject.hidden(ids_BT)
        return hidden_BTD[:, self.exclude_first :].reshape(-1, hidden_BTD.shape[-1])


class ShuffleBuffer:
    """A pool of vectors from which each batch is drawn uniformly without replacement.

    The generator lives on the CPU whatever the device, so the draw order (and hence
    resume) does not depend on the accelerator.
    """

    def __init__(self, d_in: int, seed: int, device: torch.device) -> None:
        self.pool_ND = torch.empty(0, d_in, device=device)
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.pool_ND.shape[0]

    def push(self, vectors_ND: torch.Tensor) -> None:
        self.pool_ND = torch.cat([self.pool_ND, vectors_ND.to(self.pool_ND.device)])

    def pop(self, n: int) -> torch.Tensor:
        """``n`` vectors drawn at random; the rest stay in the pool."""
        assert n <= len(self), f"asked for {n} vectors, the pool holds {len(self)}"
        perm = torch.randperm(len(self), generator=self.generator).to(self.pool_ND.device)
        batch_ND = self.pool_ND[perm[:n]]
        self.pool_ND = self.pool_ND[perm[n:]]
        return batch_ND

    def state_dict(self) -> dict[str, Any]:
        return {"pool": self.pool_ND.cpu(), "rng": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool_ND = state["pool"].to(self.pool_ND.device)
        self.generator.set_state(state["rng"])


def usable_vectors(num_windows: int, ctx_len: int, exclude_first: int) -> int:
    """Vectors the train split yields: every window's positions >= exclude_first."""
    return num_windows * (ctx_len - exclude_first)
