"""What a dictionary returns: the sparse code of a batch (:class:`EncoderOutput`) and
the reconstruction, loss and statistics of a training batch (:class:`TrainOutput`).

Shapes: N tokens, E = ``d_out``, M = ``num_latents``, K active latents per token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch


class EncoderOutput(NamedTuple):
    """The sparse code of a batch of activations. An activation of 0 means "absent"."""

    top_acts: torch.Tensor
    """[..., K] float32 activations of the selected latents (>= 0, unsorted)."""

    top_idx: torch.Tensor
    """[..., K] int64 indices of the selected latents, in [0, num_latents)."""


@dataclass
class TrainOutput:
    """Reconstruction, loss and statistics of one training batch."""

    sae_out: torch.Tensor
    """[N, E] reconstruction of the target."""

    loss: torch.Tensor
    """Scalar to call ``.backward()`` on: FVU plus the architecture's penalties."""

    fvu: torch.Tensor
    """Scalar fraction of variance unexplained, sum(e^2) / sum((y - mean(y))^2) over the
    batch (sparsify's definition): scale-free, so no input normalisation is needed."""

    l0: torch.Tensor
    """Scalar float: mean number of active latents per token."""

    fired_M: torch.Tensor
    """[M] bool: latents active on at least one token of the batch (dead tracking)."""

    metrics: dict[str, torch.Tensor] = field(default_factory=dict)
    """Extra scalars (auxk, multi_topk_fvu, sparsity_loss, ...), detached."""

    code: EncoderOutput | None = None
    """[N, K] sparse code, when the architecture computes one (TopK)."""

    acts_NM: torch.Tensor | None = None
    """[N, M] dense code, when the architecture computes one (threshold architectures)."""

    @property
    def sparse_code(self) -> EncoderOutput:
        """The [N, K] sparse code (padded with zeros where a row has fewer active)."""
        if self.code is None:
            assert self.acts_NM is not None
            self.code = dense_to_sparse(self.acts_NM.detach())
        return self.code

    @property
    def top_acts(self) -> torch.Tensor:
        """[N, K] activations of the sparse code (the pre-interface name)."""
        return self.sparse_code.top_acts

    @property
    def top_idx(self) -> torch.Tensor:
        """[N, K] latent indices of the sparse code (the pre-interface name)."""
        return self.sparse_code.top_idx


ForwardOutput = TrainOutput
"""The name ``TopKSAE.forward`` returned before the interface; kept for callers."""


def dense_to_sparse(acts_NM: torch.Tensor) -> EncoderOutput:
    """[N, M] dense code -> [N, K] sparse code, K = the most active latents of any row
    (at least 1); shorter rows are padded with activation 0 (absent)."""
    k = max(1, int((acts_NM != 0).sum(-1).max().item())) if acts_NM.numel() else 1
    top_acts_NK, top_idx_NK = acts_NM.topk(min(k, acts_NM.shape[-1]), dim=-1, sorted=False)
    return EncoderOutput(top_acts_NK, top_idx_NK)
