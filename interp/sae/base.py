"""The sparse-dictionary interface every architecture implements, and what they share.

Shapes: N tokens, D = ``d_in``, E = ``d_out`` (== D unless a transcoder), M =
``num_latents``, K active latents per token in a sparse code. Tensor names end in their
shape (``x_ND``, ``W_dec`` is [M, E]).

Every architecture has sparsify's four tensors, under sparsify's names, plus its own:

    encoder.weight [M, D]   encoder rows (sparsify's nn.Linear layout; SAELens's W_enc.T)
    encoder.bias   [M]      encoder bias (Gated: the gate bias b_gate)
    W_dec          [M, E]   decoder rows
    b_dec          [E]      decoder bias; subtracted from the input first unless transcoding

so ``pre_NM = (x_ND - b_dec) @ encoder.weight.T + encoder.bias`` is common to all. A
transcoder (``transcode=True``) reads x at one hookpoint and reconstructs y at another:
no b_dec is subtracted from x (b_dec lives in the output space), E may differ from D.

Training calls, per step::

    sae.init_from_batch(x, y)                  # first step only: data-dependent init
    out = sae(x, y, dead_mask=dead_M, step=s)  # TrainOutput
    out.loss.backward()
    sae.before_optimizer_step()                # e.g. project out decoder-parallel grads
    optimizer.step()
    sae.after_optimizer_step()                 # e.g. renormalise decoder rows
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

# The shared types and losses live in outputs.py / losses.py; re-exported for importers.
from interp.sae.losses import auxk_loss as auxk_loss
from interp.sae.losses import fraction_of_variance_unexplained
from interp.sae.losses import geometric_median as geometric_median
from interp.sae.losses import sum_squared_error as sum_squared_error
from interp.sae.losses import total_variance as total_variance
from interp.sae.losses import warmup_factor as warmup_factor
from interp.sae.outputs import EncoderOutput, TrainOutput
from interp.sae.outputs import ForwardOutput as ForwardOutput
from interp.sae.outputs import dense_to_sparse as dense_to_sparse
from interp_kernels.topk import Backend, topk_decode

log = logging.getLogger(__name__)

BDecInit = Literal["mean", "geometric_median", "zeros"]


@dataclass(frozen=True)
class NoHyperparameters:
    """The ``Config`` of an architecture without hyperparameters of its own."""


def _check_shape(d_in: int, num_latents: int, d_out: int, transcode: bool, b_dec_init: str) -> None:
    if d_in <= 0 or num_latents <= 0 or d_out <= 0:
        raise ValueError(f"d_in={d_in}, d_out={d_out} and num_latents={num_latents} must be > 0")
    if d_out != d_in and not transcode:
        raise ValueError(
            f"d_out={d_out} differs from d_in={d_in}: only a transcoder (transcode=True) "
            "reconstructs a different width"
        )
    if b_dec_init not in ("mean", "geometric_median", "zeros"):
        raise ValueError(f"b_dec_init={b_dec_init!r}: use mean, geometric_median or zeros")


class SparseCoder(nn.Module):
    """Base of every dictionary: shared parameters, init, decoder constraint, decode.

    Subclasses set ``architecture`` and implement ``_encode_flat`` ([N, D] -> sparse code)
    and ``_train_forward`` ([N, D], [N, E] -> TrainOutput).
    """

    architecture: ClassVar[str]
    Config: ClassVar[type] = NoHyperparameters
    """The architecture's hyperparameters (its part of SAEConfig): constructor arguments
    after ``num_latents`` bind to its fields, and each becomes an attribute."""
    default_normalize_decoder: ClassVar[bool] = True
    lr_scale: float = 1.0
    """Multiplier of the trainer's learning rate for every parameter (set by build_sae
    from ``SAEConfig.lr_scale``; training-only, not saved)."""

    def __init__(
        self,
        d_in: int,
        num_latents: int,
        *args: Any,
        d_out: int | None = None,
        transcode: bool = False,
        normalize_decoder: bool | None = None,
        b_dec_init: BDecInit = "mean",
        backend: Backend = "torch",
        generator: torch.Generator | None = None,
        device: str | torch.device | None = None,
        params: Any = None,
        **kwargs: Any,
    ) -> None:
        """A dictionary of ``num_latents`` latents over ``d_in``-wide inputs, initialised
        from ``generator`` only. Its hyperparameters come as ``params`` (a ``Config``) or
        as ``Config``'s fields, positionally or by name (``TopKSAE(D, M, 32)``)."""
        super().__init__()
        if params is None:
            params = self.Config(*args, **kwargs)
        elif args or kwargs:
            raise TypeError("pass the hyperparameters either as params or as arguments")
        d_out = d_in if d_out is None else d_out
        if normalize_decoder is None:
            normalize_decoder = self.default_normalize_decoder
        _check_shape(d_in, num_latents, d_out, transcode, b_dec_init)
        self.d_in, self.d_out, self.num_latents = d_in, d_out, num_latents
        self.transcode = transcode
        self.normalize_decoder = normalize_decoder
        self.b_dec_init: BDecInit = b_dec_init
        self.backend: Backend = backend
        # skip_init: initialise from `generator` only, never from the global RNG.
        device = torch.device("cpu") if device is None else torch.device(device)
        self.encoder = nn.utils.skip_init(nn.Linear, d_in, num_latents, device=device)
        self.W_dec = nn.Parameter(torch.empty(num_latents, d_out, device=device))
        self.b_dec = nn.Parameter(torch.zeros(d_out, device=device))
        for f in dataclasses.fields(params):
            setattr(self, f.name, getattr(params, f.name))
        self._init_architecture(device)
        self.reset_parameters(generator)

    def _init_architecture(self, device: torch.device) -> None:
        """Checks against the width and the architecture's own tensors (hyperparameters
        are attributes already); ``reset_parameters`` runs next."""

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """nn.Linear's default (Kaiming-uniform) encoder, zero biases, and the decoder tied
        to the encoder (W_dec = encoder.weight, rows unit-norm): sparsify's init, which
        keeps most latents alive. A transcoder's decoder starts at zero (sparsify).

        Random numbers come from ``generator`` (a CPU one; default: seed 0), drawn on the
        CPU, so the global RNG is never touched and every device gets the same init.
        """
        generator = torch.Generator().manual_seed(0) if generator is None else generator
        weight_MD = torch.empty(self.encoder.weight.shape, dtype=self.encoder.weight.dtype)
        nn.init.kaiming_uniform_(weight_MD, a=math.sqrt(5), generator=generator)
        self.encoder.weight.copy_(weight_MD)
        self.encoder.bias.zero_()
        self.b_dec.zero_()
        if self.transcode:
            self.W_dec.zero_()
        else:
            self.W_dec.copy_(self.encoder.weight)
            self.set_decoder_norm_to_unit_norm()

    @torch.no_grad()
    def init_from_batch(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Data-dependent init from the first batch x [N, D] (target y [N, E]).

        b_dec = mean, geometric median or zero of the target (``b_dec_init``), so the
        encoder sees centred inputs. A transcoder also sets b_enc = -mean(x) @ W_enc^T.
        """
        x_ND, y_NE = self._flatten(x, y)
        if self.b_dec_init == "mean":
            self.b_dec.copy_(y_NE.mean(0))
        elif self.b_dec_init == "geometric_median":
            self.b_dec.copy_(geometric_median(y_NE).to(self.b_dec.dtype))
        if self.transcode:
            self.encoder.bias.copy_(-(x_ND.mean(0) @ self.encoder.weight.T))

    # ------------------------------------------------------------------ encode / decode
    def _center(self, x_ND: torch.Tensor) -> torch.Tensor:
        return x_ND if self.transcode else x_ND - self.b_dec

    def pre_acts(self, x_ND: torch.Tensor) -> torch.Tensor:
        """[N, M] pre-activations (x - b_dec) @ encoder.weight.T + encoder.bias."""
        return F.linear(self._center(x_ND), self.encoder.weight, self.encoder.bias)

    def _check_width(self, x: torch.Tensor, attr: str, name: str) -> None:
        width = getattr(self, attr)
        if x.shape[-1] != width:
            raise ValueError(
                f"{name} has width {x.shape[-1]} but this {self.architecture} dictionary "
                f"has {attr}={width}"
            )

    def _flatten(
        self, x: torch.Tensor, y: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check_width(x, "d_in", "x")
        x_ND = x.reshape(-1, self.d_in).to(self.W_dec.dtype)
        if y is None:
            if self.transcode:
                raise ValueError("a transcoder needs its target y (the output hookpoint)")
            return x_ND, x_ND
        self._check_width(y, "d_out", "y")
        y_NE = y.reshape(-1, self.d_out).to(self.W_dec.dtype)
        if y_NE.shape[0] != x_ND.shape[0]:
            raise ValueError(f"x has {x_ND.shape[0]} vectors but y has {y_NE.shape[0]}")
        return x_ND, y_NE

    def encode(self, x: torch.Tensor) -> EncoderOutput:
        """Sparse code of activations x [..., D] (cast to float32): [..., K] each.

        K is ``max_active`` when that is set (TopK), else the most active latents of any
        token in this batch, rows padded with activation 0 (absent).
        """
        self._check_width(x, "d_in", "x")
        x_ND = x.reshape(-1, self.d_in).to(self.W_dec.dtype)
        acts_NK, idx_NK = self._encode_flat(x_ND)
        lead = x.shape[:-1]
        return EncoderOutput(acts_NK.reshape(*lead, -1), idx_NK.reshape(*lead, -1))

    def _encode_flat(self, x_ND: torch.Tensor) -> EncoderOutput:
        raise NotImplementedError

    def decode(self, top_acts: torch.Tensor, top_idx: torch.Tensor) -> torch.Tensor:
        """Reconstruction [..., E] (b_dec included) from a sparse code [..., K]."""
        lead = top_acts.shape[:-1]
        out_NE = topk_decode(
            top_idx.reshape(-1, top_idx.shape[-1]),
            top_acts.reshape(-1, top_acts.shape[-1]),
            self.W_dec,
            backend=self.backend,
        )
        return (out_NE + self.b_dec).reshape(*lead, self.d_out)

    def decode_dense(self, acts_NM: torch.Tensor) -> torch.Tensor:
        """[N, E] reconstruction from a dense [N, M] code (b_dec included)."""
        return acts_NM @ self.W_dec + self.b_dec

    @property
    def max_active(self) -> int | None:
        """Upper bound on K of :meth:`encode`, or None when it depends on the data."""
        return None

    # ------------------------------------------------------------------ training
    def forward(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        dead_mask: torch.Tensor | None = None,
        step: int = 0,
    ) -> TrainOutput:
        """Training forward on x [N, D] against target y [N, E] (default: x).

        Leading dimensions are flattened first, so the FVU denominator is the variance
        around the mean over all N vectors. ``dead_mask`` [M] bool marks the latents the
        trainer counts as dead (used by AuxK); ``step`` drives penalty warmups.
        """
        x_ND, y_NE = self._flatten(x, y)
        if dead_mask is not None and dead_mask.shape != (self.num_latents,):
            raise ValueError(
                f"dead_mask has shape {tuple(dead_mask.shape)}, expected ({self.num_latents},)"
            )
        return self._train_forward(x_ND, y_NE, dead_mask, step)

    def _train_forward(
        self, x_ND: torch.Tensor, y_NE: torch.Tensor, dead_M: torch.Tensor | None, step: int
    ) -> TrainOutput:
        raise NotImplementedError

    def _dense_output(
        self,
        acts_NM: torch.Tensor,
        y_NE: torch.Tensor,
        loss_terms: dict[str, torch.Tensor],
        sae_out_NE: torch.Tensor | None = None,
    ) -> TrainOutput:
        """TrainOutput of a dense code: FVU + the weighted penalty terms already in
        ``loss_terms`` (name -> weighted scalar, also logged)."""
        sae_out_NE = self.decode_dense(acts_NM) if sae_out_NE is None else sae_out_NE
        fvu = fraction_of_variance_unexplained(y_NE, sae_out_NE)
        active_NM = acts_NM > 0
        loss = fvu + sum(loss_terms.values(), fvu.new_zeros(()))
        return TrainOutput(
            sae_out=sae_out_NE,
            loss=loss,
            fvu=fvu,
            l0=active_NM.sum(-1).float().mean(),
            fired_M=active_NM.any(0),
            metrics={name: t.detach() for name, t in loss_terms.items()},
            acts_NM=acts_NM,
        )

    def lr_scales(self) -> dict[str, float]:
        """Per-parameter learning-rate multipliers (name -> scale); absent names get 1."""
        return {}

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Optimizer parameter groups: ``torch.optim.Adam(sae.param_groups(lr))``.

        Every parameter gets ``lr * lr_scale``, times its entry in :meth:`lr_scales`
        (e.g. JumpReLU thresholds, which Adam moves by about lr per step whatever
        their scale).
        """
        scales = self.lr_scales()
        unknown = set(scales) - {name for name, _ in self.named_parameters()}
        assert not unknown, f"lr_scales names no parameter: {sorted(unknown)}"
        groups: dict[float, list[nn.Parameter]] = {}
        for name, p in self.named_parameters():
            groups.setdefault(scales.get(name, 1.0), []).append(p)
        return [{"params": ps, "lr": lr * self.lr_scale * scale} for scale, ps in groups.items()]

    def decoder_norms(self) -> torch.Tensor:
        """[M] L2 norm of every decoder row."""
        return self.W_dec.norm(dim=1)

    def before_optimizer_step(self) -> None:
        """Project out decoder-parallel gradients when decoder rows are kept unit-norm."""
        if self.normalize_decoder:
            self.remove_gradient_parallel_to_decoder_directions()

    def after_optimizer_step(self) -> None:
        """Renormalise decoder rows when the architecture constrains them."""
        if self.normalize_decoder:
            self.set_decoder_norm_to_unit_norm()

    @torch.no_grad()
    def set_decoder_norm_to_unit_norm(self) -> None:
        """Renormalise every decoder row to unit L2 norm so activation magnitudes, not
        decoder norms, carry the scale (all-zero rows stay zero)."""
        eps = torch.finfo(self.W_dec.dtype).eps
        norm_M1 = self.W_dec.norm(dim=1, keepdim=True)
        self.W_dec /= norm_M1 + eps

    @torch.no_grad()
    def remove_gradient_parallel_to_decoder_directions(self) -> None:
        """Project out of W_dec.grad its component along each (unit-norm) decoder row,
        so Adam does not spend its step growing norms that renormalisation undoes."""
        if self.W_dec.grad is None:
            return
        # vecdot and addcmul_: no [M, E] temporaries (the grad is updated in place).
        parallel_M1 = torch.linalg.vecdot(self.W_dec.grad, self.W_dec, dim=1).unsqueeze(1)
        self.W_dec.grad.addcmul_(parallel_M1, self.W_dec, value=-1)

    # ------------------------------------------------------------------ export
    def to_inference(self) -> SparseCoder:
        """The dictionary to save for collection (BatchTopK -> JumpReLU; others: self)."""
        return self

    def config_dict(self) -> dict[str, Any]:
        """Constructor arguments that rebuild this dictionary (JSON-serialisable)."""
        return {
            "architecture": self.architecture,
            "d_in": self.d_in,
            "d_out": self.d_out,
            "num_latents": self.num_latents,
            "transcode": self.transcode,
            "normalize_decoder": self.normalize_decoder,
            "b_dec_init": self.b_dec_init,
            **self._hyperparameters(),
        }

    def _hyperparameters(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self.Config)}

    def extra_repr(self) -> str:
        extra = ", ".join(f"{k}={v}" for k, v in self._hyperparameters().items())
        tc = f", d_out={self.d_out}, transcode=True" if self.transcode else ""
        return f"d_in={self.d_in}, num_latents={self.num_latents}{tc}, {extra}".rstrip(", ")
