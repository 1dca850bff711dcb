"""The LLM edge on real sockets and files: replica files the system did not publish get
no request (and published replicas never get the API key); an LLM outage leaves the
interpret range uncommitted so a rerun redoes it against the healthy server; ``rerun
--retry-errors`` reopens ranges whose records hold errors.

The LLM is :class:`fake_openai.FakeOpenAI` on loopback; the store is a real Zarr slice;
the interpret stage is the real one with the real HTTP client."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_openai import FakeOpenAI
from interpret_point import N_LATENTS, interpret_point, write_store

from interp.config import LLMConfig, load_run_config
from interp.llm.http import LLMUnavailableError, OpenAIClient
from interp.llm.replicas import discoverer, read_replicas, replicas_dir, scheduler
from interp.plan import Task, job_pending
from interp.runs import RunIds, RunPaths, commit_task, is_committed
from interp.stages import interpret
from interp.stages.context import StageContext
from slurm.slurm_executor import JobsAliveCheck
from slurm.status import QueueEntry, SlurmUnavailable
from slurm.submit import load_sweep, record_point, reopen_errors

ROOT = Path(__file__).resolve().parents[2]
USER = [{"role": "user", "content": "Say something"}]
SECRET = "sk-never-to-a-replica"


@pytest.fixture
def llm():
    s = FakeOpenAI()
    yield s
    s.close()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _publish(root: Path, name: str, **fields: object) -> None:
    folder = replicas_dir(root, "s")
    folder.mkdir(parents=True, exist_ok=True)
    data = {"job": name, "host": "127.0.0.1", "model": "fake", "engine": "llama_cpp",
            "pid": 1, "started": 1.0, **fields}  # fmt: skip
    (folder / f"{name}.json").write_text(json.dumps(data))


def _served_client(root: Path) -> OpenAIClient:
    cfg = LLMConfig(backend="http", served_model="fake", max_retries=0, api_key_env="KEY")
    return OpenAIClient(cfg, discover=discoverer(root, "s"))


# ------------------------------------------------------------------------ discovery
def test_planted_replica_files_get_no_request(tmp_path: Path, llm, monkeypatch) -> None:
    monkeypatch.setenv("KEY", SECRET)
    port = _port(llm.url)
    _publish(tmp_path, "x", port=port)  # what the tester planted: a non-numeric job id
    _publish(tmp_path, "12", job="13", port=port)  # the id is not the file's name
    _publish(tmp_path, "14", host=f"127.0.0.1:{port}/v1/chat/completions#", port=port)
    _publish(tmp_path, "15", host="someone@127.0.0.1", port=port)
    _publish(tmp_path, "16", port=str(port))
    _publish(tmp_path, "17", port=70000)
    assert read_replicas(tmp_path, "s") == []
    with pytest.raises(LLMUnavailableError, match="no live replica"):
        asyncio.run(_served_client(tmp_path).generate(USER, max_new_tokens=4))
    # well formed, but the scheduler does not run job 18 as this user
    _publish(tmp_path, "18", port=port)
    other_job = JobsAliveCheck(read=lambda: {"19": QueueEntry("RUNNING", "None")})
    with scheduler(other_job), pytest.raises(LLMUnavailableError, match="no live replica"):
        asyncio.run(_served_client(tmp_path).generate(USER, max_new_tokens=4))
    assert llm.requests == [] and llm.gets == []  # not even a health check


def test_a_running_replica_is_used_without_the_key(tmp_path: Path, llm, monkeypatch) -> None:
    monkeypatch.setenv("KEY", SECRET)
    _publish(tmp_path, "20_1", port=_port(llm.url))
    with scheduler(JobsAliveCheck(read=lambda: {"20_1": QueueEntry("RUNNING", "None")})):
        client = _served_client(tmp_path)  # as the interpret stage builds it
        assert asyncio.run(client.generate(USER, max_new_tokens=4)).text
    assert llm.gets == ["/health"] and len(llm.requests) == 1
    headers = llm.requests[0]["headers"]
    assert "authorization" not in {k.lower() for k in headers}
    assert SECRET not in json.dumps(headers)


def test_jobs_alive_is_running_slurm_jobs_and_fails_closed() -> None:
    queue = {"7": QueueEntry("RUNNING", "None"), "8_2": QueueEntry("RUNNING", "None"),
             "9": QueueEntry("PENDING", "Priority"), "x": QueueEntry("RUNNING", "None")}  # fmt: skip
    answer: list = [queue]

    def read() -> dict:
        if isinstance(answer[0], Exception):
            raise answer[0]
        return answer[0]

    check = JobsAliveCheck(read=read)
    ids = ["7", "8_2", "9", "x", "10", "7; rm", "../7"]
    assert check(ids) == {"7", "8_2"}
    answer[0] = SlurmUnavailable("squeue timed out")  # a slurmctld hiccup
    assert check(ids + ["11"]) == {"7", "8_2"}  # those it saw running, nothing new


# ------------------------------------------------------------------------ the stage
def test_an_outage_leaves_the_range_uncommitted_and_a_rerun_redoes_it(tmp_path, llm) -> None:
    cfg = interpret_point(tmp_path, llm.url)
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    write_store(paths)
    task = Task(0, 0, N_LATENTS)
    llm.script = [("status", 503)] * 2 + [("status", 500)] * 100  # down for the first run
    with pytest.raises(LLMUnavailableError, match="answered 50"):
        interpret.run(StageContext.of(cfg, paths, task, lambda: False))
    manifest = paths.manifest_file("interpret", 0)
    assert not is_committed(manifest) and not paths.records_file(0).exists()
    llm.script = []  # healthy again: the rerun redoes the range
    interpret.run(StageContext.of(cfg, paths, task, lambda: False))
    records = [json.loads(line) for line in paths.records_file(0).read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok"] * N_LATENTS
    assert all(r["explanation"] and r["scores"]["detection"] for r in records)
    assert is_committed(manifest)


def test_retry_errors_reopens_only_ranges_with_error_records(tmp_path: Path) -> None:
    cfg = load_run_config({"out_dir": str(tmp_path), "name": "old", **_small_interpret()})
    root = record_point(cfg)
    paths = RunPaths(root, cfg)
    plan, cfgs = load_sweep(root)
    job = next(j for j in plan.jobs if j.stage == "interpret")
    assert len(job.tasks) == 3
    for t, counts in zip(job.tasks, ({"ok": 4}, {"ok": 3, "error": 1}, {"explain_failed": 4})):
        commit_task(paths.manifest_file("interpret", t.index), {"status_counts": counts})
    assert job_pending(job, root, cfgs) == []
    assert reopen_errors(root) == [(RunIds.of(cfg).point, 1)]
    assert [t.index for t in job_pending(job, root, cfgs)] == [1]  # the next run redoes it
    assert reopen_errors(root) == []  # nothing committed holds an error any more
    kept = paths.manifest_file("interpret", 1).with_suffix(".json.reopened")
    assert json.loads(kept.read_text())["status_counts"]["error"] == 1


def _small_interpret() -> dict:
    return {"sae": {"num_latents": 256}, "interpret": {"num_latents": 12, "range_latents": 4}}


def test_rerun_retry_errors_on_a_local_sweep_says_to_run_it_again(tmp_path: Path) -> None:
    cfg = load_run_config({"out_dir": str(tmp_path), "name": "old", **_small_interpret()})
    paths = RunPaths(record_point(cfg), cfg)
    commit_task(paths.manifest_file("interpret", 2), {"status_counts": {"error": 4}})
    cmd = [sys.executable, "launch/rerun.py", str(paths.root), "--retry-errors"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=_env())
    assert out.returncode == 0, out.stderr
    assert "reopened 1 interpret range" in out.stdout and "sweep command again" in out.stdout
    assert not is_committed(paths.manifest_file("interpret", 2))


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
