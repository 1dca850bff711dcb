"""In-process transformers backend (CPU or one GPU), built around prompt-prefix reuse.

On CPU the prompt is the budget (Qwen2.5-1.5B prefills ~90 tok/s on 2 cores), and the
scorers' prompts differ only in their last part (instructions and explanation first,
the example last). So:

* ``next_token_logprobs`` runs the longest common token prefix of its prompts once and
  the suffixes in batches of ``score_batch_size`` against that prefix's KV cache.
  Suffixes are right-padded, without a padding mask: under causal attention the last
  real token never sees the padding, so its logits equal an unpadded, unbatched
  forward (a test checks it).
* A small LRU of prefix KV caches survives across calls, so the system prompt shared
  by every latent's scorer calls, or an explainer prompt and its retry, run once.
* ``continuation_logprobs`` teacher-forces a reply after the chat prompt: the prompt
  comes from the prefix store (the scorers' prompts repeat across examples), the reply
  is one forward against it. The reply is tokenized on its own and appended to the
  templated prompt's ids (the assistant turn opens after a newline, where no tokenizer
  merges across), so ``tokens`` are exactly the reply's tokens.

Model calls are blocking; they run in a worker thread, one at a time, behind an
``asyncio.Lock``, so concurrent scorers interleave without racing on the model.
Legend: ``B`` batch, ``T`` suffix length, ``P`` prefix length, ``V`` vocab.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from typing import Any

import numpy as np
import torch

from interp.llm.base import ChoiceLogprobs, Generation, Message, TextLogprobs, check_messages
from interp.llm.config import LLMConfig

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), [B, H, P, Dh]


class PrefixKVStore:
    """The KV caches of a few recent prompt prefixes, most recently used last."""

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._entries: list[tuple[np.ndarray, KV]] = []

    def longest(self, ids: np.ndarray) -> tuple[int, KV | None]:
        """Longest stored prefix of ``ids``: (its length, its KV sliced to that length)."""
        best, best_i = 0, -1
        for i, (stored, _) in enumerate(self._entries):
            n = common_prefix_len(stored, ids)
            if n > best:
                best, best_i = n, i
        if best_i < 0:
            return 0, None
        entry = self._entries.pop(best_i)
        self._entries.append(entry)  # refresh its recency
        return best, [(k[:, :, :best], v[:, :, :best]) for k, v in entry[1]]

    def add(self, ids: np.ndarray, kv: KV) -> None:
        self._entries = [e for e in self._entries if common_prefix_len(e[0], ids) < len(e[0])]
        self._entries.append((ids.copy(), kv))
        del self._entries[: -self.max_entries]


def common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    """Number of leading positions where the token arrays agree."""
    m = min(len(a), len(b))
    diff = np.flatnonzero(a[:m] != b[:m])
    return int(diff[0]) if len(diff) else m


class TransformersClient:
    """``LLMClient`` running a Hugging Face causal LM in this process.

    The model loads on the first call that needs it, so a rerun answered entirely from
    the response cache never loads it.
    """

    def __init__(self, cfg: LLMConfig, *, prefix_entries: int = 4) -> None:
        self.cfg = cfg
        self.model_id = f"{cfg.model}@{cfg.dtype}"
        self._prefixes = PrefixKVStore(prefix_entries)
        self._model: Any = None
        self._tok: Any = None
        self._load_lock = threading.Lock()
        self._call_locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    # ------------------------------------------------------------------ public (async)
    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        check_messages(messages)
        if max_new_tokens <= 0 or temperature < 0:
            raise ValueError("generate needs max_new_tokens > 0 and temperature >= 0")
        async with self._call_lock():
            return await asyncio.to_thread(
                self._generate_sync, messages, max_new_tokens, temperature
            )

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        for p in prompts:
            check_messages(p)
        if not candidates:
            raise ValueError("candidates is empty: pass the answers to score, e.g. ['Yes', 'No']")
        if not prompts:
            return []
        async with self._call_lock():
            return await asyncio.to_thread(self._logprobs_sync, prompts, candidates)

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        check_messages(messages)
        if not continuation:
            raise ValueError("continuation is empty: pass the reply text to score")
        async with self._call_lock():
            return await asyncio.to_thread(
                self._continuation_sync, messages, continuation, list(candidates)
            )

    def _call_lock(self) -> asyncio.Lock:
        """One model call at a time, per event loop (an asyncio.Lock is bound to one)."""
        loop = asyncio.get_running_loop()
        if loop not in self._call_locks:
            self._call_locks = {loop: asyncio.Lock()}  # forget locks of closed loops
        return self._call_locks[loop]

    def close(self) -> None:
        """Drop the model and the stored prefixes (memory)."""
        with self._load_lock:
            self._model = self._tok = None
            self._prefixes = PrefixKVStore(self._prefixes.max_entries)

    # ------------------------------------------------------------------ loading
    def _ensure_loaded(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            from interp.models.load import load_causal_lm, load_tokenizer

            self._tok = load_tokenizer(self.cfg.model)
            self._model = load_causal_lm(self.cfg.model, self.cfg.dtype, self.cfg.device)
            self._device = next(self._model.parameters()).device

    def encode_chat(self, messages: list[Message]) -> np.ndarray:
        """Token ids of a chat with the assistant's turn opened (the model's own template).

        A chat ending with an assistant message is continued from it (a prefill).
        """
        self._ensure_loaded()
        prefill = messages[-1]["role"] == "assistant"
        text = self._tok.apply_chat_template(
            messages,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
            tokenize=False,
        )
        return np.asarray(self._tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)

    def candidate_token_ids(self, candidates: list[str]) -> list[int]:
        """First token of each candidate as it would open the reply (no leading space)."""
        self._ensure_loaded()
        ids = []
        for c in candidates:
            toks = self._tok(c, add_special_tokens=False)["input_ids"]
            if not toks:
                raise ValueError(f"candidate {c!r} tokenizes to nothing: use a non-empty word")
            ids.append(int(toks[0]))
        if len(set(ids)) != len(ids):
            raise ValueError(f"candidates {candidates} share a first token: pick distinct words")
        return ids

    # ------------------------------------------------------------------ forward passes
    def _forward(self, ids_BT: torch.Tensor, past: KV | None, past_len: int, **kw: Any) -> Any:
        from transformers import DynamicCache

        B, T = ids_BT.shape
        cache = DynamicCache(
            ddp_cache_data=[(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1)) for k, v in past]
            if past
            else None
        )
        pos_BT = torch.arange(past_len, past_len + T, device=self._device).expand(B, T)
        return self._model(
            input_ids=ids_BT.to(self._device),
            position_ids=pos_BT,
            cache=cache,
            use_cache=True,
            **kw,
        )

    def _prefix_kv(self, ids: np.ndarray, keep_last: bool) -> tuple[KV, int, torch.Tensor | None]:
        """KV of ``ids`` (batch 1), reusing a stored prefix: (kv, tokens computed, logits).

        With ``keep_last`` at least the last token is computed, for its logits.
        """
        n_hit, past = self._prefixes.longest(ids)
        if keep_last:
            n_hit = min(n_hit, len(ids) - 1)
            past = [(k[:, :, :n_hit], v[:, :, :n_hit]) for k, v in past] if n_hit else None
        if n_hit == len(ids):
            assert past is not None
            return past, 0, None
        rest = torch.as_tensor(ids[n_hit:])[None]
        out = self._forward(rest, past, n_hit, logits_to_keep=1)
        kv = [(layer.keys, layer.values) for layer in out.cache.layers]
        self._prefixes.add(ids, kv)
        return kv, len(ids) - n_hit, out.logits[0, -1].float()

    @torch.inference_mode()
    def _logprobs_sync(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        self._ensure_loaded()
        cand = torch.tensor(self.candidate_token_ids(candidates))
        ids = [self.encode_chat(p) for p in prompts]
        n_prefix = min(len(x) for x in ids) - 1  # every suffix keeps >= 1 token
        for x in ids[1:]:
            n_prefix = min(n_prefix, common_prefix_len(ids[0], x))
        kv, computed, _ = (
            self._prefix_kv(ids[0][:n_prefix], keep_last=False) if n_prefix else (None, 0, None)
        )
        lp = self._suffix_logprobs(kv, n_prefix, [x[n_prefix:] for x in ids], cand)
        out = []
        for i, x in enumerate(ids):
            done = len(x) - n_prefix + (computed if i == 0 else 0)
            row = {c: float(v) for c, v in zip(candidates, lp[i])}
            out.append(ChoiceLogprobs(row, len(x), len(x) - done))
        return out

    def _suffix_logprobs(
        self, kv: KV | None, n_prefix: int, suffixes: list[np.ndarray], cand: torch.Tensor
    ) -> np.ndarray:
        """[N, C] log-probs at each suffix's last token, suffixes batched by length."""
        order = np.argsort([len(s) for s in suffixes], kind="stable")  # less padding
        out = np.empty((len(suffixes), len(cand)), dtype=np.float64)
        bs = self.cfg.score_batch_size
        for lo in range(0, len(order), bs):
            rows = order[lo : lo + bs]
            lens = np.array([len(suffixes[r]) for r in rows])
            T = int(lens.max())
            ids_BT = torch.zeros((len(rows), T), dtype=torch.long)  # right padding
            for b, r in enumerate(rows):
                ids_BT[b, : lens[b]] = torch.as_tensor(suffixes[r])
            # No padding mask: causal attention already hides the padding from every
            # real token, and a mask makes CPU attention ~3x slower.
            keep = torch.as_tensor(np.unique(lens - 1))
            logits = self._forward(ids_BT, kv, n_prefix, logits_to_keep=keep).logits
            col = torch.as_tensor(np.searchsorted(keep.numpy(), lens - 1))
            last_BV = logits[torch.arange(len(rows)), col].float()
            out[rows] = torch.log_softmax(last_BV, -1)[:, cand].cpu().double().numpy()
        return out

    @torch.inference_mode()
    def _continuation_sync(
        self, messages: list[Message], continuation: str, candidates: list[str]
    ) -> TextLogprobs:
        self._ensure_loaded()
        prompt = self.encode_chat(messages)
        reply = self._tok(continuation, add_special_tokens=False)["input_ids"]
        cand = self.candidate_token_ids(candidates) if candidates else []
        kv, computed, first_V = self._prefix_kv(prompt, keep_last=True)
        assert first_V is not None
        lp_RV = self._reply_logprobs(kv, len(prompt), reply, first_V)
        reply_R = torch.as_tensor(reply)
        token_lp = lp_RV.gather(1, reply_R[:, None].to(lp_RV.device))[:, 0]
        cand_RC = lp_RV[:, cand].double().cpu().numpy() if cand else None
        return TextLogprobs(
            tokens=[self._tok.decode([t]) for t in reply],
            logprobs=token_lp.double().cpu().tolist(),
            candidates=[{c: float(v) for c, v in zip(candidates, row)} for row in cand_RC]
            if cand_RC is not None
            else [{} for _ in reply],
            prompt_tokens=len(prompt) + len(reply),
            cached_prompt_tokens=len(prompt) - computed,
        )

    def _reply_logprobs(
        self, kv: KV, n_prompt: int, reply: list[int], first_V: torch.Tensor
    ) -> torch.Tensor:
        """[R, V] log-softmax predicting each reply token (row 0 from the prompt's end)."""
        rows = [torch.log_softmax(first_V, -1)[None]]
        if len(reply) > 1:
            ids_1T = torch.as_tensor(reply[:-1])[None]
            logits_TV = self._forward(ids_1T, kv, n_prompt).logits[0].float()
            rows.append(torch.log_softmax(logits_TV, -1))
        return torch.cat(rows)

    @torch.inference_mode()
    def _generate_sync(
        self, messages: list[Message], max_new_tokens: int, temperature: float
    ) -> Generation:
        self._ensure_loaded()
        ids = self.encode_chat(messages)
        kv, computed, logits = self._prefix_kv(ids, keep_last=True)
        gen = self._sampler(ids, temperature)
        stop = self._stop_ids()
        out: list[int] = []
        n_past = len(ids)
        while True:
            assert logits is not None
            nxt = gen(logits)
            out.append(nxt)
            if nxt in stop or len(out) >= max_new_tokens:
                break
            step = self._forward(torch.tensor([[nxt]]), kv, n_past, logits_to_keep=1)
            kv = [(layer.keys, layer.values) for layer in step.cache.layers]
            logits, n_past = step.logits[0, -1].float(), n_past + 1
        text = self._tok.decode(out, skip_special_tokens=True)
        return Generation(text, len(ids), len(out), len(ids) - computed)

    def _stop_ids(self) -> set[int]:
        eos = getattr(self._model.generation_config, "eos_token_id", None)
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tok.eos_token_id is not None:
            ids.add(int(self._tok.eos_token_id))
        return ids

    @staticmethod
    def _sampler(ids: np.ndarray, temperature: float) -> Any:
        """Greedy at temperature 0; else sampling seeded by the prompt (reproducible)."""
        if temperature == 0:
            return lambda logits: int(torch.argmax(logits))
        seed = int.from_bytes(hashlib.sha256(ids.tobytes()).digest()[:8], "little")
        g = torch.Generator().manual_seed(seed)
        return lambda logits: int(
            torch.multinomial(torch.softmax(logits.cpu() / temperature, -1), 1, generator=g)
        )
