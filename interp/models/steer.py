"""Steering a causal LM: add a vector at one hookpoint, measure the effect, generate.

The vector is added to the hookpoint's activation at the **last position of every
forward pass**. With a KV cache that is exactly "from the prompt's last token on": the
prompt is read unchanged, the first next-token distribution is the first one steered,
and every generated token is steered too (delphi's intervention adds at the last
position only and measures the next-token KL there; steering the generated tokens as
well keeps the effect from fading after one token).

Strength is expressed relative to the hookpoint: ``alpha = 1`` adds a vector as long as
the hookpoint's *typical norm* (mean L2 norm of its clean activations over the prompts,
the first position of each prompt left out: a BOS/attention-sink position has a norm
~100x the rest). So alphas are comparable across layers and models.

:func:`calibrate_alpha` searches alpha for a target mean KL(clean || steered) of the
next-token distributions (delphi: binary search in log10 space to ``kl_threshold``).

Legend: B prompts, T tokens, V vocabulary, D hookpoint width.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from interp.models.load import INPUT_SUFFIX, _first_tensor, hookpoint_patterns
from interp.models.placement import input_device

Prompt = Sequence[int]


@dataclass(frozen=True)
class Calibration:
    """Outcome of the search for a steering strength."""

    alpha: float  # strength in units of the hookpoint's typical norm
    kl: float  # mean KL(clean || steered) at that strength, nats
    target: float  # the KL asked for
    reached: bool  # |kl - target| <= rel_tol * target
    steps: int  # strengths tried (one batched forward each)
    trace: tuple[tuple[float, float], ...]  # (alpha, kl) in the order tried


def calibrate_alpha(
    kl_of: Callable[[float], float],
    target: float,
    *,
    rel_tol: float = 0.1,
    max_steps: int = 16,
    alpha0: float = 0.5,
    alpha_max: float = 64.0,
) -> Calibration:
    """Find alpha > 0 with ``kl_of(alpha)`` within ``rel_tol * target`` of ``target``.

    Assumes KL grows with alpha (it does near 0; far out it may saturate). Brackets the
    target by factors of 4 from ``alpha0``, then bisects geometrically (in log space:
    alphas span orders of magnitude). Stops after ``max_steps`` evaluations and returns
    the alpha tried whose KL is closest to the target, ``reached=False`` if outside the
    tolerance, e.g. when even ``alpha_max`` moves the distribution less than the target.
    """
    if target <= 0 or rel_tol <= 0 or max_steps < 1 or not 0 < alpha0 <= alpha_max:
        raise ValueError(
            f"calibrate_alpha: need target > 0, rel_tol > 0, max_steps >= 1 and "
            f"0 < alpha0 <= alpha_max (got {target}, {rel_tol}, {max_steps}, {alpha0}, "
            f"{alpha_max})"
        )
    lo, hi = 0.0, math.inf
    alpha, trace = alpha0, []
    for _ in range(max_steps):
        kl = float(kl_of(alpha))
        trace.append((alpha, kl))
        if abs(kl - target) <= rel_tol * target:
            break
        if kl < target:
            lo = alpha
            if lo >= alpha_max:
                break
            alpha = min(alpha * 4, float(alpha_max)) if math.isinf(hi) else math.sqrt(lo * hi)
        else:
            hi = alpha
            alpha = alpha / 4 if lo == 0 else math.sqrt(lo * hi)
    best_alpha, best_kl = min(trace, key=lambda ak: abs(ak[1] - target))
    return Calibration(
        alpha=best_alpha,
        kl=best_kl,
        target=target,
        reached=abs(best_kl - target) <= rel_tol * target,
        steps=len(trace),
        trace=tuple(trace),
    )


def _add_last(t: torch.Tensor, vector_D: torch.Tensor) -> torch.Tensor:
    out = t.clone()
    out[:, -1] += vector_D.to(dtype=t.dtype, device=t.device)
    return out


class SteerableLM:
    """A whole causal LM with one hookpoint that a vector can be added to.

    ``hookpoint`` is named like :mod:`interp.models.load` names them (``layers.N``, the
    residual stream after layer N; ``layers.N.mlp``; ``...:input`` for a module's input).
    Prompts are token-id lists; ``bos_id`` (if given) is put in front of each one that
    does not start with it, as the collect stage's windows start. Not thread-safe: one
    forward at a time (callers hold a lock).
    """

    def __init__(self, model: nn.Module, hookpoint: str, *, bos_id: int | None, pad_id: int):
        self.model = model.eval()
        self.hookpoint = hookpoint
        self.bos_id = bos_id
        self.pad_id = pad_id
        self.device = input_device(model)  # a model spread over devices: where it embeds
        base = getattr(model, model.base_model_prefix, model)
        name = hookpoint.removesuffix(INPUT_SUFFIX)
        try:
            self.module = base.get_submodule(name)
        except AttributeError:
            raise ValueError(
                f"unknown hookpoint {hookpoint!r}: {type(base).__name__} has no module "
                f"{name!r}. Its modules: {', '.join(hookpoint_patterns(base))}"
            ) from None
        self.on_input = hookpoint.endswith(INPUT_SUFFIX)
        params = inspect.signature(model.forward).parameters
        # transformers 5 renamed past_key_values to cache; older models keep the old name
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._last_only = {"logits_to_keep": 1} if "logits_to_keep" in params else {}
        eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos_ids = set(eos if isinstance(eos, list) else [] if eos is None else [eos])

    # ---------------------------------------------------------------- hooks
    @contextlib.contextmanager
    def steering(self, vector_D: torch.Tensor | None) -> Iterator[None]:
        """Add ``vector_D`` at the hookpoint's last position of every forward in the block.

        ``None`` adds nothing (no hook at all). The hook is removed on exit, also when
        the block raises.
        """
        if vector_D is None:
            yield
            return
        if self.on_input:

            def pre(_m: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
                if args:
                    return (_add_last(args[0], vector_D), *args[1:]), kwargs
                key = next(iter(kwargs))
                return args, {**kwargs, key: _add_last(kwargs[key], vector_D)}

            handle = self.module.register_forward_pre_hook(pre, with_kwargs=True)
        else:

            def post(_m: nn.Module, _inputs: Any, output: Any) -> Any:
                if isinstance(output, tuple):
                    return (_add_last(output[0], vector_D), *output[1:])
                if not isinstance(output, torch.Tensor):
                    raise ValueError(
                        f"hookpoint {self.hookpoint!r} outputs {type(output).__name__}, not a "
                        "tensor: steer a module whose output is the activation"
                    )
                return _add_last(output, vector_D)

            handle = self.module.register_forward_hook(post)
        try:
            yield
        finally:
            handle.remove()

    @contextlib.contextmanager
    def _capturing(self, into: list[torch.Tensor]) -> Iterator[None]:
        if self.on_input:

            def pre(_m: nn.Module, args: tuple, kwargs: dict) -> None:
                into.append(args[0] if args else next(iter(kwargs.values())))

            handle = self.module.register_forward_pre_hook(pre, with_kwargs=True)
        else:

            def post(_m: nn.Module, _inputs: Any, output: Any) -> None:
                into.append(_first_tensor(output))

            handle = self.module.register_forward_hook(post)
        try:
            yield
        finally:
            handle.remove()

    # ---------------------------------------------------------------- forward
    def batch(self, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, torch.Tensor]:
        """Left-padded ids_BT and attention mask_BT (every prompt ends at column -1)."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("steering needs at least one prompt, and no empty prompt")
        rows = [
            [self.bos_id, *map(int, p)]
            if self.bos_id is not None and int(p[0]) != self.bos_id
            else list(map(int, p))
            for p in prompts
        ]
        width = max(map(len, rows))
        ids_BT = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask_BT = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            ids_BT[i, width - len(r) :] = torch.tensor(r)
            mask_BT[i, width - len(r) :] = 1
        return ids_BT.to(self.device), mask_BT.to(self.device)

    def _forward(self, ids_BT: torch.Tensor, mask_BT: torch.Tensor, **kw: Any) -> Any:
        """Forward with positions counted from each row's first real token; logits of the
        last position only (all a caller here reads)."""
        pos_BT = (mask_BT.cumsum(-1) - 1).clamp(min=0)
        return self.model(
            input_ids=ids_BT, attention_mask=mask_BT, position_ids=pos_BT, **self._last_only, **kw
        )

    @torch.inference_mode()
    def width(self) -> int:
        """D: the hookpoint's width (one tiny forward)."""
        seen: list[torch.Tensor] = []
        with self._capturing(seen):
            self._forward(*self.batch([[self.pad_id]]), use_cache=False)
        return int(seen[0].shape[-1])

    @torch.inference_mode()
    def clean_pass(self, prompts: Sequence[Prompt]) -> tuple[torch.Tensor, float]:
        """Clean next-token log-probs lp_BV (float32) and the hookpoint's typical norm
        (mean L2 norm over real positions, each prompt's first position left out)."""
        return LastToken(self, prompts).clean()

    @torch.inference_mode()
    def next_token_logprobs(
        self, prompts: Sequence[Prompt], vector_D: torch.Tensor | None = None
    ) -> torch.Tensor:
        """lp_BV: log-probs (float32) of the token after each prompt, steered by vector_D
        (one plain forward over the whole prompts: the reference :class:`LastToken`
        must agree with)."""
        ids_BT, mask_BT = self.batch(prompts)
        with self.steering(vector_D):
            logits_B1V = self._forward(ids_BT, mask_BT, use_cache=False).logits
        return torch.log_softmax(logits_B1V[:, -1].float(), -1)

    @staticmethod
    def kl(clean_lp_BV: torch.Tensor, steered_lp_BV: torch.Tensor) -> float:
        """Mean over prompts of KL(clean || steered), nats."""
        kl_B = (clean_lp_BV.exp() * (clean_lp_BV - steered_lp_BV)).sum(-1)
        return float(kl_B.clamp(min=0).mean())

    def mean_kl(
        self, clean_lp_BV: torch.Tensor, prompts: Sequence[Prompt], vector_D: torch.Tensor
    ) -> float:
        """Mean over prompts of KL(clean || steered) of the next-token distribution, nats."""
        return self.kl(clean_lp_BV, self.next_token_logprobs(prompts, vector_D))

    def calibrate(
        self,
        prompts: Sequence[Prompt],
        direction_D: torch.Tensor,
        target_kl: float,
        **search: Any,
    ) -> tuple[Calibration, torch.Tensor]:
        """Strength of ``direction_D`` (normalised here) reaching ``target_kl`` on the
        prompts; returns the calibration and the steering vector alpha * norm * unit_D."""
        unit_D = direction_D.float() / direction_D.float().norm()
        last = LastToken(self, prompts)
        clean_lp_BV, norm = last.clean()
        cal = calibrate_alpha(
            lambda a: self.kl(clean_lp_BV, last(a * norm * unit_D)), target_kl, **search
        )
        return cal, cal.alpha * norm * unit_D

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Prompt],
        max_new_tokens: int,
        vector_D: torch.Tensor | None = None,
    ) -> list[list[int]]:
        """Greedy continuations (token ids, stopped at EOS, EOS left out), steered by
        ``vector_D`` from each prompt's last token on. Deterministic."""
        ids_BT, mask_BT = self.batch(prompts)
        n = len(prompts)
        done_B = torch.zeros(n, dtype=torch.bool, device=self.device)
        out: list[list[int]] = [[] for _ in range(n)]
        eos = torch.tensor(sorted(self.eos_ids), dtype=torch.long, device=self.device)
        with self.steering(vector_D):
            step = self._forward(ids_BT, mask_BT, use_cache=True)
            pos_B1 = (mask_BT.sum(-1, keepdim=True) - 1).clamp(min=0)
            for t in range(max_new_tokens):
                next_B = step.logits[:, -1].argmax(-1)
                done_B |= torch.isin(next_B, eos)
                for i in (~done_B).nonzero().flatten().tolist():
                    out[i].append(int(next_B[i]))
                if done_B.all() or t == max_new_tokens - 1:
                    break
                mask_BT = torch.cat([mask_BT, torch.ones_like(mask_BT[:, :1])], dim=1)
                pos_B1 = pos_B1 + 1
                cache = getattr(step, self._cache_kw)
                step = self.model(
                    input_ids=next_B[:, None],
                    attention_mask=mask_BT,
                    position_ids=pos_B1,
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
        return out


class LastToken:
    """Next-token log-probs after fixed prompts at any steering, computing every prompt
    token but the last only once.

    Steering touches the last position only, so the keys and values of the positions
    before it are the same at every strength: they are prefilled once into a KV cache,
    and each call runs the last token alone (B tokens instead of B x T), then crops the
    cache back. Falls back to a whole forward per call when a prompt has one token (its
    prefix would be all padding) or the model's cache cannot be cropped.
    """

    def __init__(self, lm: SteerableLM, prompts: Sequence[Prompt]) -> None:
        self.lm = lm
        self.prompts = prompts
        self.ids_BT, self.mask_BT = lm.batch(prompts)
        self.length = self.ids_BT.shape[1] - 1  # cached positions
        self.use_prefix = int(self.mask_BT.sum(-1).min()) >= 2
        self.pos_B1 = self.mask_BT.sum(-1, keepdim=True) - 1
        self.cache: Any = None

    @torch.inference_mode()
    def clean(self) -> tuple[torch.Tensor, float]:
        """(lp_BV unsteered, the hookpoint's typical norm over the prompts' positions but
        each one's first)."""
        seen: list[torch.Tensor] = []
        self.cache = None  # the prefill's activations are part of the norm
        with self.lm._capturing(seen):
            lp_BV = self(None)
        h_BTD = torch.cat([t.float() for t in seen], dim=1)  # prefix + last, or one whole
        keep_BT = self.mask_BT.bool() & (self.mask_BT.cumsum(-1) > 1)
        if not keep_BT.any():  # one-token prompts: nothing but the first position
            keep_BT = self.mask_BT.bool()
        return lp_BV, float(h_BTD.norm(dim=-1)[keep_BT].mean())

    @torch.inference_mode()
    def __call__(self, vector_D: torch.Tensor | None) -> torch.Tensor:
        """lp_BV (float32) after each prompt, steered by vector_D at the last token."""
        lm = self.lm
        if not self.use_prefix:
            with lm.steering(vector_D):
                logits = lm._forward(self.ids_BT, self.mask_BT, use_cache=False).logits
            return torch.log_softmax(logits[:, -1].float(), -1)
        if self.cache is None:
            out = lm._forward(self.ids_BT[:, :-1], self.mask_BT[:, :-1], use_cache=True)
            self.cache = getattr(out, lm._cache_kw)
        with lm.steering(vector_D):
            logits = lm.model(
                input_ids=self.ids_BT[:, -1:],
                attention_mask=self.mask_BT,
                position_ids=self.pos_B1,
                use_cache=True,
                **lm._last_only,
                **{lm._cache_kw: self.cache},
            ).logits
        if getattr(self.cache, "crop", None) is not None:
            # a negative count drops that many tokens in old and new transformers alike
            self.cache.crop(-(self.cache.get_seq_length() - self.length))
        else:  # cannot undo the appended token: prefill again next time
            self.cache = None
        return torch.log_softmax(logits[:, -1].float(), -1)
