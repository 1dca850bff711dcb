"""OpenAIClient against a tiny OpenAI-shaped server on loopback that injects faults.

The server is a real HTTP server (stdlib, one thread per connection): each request
takes the next scripted action (ok, a status code, a dropped connection, a hang, a
garbage body, ...) so every failure path of the client runs over a real socket.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import socket
import time

import pytest
from fake_openai import FakeOpenAI

from interp.config import LLMConfig
from interp.llm import build_client
from interp.llm.cache import CachedClient, ResponseCache, cache_key
from interp.llm.http import (
    LLMHTTPError,
    LLMResponseError,
    LLMUnavailableError,
    OpenAIClient,
    _echoed_span,
    _match,
)

NEG_INF = float("-inf")


class FakeTokenizer:
    """A chat template and first-token split, enough for client-side rendering."""

    bos_token = None
    bos_token_id = None

    def apply_chat_template(
        self, messages, add_generation_prompt, continue_final_message, tokenize
    ):
        text = "".join(f"<|{m['role']}|>{m['content']}" for m in messages)
        return text + ("<|assistant|>" if add_generation_prompt else "")

    def __call__(self, text: str, add_special_tokens: bool = False) -> dict:
        return {"input_ids": [ord(c) for c in text]}

    def decode(self, ids: list[int]) -> str:
        return "".join(chr(i) for i in ids)


@pytest.fixture
def server():
    s = FakeOpenAI()
    yield s
    s.close()


def _client(urls, sleeps: list | None = None, **kw) -> OpenAIClient:
    cfg = LLMConfig(
        backend="http", base_urls=tuple(urls), served_model="fake",
        max_retries=kw.pop("max_retries", 3), timeout_s=kw.pop("timeout_s", 5.0),
        max_concurrency=kw.pop("max_concurrency", 4), api_key_env=kw.pop("api_key_env", ""),
    )  # fmt: skip
    client = OpenAIClient(cfg, **kw)
    if sleeps is not None:

        async def record(delay: float) -> None:
            sleeps.append(delay)

        client._sleep = record
    return client


USER = [{"role": "user", "content": "Say something"}]


def _gen(client: OpenAIClient, messages=USER):
    return asyncio.run(client.generate(messages, max_new_tokens=8))


def test_generate_reads_text_and_usage(server):
    g = _gen(_client([server.url]))
    assert g.text == "Explanation: the word 'the'"
    assert (g.prompt_tokens, g.completion_tokens, g.cached_prompt_tokens) == (12, 3, 4)
    req = server.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "fake" and req["body"]["max_tokens"] == 8


@pytest.mark.parametrize(
    "fault, counter",
    [
        (("status", 500), "server_errors"),
        (("status", 503), "server_errors"),
        ("drop", "server_errors"),
        ("badjson", "bad_bodies"),
        ("nochoices", "bad_bodies"),
        ("empty", "bad_bodies"),
        ("badusage", "bad_bodies"),
    ],
)
def test_faults_are_retried_then_succeed(server, fault, counter):
    server.script = [fault, fault]
    sleeps: list[float] = []
    client = _client([server.url], sleeps)
    g = _gen(client)
    assert g.text.startswith("Explanation")
    assert client.stats["retries"] == 2 and client.stats[counter] == 2
    assert len(sleeps) == 2 and 0 < sleeps[0] <= 0.5 and sleeps[1] <= 1.0  # backoff grows


def test_garbage_every_time_raises_with_raw_body(server):
    server.script = ["badjson"] * 3
    client = _client([server.url], [], max_retries=2)
    with pytest.raises(LLMResponseError, match="gave up after 3") as err:
        _gen(client)
    assert err.value.raw == "{not json"
    assert client.stats["failed"] == 1 and len(server.requests) == 3


def test_empty_content_every_time_raises(server):
    server.script = ["empty"] * 2
    with pytest.raises(LLMResponseError, match="empty completion") as err:
        _gen(_client([server.url], [], max_retries=1))
    assert '"content": ""' in err.value.raw


def test_429_honours_retry_after(server):
    server.script = [("status", 429, ("Retry-After", "7"))]
    sleeps: list[float] = []
    client = _client([server.url], sleeps)
    assert _gen(client).text
    assert sleeps == [7.0] and client.stats["rate_limited"] == 1


def test_timeout_is_retried(server):
    server.script = ["hang"]
    client = _client([server.url], [], timeout_s=0.3)
    assert _gen(client).text.startswith("Explanation")
    assert client.stats["timeouts"] == 1


def test_4xx_fails_at_once_naming_the_fix(server):
    server.script = [("status", 404)]
    client = _client([server.url], [])
    with pytest.raises(LLMHTTPError, match="must end in /v1") as err:
        _gen(client)
    assert err.value.status == 404 and len(server.requests) == 1


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"  # nothing listens there now


def test_failover_to_the_live_replica(server):
    dead = _dead_url()
    sleeps: list[float] = []
    client = _client([dead, server.url], sleeps)

    async def many():
        return await asyncio.gather(*(client.generate(USER, max_new_tokens=4) for _ in range(6)))

    assert all(g.text for g in asyncio.run(many()))
    assert client.stats["failovers"] >= 1 and client.stats["retries"] == 0 and not sleeps
    assert len(server.requests) == 6
    assert client.replicas.pick() == server.url  # the dead one is set aside


def test_all_replicas_dead_raises_unavailable_then_discovery_recovers(server):
    urls = [_dead_url()]
    client = _client([], [], max_retries=1, discover=lambda: list(urls))
    with pytest.raises(LLMUnavailableError, match="no live replica"):
        _gen(client)
    urls[:] = [server.url]  # the serve stage published a fresh replica
    assert _gen(client).text


def test_least_in_flight_spreads_requests():
    a, b = FakeOpenAI(), FakeOpenAI()
    try:
        a.script = b.script = ["gate"] * 4
        client = _client([a.url, b.url], max_concurrency=4)

        async def run():
            tasks = [asyncio.create_task(client.generate(USER, max_new_tokens=4)) for _ in range(4)]
            await _until(lambda: a.in_flight + b.in_flight == 4)
            a.release.set()
            b.release.set()
            await asyncio.gather(*tasks)

        asyncio.run(run())
        assert len(a.requests) == 2 and len(b.requests) == 2
    finally:
        a.close()
        b.close()


async def _until(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


def test_concurrency_bound_is_respected(server):
    server.script = ["gate"] * 6
    client = _client([server.url], max_concurrency=2)

    async def run():
        tasks = [asyncio.create_task(client.generate(USER, max_new_tokens=4)) for _ in range(6)]
        await _until(lambda: server.in_flight == 2)
        await asyncio.sleep(0.2)  # a third request, if let through, would arrive now
        assert server.in_flight == 2
        server.release.set()
        return await asyncio.gather(*tasks)

    assert len(asyncio.run(run())) == 6
    assert server.max_in_flight == 2


def test_api_key_is_a_header_and_nowhere_else(server, monkeypatch, caplog, tmp_path):
    secret = "sk-test-Zq81dontleak"
    monkeypatch.setenv("FAKE_API_KEY", secret)
    caplog.set_level(logging.DEBUG)
    server.script = [("status", 500)]
    client = _client([server.url], [], api_key_env="FAKE_API_KEY")
    cached = CachedClient(client, ResponseCache(tmp_path / "cache.jsonl"))
    asyncio.run(cached.generate(USER, max_new_tokens=4))
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {secret}"
    key = cache_key(cached.model_id, "generate", USER, {"max_new_tokens": 4, "temperature": 0.0})
    for text in (caplog.text, repr(client), client.model_id, key,
                 (tmp_path / "cache.jsonl").read_text()):  # fmt: skip
        assert secret not in text
    assert "500" in caplog.text  # the retry was logged, without the key


def test_missing_key_variable_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    with pytest.raises(ValueError, match=r"\$NOPE_KEY is not set"):
        _client(["http://127.0.0.1:1/v1"], api_key_env="NOPE_KEY")


def test_next_token_logprobs_maps_candidates(server):
    client = _client([server.url])
    out = asyncio.run(client.next_token_logprobs([USER, USER], ["Yes", "No", "Maybe"]))
    assert len(out) == 2
    lp = out[0].logprobs
    assert lp["No"] == pytest.approx(-1.8) and lp["Maybe"] == NEG_INF
    # "Yes" and " yes" differ in case: only "Yes" counts
    assert lp["Yes"] == pytest.approx(-0.2)
    body = server.requests[0]["body"]
    assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 20
    assert out[0].prompt_tokens == 12 and out[0].cached_prompt_tokens == 4


def test_match_prefix_and_space_rules():
    top = [{"token": " 1", "logprob": -1.0}, {"token": "1", "logprob": -2.0},
           {"token": "10", "logprob": -3.0}]  # fmt: skip
    out = _match(top, ["1", "10", "2"], [None, None, None])
    assert out["1"] == pytest.approx(-1.0 + __import__("math").log(1 + __import__("math").exp(-1)))
    assert out["10"] == pytest.approx(-3.0) and out["2"] == NEG_INF
    assert _match(top, ["10"], ["1"])["10"] == pytest.approx(out["1"])  # tokenizer says "1"


def test_continuation_logprobs_via_echo(server):
    client = _client([server.url])
    client._tok = FakeTokenizer()
    client.cfg = dataclasses.replace(client.cfg, tokenizer="fake")
    out = asyncio.run(client.continuation_logprobs(USER, "Hello big world", ["7", "x"]))
    assert "".join(out.tokens) == "Hello big world"
    assert len(out.logprobs) == 3 and all(x < 0 for x in out.logprobs)
    assert out.logprobs == sorted(out.logprobs, reverse=True)  # -0.1 * position
    assert [c["7"] for c in out.candidates] == [-0.5] * 3
    assert all(c["x"] == NEG_INF for c in out.candidates)
    body = server.requests[0]["body"]
    assert body["echo"] is True and body["max_tokens"] == 1
    assert body["prompt"] == "<|user|>Say something<|assistant|>Hello big world"


def test_echoed_span_ignores_the_generated_token_and_straddling():
    prompt = "<|assistant|>ab"
    data = {
        "choices": [{"text": prompt + "ab", "logprobs": {
            "tokens": ["<|assistant|>a", "b", "ab"],
            "token_logprobs": [None, -1.0, -2.0],
            "top_logprobs": [None, {}, {}]}}],
    }  # fmt: skip
    with pytest.raises(ValueError, match="no log-prob"):  # straddling token has none here
        _echoed_span(data, prompt, "ab")
    data["choices"][0]["logprobs"]["token_logprobs"][0] = -0.5
    toks, lps, _, shifted = _echoed_span(data, prompt, "ab")
    assert toks == ["<|assistant|>a", "b"] and lps == [-0.5, -1.0]  # not the generated "ab"
    assert not shifted


def _echo_data(toks, lps, tops, generated=""):
    prompt = "".join(toks)
    lp = {"tokens": toks, "token_logprobs": lps, "top_logprobs": tops}
    return prompt, {"choices": [{"text": prompt + generated, "logprobs": lp}]}


def test_echoed_span_recovers_a_shifted_echo():
    """llama-cpp-python without a BOS: token i is paired with the distribution after it."""
    toks = ["<|u|>", "a", "b", "c", "d", "<|a|>", "Hi", " there"]
    n = len(toks)
    # shifted: the reported log-prob is P(next token = this one), tiny; tops[i] predicts i+1
    lps = [None] + [-14.0] * (n - 1)
    tops = [{toks[i + 1]: -0.1 * (i + 1), toks[i]: lps[i] or -14.0} for i in range(n - 1)]
    prompt, data = _echo_data(toks, lps, [*tops, {"zz": -1.0}], generated=" gen")
    out_toks, out_lps, rows, shifted = _echoed_span(data, prompt, "Hi there")
    assert shifted and out_toks == ["Hi", " there"]
    assert out_lps == [pytest.approx(-0.6), pytest.approx(-0.7)]
    assert rows[0]["Hi"] == pytest.approx(-0.6)  # candidates read from the same rows
    # the same prompt echoed correctly is read as it is
    good = [None] + [-0.1 * i for i in range(1, n)]
    prompt, data = _echo_data(toks, good, [None] + [{t: -0.1 * i, "zz": -5.0}
                                                  for i, t in enumerate(toks) if i])  # fmt: skip
    out_toks, out_lps, _, shifted = _echoed_span(data, prompt, "Hi there")
    assert not shifted and out_lps == [pytest.approx(-0.6), pytest.approx(-0.7)]


def test_continuation_without_tokenizer_names_the_fix(server):
    with pytest.raises(ValueError, match="set llm.tokenizer"):
        asyncio.run(_client([server.url]).continuation_logprobs(USER, "hi"))


def test_build_client_http_and_config_errors(server):
    client = build_client(LLMConfig(backend="http", base_urls=(server.url,), served_model="m"))
    assert isinstance(client, OpenAIClient) and client.model_id == "openai:m"
    with pytest.raises(ValueError, match="needs llm.base_urls"):
        build_client(LLMConfig(backend="http"))
    with pytest.raises(ValueError, match="must start with http"):
        LLMConfig(backend="http", base_urls=("127.0.0.1:8000",))
    with pytest.raises(ValueError, match="NAME of an environment variable"):
        LLMConfig(backend="http", api_key_env="sk-123-secret")


# ---------------------------------------------------------------------- llama.cpp server helper


def test_server_helper_errors_name_the_fix(monkeypatch, tmp_path):
    from interp.llm import server as srv

    with pytest.raises(ValueError, match=r"\.gguf path or one of"):
        srv.locate_gguf("no-such-model")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        srv.locate_gguf(str(tmp_path / "missing.gguf"))
    fake = tmp_path / "m.gguf"
    fake.write_bytes(b"not a gguf")
    monkeypatch.setattr(srv, "llama_cpp_available", lambda: False)
    with pytest.raises(ModuleNotFoundError, match="launch/setup.sh"):
        srv.LlamaServer(fake).start()
    s = srv.LlamaServer(fake, port=1234, n_threads=2)
    assert s.alias == "m" and s.base_url == "http://127.0.0.1:1234/v1"
    cmd = s.command()
    assert cmd[cmd.index("--logits_all") + 1] == "true" and cmd[cmd.index("--port") + 1] == "1234"


# ---------------------------------------------------------------------- vLLM backend (no vllm here)


def test_vllm_missing_is_a_clear_error():
    pytest.importorskip("transformers")
    if __import__("importlib").util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    with pytest.raises(ModuleNotFoundError, match="pip install vllm"):
        build_client(LLMConfig(backend="vllm"))


@pytest.fixture(scope="module")
def smol_tok():
    from interp.models import load_tokenizer

    return load_tokenizer("tiny-random-llama")  # SmolLM2's real tokenizer and chat template


def test_vllm_prompt_building(smol_tok):
    from interp.llm.vllm_backend import chat_prompt_ids, first_token_ids, reply_ids

    chat = [{"role": "user", "content": "Is it?"}]
    ids = chat_prompt_ids(smol_tok, chat)
    assert smol_tok.decode(ids).endswith("<|im_start|>assistant\n")
    full, start = reply_ids(smol_tok, chat, "Yes, it is")
    assert full[:start] == ids and smol_tok.decode(full[start:]) == "Yes, it is"
    prefill = chat_prompt_ids(
        smol_tok, [*chat, {"role": "assistant", "content": "Yes"}], prefill=True
    )
    assert smol_tok.decode(prefill).endswith("assistant\nYes")
    yes, no = first_token_ids(smol_tok, ["Yes", "No"])
    assert yes != no and smol_tok.decode([yes]) == "Yes"
    with pytest.raises(ValueError, match="continuation is empty"):
        reply_ids(smol_tok, chat, "")


def test_vllm_batcher_groups_concurrent_requests():
    from interp.llm.vllm_backend import _Batcher

    batches: list[list] = []

    def run(prompts, params):
        batches.append(list(prompts))
        return [f"out{p}" for p in prompts]

    async def main():
        b = _Batcher(run)
        return await asyncio.gather(*(b.submit(i, None) for i in range(5)))

    assert asyncio.run(main()) == [f"out{i}" for i in range(5)]
    assert batches == [[0, 1, 2, 3, 4]]  # one engine call for all that were waiting


# ------------------------------------------------------------ outages, deadlines, the key
def test_5xx_and_429_every_time_are_unavailable_not_a_response(server):
    server.script = [("status", 503), ("status", 500), ("status", 429)]
    client = _client([server.url], [], max_retries=2)
    with pytest.raises(LLMUnavailableError, match="gave up after 3") as err:
        _gen(client)
    assert not isinstance(err.value, LLMResponseError) and "scripted" in err.value.raw
    server.script = ["badjson", ("status", 500), ("status", 500)]  # the server did answer
    with pytest.raises(LLMResponseError) as err:
        _gen(client)
    assert err.value.raw == "{not json"


@pytest.mark.timeout(60)  # without a deadline the endless one never returns
@pytest.mark.parametrize("pad", [400, None], ids=["slow", "endless"])
def test_a_trickling_response_is_cut_at_the_deadline(server, pad):
    # a byte every 20 ms: httpx's per-read timeout never fires; the slow body would be
    # whole after ~11 s, the endless one never; llm.timeout_s bounds the whole attempt
    server.script = [("trickle", pad), "ok"]
    client = _client([server.url], [], timeout_s=0.5, max_retries=0)
    with pytest.raises(LLMUnavailableError, match=r"within llm.timeout_s=0.5"):
        _gen(client)
    assert client.stats["timeouts"] == 1 and server.trickles_finished == 0
    assert _gen(client).text.startswith("Explanation")  # the next attempt is a fresh one


def test_the_key_goes_only_to_the_configured_base_urls(server, monkeypatch):
    monkeypatch.setenv("FAKE_API_KEY", "sk-only-for-configured")
    other = FakeOpenAI()
    try:
        client = _client([server.url], [], api_key_env="FAKE_API_KEY")
        _gen(client)
        client.set_urls([other.url])  # e.g. replicas published in the run folder
        _gen(client)
        found = _client([], [], api_key_env="FAKE_API_KEY", discover=lambda: [other.url])
        _gen(found)
    finally:
        other.close()
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-only-for-configured"
    assert len(other.requests) == 2
    for req in other.requests:
        assert not {k.lower() for k in req["headers"]} & {"authorization"}
