"""The LLM backend registry: a backend defined and registered in this test module is
selected by ``llm.backend``, built by ``build_client`` inside the cache and ledger, and
explains and scores a latent through the real interpret loop; the built-in specs say
what the rest of the pipeline needs from them."""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from word_tokens import CAT, RENDER

from interp.config import LLMConfig, load_run_config
from interp.interpret.pipeline import LatentRange, interpret_range
from interp.llm import (
    BackendSpec,
    CachedClient,
    Ledger,
    LedgerClient,
    LLMUnavailableError,
    build_client,
)
from interp.llm.backends.http import HTTPConfig
from interp.llm.backends.transformers import TransformersConfig
from interp.llm.base import ChoiceLogprobs, Generation
from interp.llm.ledger import read_ledger
from interp.llm.registry import backend_names, backend_spec, register_backend, unregister_backend
from interp.stages.interpret import range_config

pytestmark = pytest.mark.unit


# --------------------------------------------------------------------------- a toy backend
@dataclass(frozen=True)
class WordConfig:
    """The toy backend's own knob (a plugin adds no keys: it reads its defaults)."""

    word: str = "cat"


class WordClient:
    """A deterministic LLM: explains every latent as its word, and answers Yes exactly
    when the scored excerpt's marked tokens (or the excerpt) contain the word."""

    def __init__(self, cfg: Any) -> None:
        self.word = cfg.part(WordConfig).word
        self.model_id = f"word:{cfg.model}"
        self.calls = 0  # prompts answered

    async def generate(self, messages, *, max_new_tokens, temperature=0.0) -> Generation:
        self.calls += 1
        return Generation(f"Explanation: the word {self.word}", 100, 6, 0)

    async def next_token_logprobs(self, prompts, candidates) -> list[ChoiceLogprobs]:
        self.calls += len(prompts)  # one model call per prompt, as the ledger counts them
        out = []
        for p in prompts:
            excerpt = p[-1]["content"].split("\n\n", 1)[1]
            marked = re.findall(r"<<(.*?)>>", excerpt)
            hit = any(self.word in m for m in marked) if marked else self.word in excerpt
            yes = 0.9 if hit else 0.2
            out.append(ChoiceLogprobs({"Yes": math.log(yes), "No": math.log(1 - yes)}, 50, 0))
        return out

    async def continuation_logprobs(self, messages, continuation, candidates=()):
        raise NotImplementedError("the toy backend scores with next-token log-probs only")

    def close(self) -> None:
        pass


BUILT: list[WordClient] = []


def _build_word(cfg: Any, discover: Any) -> WordClient:
    assert discover is None  # a backend without discovery never sees the replicas
    BUILT.append(WordClient(cfg))
    return BUILT[-1]


WORD = BackendSpec(name="word_toy", build=_build_word, config=WordConfig, prefix_caching=False)


@pytest.fixture
def word_backend():
    register_backend(WORD)
    BUILT.clear()
    yield WORD
    unregister_backend(WORD.name)


