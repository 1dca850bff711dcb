"""What the LLM cost, told right: a reply without ``usage`` is counted with the tokenizer
or flagged (never a silent 0), and the calls an interpret attempt paid for stay counted
when the attempt is stopped or fails and its rerun serves them from the response cache.

The LLM is :class:`fake_openai.FakeOpenAI` on loopback (each reply with usage: 12 prompt
tokens, 4 of them cached, 3 completion tokens); the store is a real Zarr slice; the
interpret stage, the HTTP client, the cache and the ledger are the real ones."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from interpret_point import N_LATENTS, interpret_point, write_store

from interp.config import LLMConfig, RunConfig
from interp.llm import CachedClient, MeteredClient, ResponseCache
from interp.llm.http import LLMUnavailableError, OpenAIClient
from interp.plan import Task
from interp.report.brief import format_brief
from interp.report.summary import format_markdown, summarize
from interp.report.table import TableWriter, read_record_file, with_point_columns
from interp.runs import RunPaths, is_committed, read_manifest
from interp.stages import gather, interpret
from interp.stages.context import StageContext

USER = [{"role": "user", "content": "Say something"}]
AGAIN = [*USER, {"role": "assistant", "content": "x"}, {"role": "user", "content": "again"}]
TASK = Task(0, 0, N_LATENTS)


@pytest.fixture
def llm():
    s = FakeOpenAI()
    yield s
    s.close()


def _client(url: str, tokenizer: str = "") -> OpenAIClient:
    cfg = LLMConfig(
        backend="http", base_urls=(url,), served_model="fake", max_retries=0, tokenizer=tokenizer
    )
    return OpenAIClient(cfg)


def _usage_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "without 'usage'" in r.getMessage()]


# ------------------------------------------------------------------------ usage
def test_replies_without_usage_are_counted_with_the_tokenizer(llm, caplog) -> None:
    from interp.models import load_tokenizer

    llm.send_usage = False
    client = _client(llm.url, tokenizer="tiny-random-llama")
    with caplog.at_level(logging.WARNING):
        g = asyncio.run(client.generate(USER, max_new_tokens=8))
        (c,) = asyncio.run(client.next_token_logprobs([USER], ["Yes", "No"]))
    tok = load_tokenizer("tiny-random-llama")
    n_prompt = len(tok(client.render_chat(USER, prefill=False, why="test"))["input_ids"])
    n_reply = len(tok(g.text, add_special_tokens=False)["input_ids"])
    assert n_prompt > 10 and n_reply > 3
    assert (g.prompt_tokens, g.completion_tokens, g.cached_prompt_tokens) == (n_prompt, n_reply, 0)
    assert (g.usage, c.usage, c.prompt_tokens) == ("tokenizer", "tokenizer", n_prompt)
    assert client.stats["usage_tokenizer"] == 2 and client.stats["usage_missing"] == 0
    (warning,) = _usage_warnings(caplog)  # once per client, naming the server
    assert llm.url in warning and "tiny-random-llama" in warning


def test_replies_without_usage_and_no_tokenizer_are_flagged(llm, caplog, tmp_path) -> None:
    llm.script = ["ok", "nousage"]
    client = _client(llm.url)
    meter = MeteredClient(CachedClient(client, ResponseCache(tmp_path / "c.jsonl")))
    with caplog.at_level(logging.WARNING):
        asyncio.run(meter.generate(USER, max_new_tokens=8))
        asyncio.run(meter.generate(AGAIN, max_new_tokens=8))
    assert meter.usage.as_dict() == {
        "prompt": 12, "completion": 3, "prompt_computed": 8, "calls": 2,
        "usage_tokenizer": 0, "usage_missing": 1,
    }  # fmt: skip
    assert client.stats["usage_missing"] == 1
    (warning,) = _usage_warnings(caplog)
    assert llm.url in warning and "set llm.tokenizer" in warning
    again = MeteredClient(CachedClient(_client(llm.url), ResponseCache(tmp_path / "c.jsonl")))
    asyncio.run(again.generate(AGAIN, max_new_tokens=8))  # a hit: still flagged
    assert len(llm.requests) == 2 and again.usage.usage_missing == 1


def _summary_of(root: Path, cfg: RunConfig, tmp_path: Path) -> dict:
    """The gather summary of this one-range point, from its real record file."""
    paths = RunPaths(root, cfg)
    writer = TableWriter(tmp_path / "parts")
    point = gather.point_columns(root, cfg)
    writer.add(with_point_columns(read_record_file(paths.records_file(0), 0, N_LATENTS), point))
    writer.commit(tmp_path / "t.parquet")
    return summarize(tmp_path / "t.parquet", [point])


@pytest.mark.parametrize("tokenizer", ["", "tiny-random-llama"], ids=["flagged", "counted"])
def test_the_stage_records_and_summary_show_calls_without_usage(
    tmp_path: Path, llm, tokenizer: str
) -> None:
    llm.send_usage = False
    cfg = interpret_point(tmp_path, llm.url, name="nousage", tokenizer=tokenizer)
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    write_store(paths)
    interpret.run(StageContext.of(cfg, paths, TASK, lambda: False))
    records = [json.loads(line) for line in paths.records_file(0).read_text().splitlines()]
    manifest = read_manifest(paths.manifest_file("interpret", 0))
    n = len(llm.requests)
    key = "usage_tokenizer" if tokenizer else "usage_missing"
    assert sum(r["tokens"][key] for r in records) == n == manifest["tokens"][key]
    assert manifest["llm"][key] == n
    summary = _summary_of(paths.root, cfg, tmp_path)
    markdown, brief = format_markdown(summary), "\n".join(format_brief(summary))
    if tokenizer:
        assert all(r["tokens"]["prompt"] > 0 for r in records)
        assert f"{n} LLM calls came without token counts: counted with llm.tokenizer" in markdown
        assert "WARNING" not in markdown + brief
    else:
        assert manifest["tokens"]["prompt"] == 0
        assert f"WARNING: {n} LLM calls came without token counts" in markdown
        assert f"WARNING: {n} LLM calls without token counts (counted 0)" in brief


# ------------------------------------------------------------------------ the ledger
def _ledger_lines(paths: RunPaths) -> list[dict]:
    files = sorted(paths.llm_ledger_dir().glob("r00000.a*.jsonl"))
    return [json.loads(line) for f in files for line in f.read_text().splitlines()]


@pytest.mark.parametrize("fault", ["stop", "outage"])
def test_every_attempt_s_paid_calls_count_after_the_rerun(tmp_path: Path, llm, fault) -> None:
    cfg = interpret_point(tmp_path, llm.url, name="paid", max_concurrency=1)
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    write_store(paths)
    checks: list[int] = []

    def stop_after_two_scored() -> bool:  # asked once per latent and pass, in order
        checks.append(1)
        return len(checks) > N_LATENTS + 2  # all explained, two scored, then stop

    if fault == "stop":
        interpret.run(StageContext.of(cfg, paths, TASK, stop_after_two_scored))
        paid_first = len(llm.requests)
        assert paid_first > N_LATENTS  # the explanations and two latents' scoring
    else:  # every explanation and one prompt of a scoring batch answered, then 500s
        paid_first = N_LATENTS + 1
        llm.script = ["ok"] * paid_first + [("status", 500)] * 100
        with pytest.raises(LLMUnavailableError):
            interpret.run(StageContext.of(cfg, paths, TASK, lambda: False))
    manifest = paths.manifest_file("interpret", 0)
    assert not is_committed(manifest) and len(_ledger_lines(paths)) > 0
    llm.script, before = [], len(llm.requests)
    interpret.run(StageContext.of(cfg, paths, TASK, lambda: False))
    assert is_committed(manifest)
    lines, summary = _ledger_lines(paths), read_manifest(manifest)
    first_file, second_file = sorted(paths.llm_ledger_dir().glob("r00000.a*.jsonl"))
    delivered = sum(json.loads(line)["calls"] for line in first_file.read_text().splitlines())
    paid_second = sum(json.loads(line)["calls"] for line in second_file.read_text().splitlines())
    # The server saw at least that: a request of the aborted attempt still in the socket
    # when it raised can reach the server after ``before`` was read (no reply delivered).
    assert paid_second <= len(llm.requests) - before <= paid_second + (fault == "outage") * 4
    if fault == "stop":
        assert delivered == paid_first
    else:  # a request in flight when the outage aborted the range never got its reply
        assert N_LATENTS <= delivered <= paid_first
    paid = summary["tokens_paid"]
    assert paid["attempts"] == 2 and paid["unreadable"] == 0
    assert paid["calls"] == sum(x["calls"] for x in lines) == delivered + paid_second
    assert paid["prompt"] == sum(x["prompt"] for x in lines) == 12 * (delivered + paid_second)
    assert paid["prompt_computed"] == sum(x["prompt_computed"] for x in lines)
    # the records count only what the rerun computed (the first attempt's calls are hits)
    assert summary["tokens"]["prompt_computed"] == 8 * paid_second < paid["prompt_computed"]
    # gather reports both, per point
    point = gather.point_columns(paths.root, cfg)
    assert point["llm_paid"] == paid
    markdown = format_markdown(_summary_of(paths.root, cfg, tmp_path))
    assert f"LLM paid over 2 attempt file(s): {paid['prompt']} prompt tokens" in markdown
    assert f"the final records count {8 * paid_second} computed prompt tokens" in markdown
