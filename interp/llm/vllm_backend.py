"""vLLM's offline engine in this process, behind the ``LLMClient`` protocol (GPU nodes).

For the *in-task* placement on a cluster: each interpret array task loads its own
engine. Written against vLLM's documented offline API (``vllm.LLM``, ``SamplingParams``
with ``logprobs`` / ``prompt_logprobs``, ``RequestOutput``); it needs a GPU and is
not exercised by this repository's CPU tests.

* Prompts are rendered and tokenised here with the model's own tokenizer (the same
  ``apply_chat_template`` call as the transformers backend), then given to vLLM as
  token ids, so both backends see identical prompts.
* ``LLM.generate`` is blocking and batches what it is given. Concurrent calls are
  collected by a small batcher: whatever arrives while a batch runs forms the next
  one, so many scorers in flight become one engine batch (with prefix caching on,
  shared instruction prefixes are computed once).
* Log-probs: ``next_token_logprobs`` reads the top-``llm.top_logprobs`` list of the
  first generated position (a candidate outside it reads -inf, as over HTTP; raise
  ``top_logprobs`` to make that rarer; the engine is built with ``max_logprobs`` equal
  to it). ``continuation_logprobs`` reads ``prompt_logprobs`` over prompt + reply, which
  always include the actual token, plus the top list per position for candidates.

Legend: ``T`` prompt length in tokens.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interp.llm.base import ChoiceLogprobs, Generation, Message, TextLogprobs, check_messages
from interp.llm.config import LLMConfig

VLLM_HINT = (
    "backend=vllm needs vLLM, which runs on CUDA GPUs: `pip install vllm` on a GPU node "
    "(matching its torch build), or use llm.backend=transformers (in-process, CPU or GPU) "
    "or llm.backend=http (a vLLM server started with `vllm serve`)"
)
NEG_INF = float("-inf")


def import_vllm() -> Any:
    """The ``vllm`` module, or a ModuleNotFoundError that says how to get it."""
    try:
        import vllm
    except ImportError as e:
        raise ModuleNotFoundError(f"{VLLM_HINT} ({e})") from e
    return vllm


def chat_prompt_ids(tok: Any, messages: list[Message], *, prefill: bool = False) -> list[int]:
    """Token ids of a chat with the assistant turn opened (or continued when ``prefill``)."""
    check_messages(messages)
    text = tok.apply_chat_template(
        messages, add_generation_prompt=not prefill, continue_final_message=prefill,
        tokenize=False,
    )  # fmt: skip
    return list(tok(text, add_special_tokens=False)["input_ids"])


def reply_ids(tok: Any, messages: list[Message], continuation: str) -> tuple[list[int], int]:
    """(ids of chat + reply, index of the reply's first token), split as one text.

    Tokenising the whole text (not the two parts apart) gives the ids the model would
    have produced; a token straddling the template/reply boundary counts as the reply's.
    """
    check_messages(messages)
    if not continuation:
        raise ValueError("continuation is empty: pass the reply text to score")
    head = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = tok(head + continuation, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), enc["offset_mapping"]
    start = next((i for i, (_, end) in enumerate(offsets) if end > len(head)), len(ids))
    if start == len(ids):
        raise ValueError(f"continuation {continuation!r} produced no tokens after the template")
    return ids, start


def first_token_ids(tok: Any, candidates: list[str]) -> list[int]:
    """The first token id of each candidate as the reply's opening (no leading space)."""
    if not candidates:
        raise ValueError("candidates is empty: pass the answers to score, e.g. ['Yes', 'No']")
    ids = []
    for c in candidates:
        toks = tok(c, add_special_tokens=False)["input_ids"]
        if not toks:
            raise ValueError(f"candidate {c!r} tokenizes to nothing: use a non-empty word")
        ids.append(int(toks[0]))
    return ids


def _lp(entry: Any) -> float:
    """A vLLM ``Logprob`` (or a bare float) as a float."""
    return float(getattr(entry, "logprob", entry))


def _pick(top: Mapping[int, Any] | None, ids: list[int], names: list[str]) -> dict[str, float]:
    top = top or {}
    return {n: (_lp(top[i]) if i in top else NEG_INF) for n, i in zip(names, ids)}


@dataclass
class _Batcher:
    """Collects concurrent requests of one event loop into ``LLM.generate`` batches."""

    run: Any  # (prompts, params) -> list[RequestOutput], blocking
    pending: list[tuple[Any, Any, asyncio.Future]] = field(default_factory=list)
    task: asyncio.Task | None = None

    async def submit(self, prompt: Any, params: Any) -> Any:
        fut = asyncio.get_running_loop().create_future()
        self.pending.append((prompt, params, fut))
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._drain())
        return await fut

    async def _drain(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                outs = await asyncio.to_thread(
                    self.run, [b[0] for b in batch], [b[1] for b in batch]
                )
            except Exception as e:  # the engine failed: every caller of this batch sees it
                for *_, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (*_, fut), out in zip(batch, outs):
                if not fut.done():
                    fut.set_result(out)


class VLLMClient:
    """``LLMClient`` over ``vllm.LLM``; the engine is built on the first call."""

    def __init__(self, cfg: LLMConfig, **engine_kw: Any) -> None:
        import_vllm()  # fail at build time, not deep inside the first latent
        self.cfg = cfg
        self.model_id = f"vllm:{cfg.model}@{cfg.dtype}"
        self.engine_kw = engine_kw  # e.g. tensor_parallel_size, gpu_memory_utilization
        self._llm: Any = None
        self._tok: Any = None
        self._batchers: dict[asyncio.AbstractEventLoop, _Batcher] = {}
        self._sems: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}

    # ------------------------------------------------------------------ public (async)
    async def generate(
        self, messages: list[Message], *, max_new_tokens: int, temperature: float = 0.0
    ) -> Generation:
        if max_new_tokens <= 0 or temperature < 0:
            raise ValueError("generate needs max_new_tokens > 0 and temperature >= 0")
        tok = self._tokenizer()
        ids = chat_prompt_ids(tok, messages, prefill=messages[-1]["role"] == "assistant")
        out = await self._run(ids, max_tokens=max_new_tokens, temperature=temperature)
        c = out.outputs[0]
        return Generation(c.text, len(ids), len(c.token_ids), _cached(out))

    async def next_token_logprobs(
        self, prompts: list[list[Message]], candidates: list[str]
    ) -> list[ChoiceLogprobs]:
        tok = self._tokenizer()
        cand = first_token_ids(tok, candidates)
        k = self.cfg.top_logprobs

        async def one(messages: list[Message]) -> ChoiceLogprobs:
            ids = chat_prompt_ids(tok, messages)
            out = await self._run(ids, max_tokens=1, temperature=0.0, logprobs=k)
            top = (out.outputs[0].logprobs or [None])[0]
            return ChoiceLogprobs(_pick(top, cand, candidates), len(ids), _cached(out))

        return list(await asyncio.gather(*(one(p) for p in prompts)))

    async def continuation_logprobs(
        self, messages: list[Message], continuation: str, candidates: list[str] = ()
    ) -> TextLogprobs:
        tok = self._tokenizer()
        ids, start = reply_ids(tok, messages, continuation)
        cand = first_token_ids(tok, list(candidates)) if candidates else []
        k = self.cfg.top_logprobs
        out = await self._run(ids, max_tokens=1, temperature=0.0, prompt_logprobs=k)
        plp = out.prompt_logprobs  # plp[i]: {token id: Logprob} at position i; plp[0] None
        if plp is None or len(plp) != len(ids):
            raise RuntimeError("vLLM returned no prompt_logprobs: is this vLLM >= 0.6?")
        lps, cands = [], []
        for i in range(start, len(ids)):
            top = plp[i] or {}
            lps.append(_lp(top[ids[i]]) if ids[i] in top else math.nan)
            cands.append(_pick(top, cand, list(candidates)) if candidates else {})
        tokens = [tok.decode([t]) for t in ids[start:]]
        return TextLogprobs(tokens, lps, cands, len(ids), _cached(out))

    def close(self) -> None:
        """Drop the engine (frees GPU memory once nothing else holds it)."""
        self._llm = None
        self._batchers.clear()
        self._sems.clear()

    # ------------------------------------------------------------------ engine
    def _tokenizer(self) -> Any:
        if self._tok is None:
            from interp.models.load import load_tokenizer

            self._tok = load_tokenizer(self.cfg.tokenizer or self.cfg.model)
        return self._tok

    def _engine(self) -> Any:
        if self._llm is None:
            from interp.models.provision import resolve_model

            vllm = import_vllm()
            self._llm = vllm.LLM(
                model=resolve_model(self.cfg.model),
                dtype=self.cfg.dtype,
                enable_prefix_caching=True,
                max_logprobs=self.cfg.top_logprobs,
                **self.engine_kw,
            )
        return self._llm

    def _generate_batch(self, prompts: list[list[int]], params: list[Any]) -> list[Any]:
        llm = self._engine()
        return llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)

    async def _run(self, ids: list[int], **sampling: Any) -> Any:
        vllm = import_vllm()
        loop = asyncio.get_running_loop()
        if loop not in self._batchers:  # asyncio primitives belong to one loop
            self._batchers = {loop: _Batcher(self._generate_batch)}
            self._sems = {loop: asyncio.Semaphore(self.cfg.max_concurrency)}
        async with self._sems[loop]:
            return await self._batchers[loop].submit(ids, vllm.SamplingParams(**sampling))


def _cached(out: Any) -> int:
    return int(getattr(out, "num_cached_tokens", 0) or 0)