class _CSR:
    def __init__(self, parts: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.offsets = np.cumsum([0] + [len(t) for t, _ in parts])
        self.tok = np.concatenate([t for t, _ in parts]).astype(np.uint32)
        self.val = np.concatenate([v for _, v in parts]).astype(np.float16)


def _latent_on_cat(ctx: int = 16) -> tuple[_CSR, np.ndarray]:
    """One latent firing on every ' cat' of a word-token corpus."""
    rng = np.random.default_rng(3)
    ids = rng.choice([1, 3, 4, 5, 6, 7, 9, 10], size=100 * ctx)
    cat_pos = np.sort(rng.choice(100, size=30, replace=False) * ctx + 5)
    ids[cat_pos] = CAT
    return _CSR([(cat_pos.astype(np.uint32), np.ones(30, np.float16))]), ids


def _interpret(cfg: Any, client: Any) -> list[Any]:
    """The records of one latent through the interpret pipeline (explain, then score)."""
    csr, ids = _latent_on_cat()
    task = LatentRange(0, 0, 1)
    return asyncio.run(
        interpret_range(range_config(cfg), task, csr, ids, RENDER, client, lambda: False)
    )


def test_a_registered_backend_explains_and_scores_a_latent(word_backend, tmp_path: Path) -> None:
    cfg = load_run_config(
        {
            "llm": {"backend": "word_toy", "model": "toy-model"},
            "data": {"ctx_len": 16},
            "collect": {"num_tokens": 1600, "slice_tokens": 1600},
            "interpret": {"examples": {"window": 8, "min_examples": 4}},
        }
    )
    assert cfg.llm.backend == "word_toy" and "word_toy" in backend_names()
    ledger = Ledger(tmp_path / "ledger", 0)
    client = build_client(cfg.llm, tmp_path / "cache", ledger=ledger)
    # wrapped as every backend is: the response cache outside, the ledger inside it
    assert isinstance(client, CachedClient) and isinstance(client.inner, LedgerClient)
    toy = client.inner.inner
    assert toy is BUILT[-1] and toy.model_id == "word:toy-model" and toy.word == "cat"

    (record,) = _interpret(cfg, client)
    ledger.close()
    assert record.status == "ok" and record.explanation == "the word cat"
    assert set(record.scores) == {"detection", "fuzzing"}
    assert record.scores["detection"]["balanced_accuracy"] == 1.0  # Yes on cats only
    assert toy.calls > 0 and read_ledger(tmp_path / "ledger", 0)["calls"] == toy.calls

    # a rerun is answered from the response cache: the backend is never called
    again = build_client(cfg.llm, tmp_path / "cache")
    (cached,) = _interpret(cfg, again)
    assert BUILT[-1].calls == 0 and cached.scores == record.scores


def test_backend_choice_is_checked_against_the_registry(word_backend) -> None:
    with pytest.raises(ValueError, match=r"llm.backend='nope' is not one of \['transformers', "):
        load_run_config({"llm": {"backend": "nope"}})
    with pytest.raises(ValueError, match="'word_toy' is already registered"):
        register_backend(WORD)
    with pytest.raises(ValueError, match="'http' is already registered: pick another name$"):
        register_backend(dataclasses.replace(WORD, name="http"))
    unregister_backend(WORD.name)
    with pytest.raises(ValueError, match="llm.backend='word_toy' is not one of"):
        load_run_config({"llm": {"backend": "word_toy"}})


def test_builtin_specs_say_what_the_pipeline_needs() -> None:
    http, transformers, vllm = (backend_spec(n) for n in ("http", "transformers", "vllm"))
    assert backend_names()[:3] == ["transformers", "http", "vllm"]
    assert http.discovery and not transformers.discovery and not vllm.discovery
    assert not http.loads_model and transformers.loads_model and vllm.loads_model
    assert (transformers.logprobs, http.logprobs, vllm.logprobs) == ("exact", "top_k", "top_k")
    assert vllm.requires == ("vllm",) and not http.requires
    with pytest.raises(ValueError, match="must be an identifier"):
        BackendSpec(name="my backend", build=_build_word)


def test_llm_keys_stay_flat_and_each_backend_reads_its_part() -> None:
    keys = {f.name for f in dataclasses.fields(LLMConfig)}
    assert keys == {
        "backend", "model", "dtype", "device", "temperature", "score_batch_size", "cache",
        "base_urls", "served_model", "tokenizer", "api_key_env", "max_concurrency",
        "timeout_s", "max_retries", "top_logprobs",
    }  # fmt: skip
    cfg = load_run_config(
        {"llm": {"backend": "http", "base_urls": ["http://h:1/v1"], "score_batch_size": 2}}
    ).llm
    assert cfg.part(HTTPConfig).base_urls == ("http://h:1/v1",)
    assert cfg.part(TransformersConfig) == TransformersConfig(device="auto", score_batch_size=2)
    # a part's validation names the flat key
    with pytest.raises(ValueError, match=r"llm.score_batch_size=0 must be > 0"):
        load_run_config({"llm": {"score_batch_size": 0}})
    with pytest.raises(ValueError, match=r"llm.timeout_s=0.0 must be > 0"):
        load_run_config({"llm": {"timeout_s": 0}})


def test_preflight_asks_the_spec_what_a_backend_needs(tmp_path: Path) -> None:
    """A served backend's llm.model is only a name; a missing module is named with the fix."""
    from interp.preflight import point_problems

    remote = dataclasses.replace(
        WORD,
        name="remote_toy",
        loads_model=False,
        requires=("no_such_module_for_interp_tests",),
        install_hint="the toy SDK: pip install toy-sdk",
    )
    register_backend(remote)
    try:
        cfg = load_run_config(
            {
                "out_dir": str(tmp_path),
                "model": {"name": "tiny-random-llama"},
                "layer": 2,
                "llm": {"backend": "remote_toy", "model": "nobody/not-resolvable"},
            }
        )
        assert point_problems(cfg, {}) == [
            "llm.backend=remote_toy needs the toy SDK: pip install toy-sdk"
        ]
    finally:
        unregister_backend(remote.name)


def test_any_backend_can_say_the_llm_is_unavailable(word_backend) -> None:
    """interp.llm.LLMUnavailableError from a registered backend stops the range (a rerun
    redoes it) instead of being recorded as the latent's error."""

    class Down(WordClient):
        async def generate(self, messages, *, max_new_tokens, temperature=0.0):
            raise LLMUnavailableError("the toy server is down")

    cfg = load_run_config(
        {
            "data": {"ctx_len": 16},
            "collect": {"num_tokens": 1600, "slice_tokens": 1600},
            "interpret": {"examples": {"window": 8, "min_examples": 4}},
        }
    )
    with pytest.raises(LLMUnavailableError, match="toy server is down"):
        _interpret(cfg, Down(cfg.llm))


def test_served_replicas_need_a_backend_with_discovery(word_backend) -> None:
    """serve.enabled asks the spec, and only a discovering backend gets ``discover``."""
    from interp.stages.registry import serve_enabled

    seen = []
    served = dataclasses.replace(
        WORD, name="served_toy", discovery=True, build=lambda cfg, d: seen.append(d) or d
    )
    register_backend(served)
    try:
        cfg = load_run_config({"serve": {"enabled": True}, "llm": {"backend": "served_toy"}})
        assert serve_enabled(cfg)
        with pytest.raises(
            ValueError, match=r"needs llm.backend=http\|served_toy \(got 'word_toy'"
        ):
            serve_enabled(
                load_run_config({"serve": {"enabled": True}, "llm": {"backend": "word_toy"}})
            )
        urls = lambda: ["http://h:1/v1"]  # noqa: E731
        build_client(dataclasses.replace(cfg.llm, cache=False), discover=urls)
        build_client(load_run_config({"llm": {"backend": "word_toy"}}).llm, discover=urls)
        assert seen == [urls]  # word_toy (no discovery) never saw it: _build_word asserts so
    finally:
        unregister_backend(served.name)
