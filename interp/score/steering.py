"""The intervention scorer's subject: the LM plus the run's dictionary decoder, steering
one latent at a time (the ``subject`` resource, loaded once per interpret task).

:class:`Subject` calibrates a latent's steering strength to a target KL and generates
clean and steered greedy continuations (:mod:`interp.models.steer`), memoised per
latent so an explanation and its controls share one steering. The scorer itself is
:mod:`interp.score.intervention`.

Legend: P prompts, M latents, D hookpoint width.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from interp.models.steer import Calibration, SteerableLM

if TYPE_CHECKING:
    import torch

    from interp.score.context import ResourceInputs

log = logging.getLogger(__name__)

CACHE_LATENTS = 256  # steering results kept per task (an explanation + its controls reuse one)


@dataclass(frozen=True)
class Steered:
    """One latent steered on a set of prompts (independent of any explanation)."""

    calibration: Calibration
    steer_norm: float  # L2 norm of the vector added
    prompts: list[str]  # [P] decoded prompts (BOS dropped)
    clean: list[str]  # [P] greedy continuations
    steered: list[str]  # [P] greedy continuations with the latent turned up


class Subject:
    """The subject LM plus the decoder rows of the run's dictionary, for steering.

    ``W_dec_MD`` (float32, on the LM's device) holds one direction per latent in the
    width of ``lm.hookpoint``. ``steer`` is thread-safe (one forward at a time) and
    memoises its result per (latent, prompts, settings).
    """

    def __init__(self, lm: SteerableLM, tokenizer: Any, W_dec_MD: torch.Tensor) -> None:
        width = lm.width()
        if W_dec_MD.shape[-1] != width:
            raise ValueError(
                f"the dictionary writes vectors of width {W_dec_MD.shape[-1]} but hookpoint "
                f"{lm.hookpoint!r} has width {width}: steer at the dictionary's output "
                "hookpoint (cfg.target)"
            )
        self.lm = lm
        self.tokenizer = tokenizer
        self.W_dec_MD = W_dec_MD.float().to(lm.device)
        self._lock = threading.Lock()
        self._memo: OrderedDict[tuple, Steered] = OrderedDict()

    @property
    def num_latents(self) -> int:
        return int(self.W_dec_MD.shape[0])

    def tokenize(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def steer(self, latent: int, prompts: list[list[int]], kl: float, new_tokens: int) -> Steered:
        """Calibrate ``latent`` to ``kl`` on ``prompts`` and generate clean and steered."""
        if not 0 <= latent < self.num_latents:
            raise ValueError(
                f"latent {latent} is outside the dictionary's 0..{self.num_latents - 1}"
            )
        key = (latent, tuple(map(tuple, prompts)), kl, new_tokens)
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
            row_D = self.W_dec_MD[latent]
            if not float(row_D.norm()) > 0:
                raise ValueError(f"latent {latent} has a zero decoder row: nothing to steer")
            cal, vector_D = self.lm.calibrate(prompts, row_D, kl)
            clean = self.lm.generate(prompts, new_tokens)
            steered = self.lm.generate(prompts, new_tokens, vector_D)
            out = Steered(
                cal,
                float(vector_D.norm()),
                [self.decode(list(p)) for p in prompts],
                [self.decode(c) for c in clean],
                [self.decode(s) for s in steered],
            )
            self._memo[key] = out
            while len(self._memo) > CACHE_LATENTS:
                self._memo.popitem(last=False)
        log.debug("latent %d steered: alpha %.3g, KL %.3g", latent, cal.alpha, cal.kl)
        return out

    def close(self) -> None:
        """Drop the LM and the decoder (the interpret task's resources close this)."""
        self._memo.clear()
        self.lm = None  # type: ignore[assignment]
        self.W_dec_MD = None  # type: ignore[assignment]


def load_subject(inputs: ResourceInputs) -> Subject:
    """The run's subject model (whole LM, ``inputs.model``) and its trained dictionary's
    decoder (``inputs.sae_dir``), steering at the dictionary's output hookpoint."""
    from interp.models import load_causal_lm, load_tokenizer
    from interp.sae import load_sae

    m = inputs.model
    model = load_causal_lm(m.name, m.dtype, m.device, placement=m)
    tokenizer = load_tokenizer(m.name)
    sae = load_sae(inputs.sae_dir, device="cpu")
    W_dec_MD = sae.W_dec.detach().float()
    del sae  # the encoder is not needed
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    lm = SteerableLM(
        model, inputs.target, bos_id=bos if inputs.prepend_bos else None, pad_id=int(pad or 0)
    )
    log.info(
        "intervention subject: %s (%s) steering %d latents at %s",
        m.name, m.dtype, W_dec_MD.shape[0], inputs.target,
    )  # fmt: skip
    return Subject(lm, tokenizer, W_dec_MD)
