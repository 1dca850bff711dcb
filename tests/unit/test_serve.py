"""Served LLM mode without a scheduler: replica files, discovery with health checks, the
serve stage's lifecycle around a real (tiny) HTTP server, and the plan/DAG shape."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from interp.config import load_run_config
from interp.llm import serving
from interp.llm.replicas import (
    NoReplicaError,
    Replica,
    discoverer,
    free_port,
    live_replicas,
    publish,
    read_replicas,
    replicas_dir,
    serve_id,
    wait_for_replicas,
    withdraw,
)
from interp.plan import plan_sweep
from interp.stages import serve as serve_stage
from slurm.decide import Decision, decide_service, dependency
from slurm.resources import StageResources
from slurm.services import service_payload, service_resources, split_service_payload
from slurm.status import Attempt, QueueEntry, Submission

SERVED = {
    "serve": {"enabled": True, "replicas": 2},
    "llm": {"backend": "http", "model": "smollm2-135m-instruct"},
}


class _Quiet(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    """A real HTTP server on loopback answering 404 to everything (like llama.cpp's /health)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Quiet)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def _replica(job: str, port: int, started: float = 1.0) -> Replica:
    return Replica(job, "127.0.0.1", port, "m", "llama_cpp", 1, started)


def _dead_port() -> int:
    return free_port("127.0.0.1", 20000, 40000)


def test_published_replicas_are_read_back_and_withdrawn(tmp_path: Path) -> None:
    publish(tmp_path, "s", _replica("12_1", 8101, started=2.0))
    publish(tmp_path, "s", _replica("12_0", 8100, started=1.0))
    (replicas_dir(tmp_path, "s") / "broken.json").write_text("{not json")
    got = read_replicas(tmp_path, "s")
    assert [r.job for r in got] == ["12_0", "12_1"]  # oldest first, the broken file skipped
    assert got[0].base_url == "http://127.0.0.1:8100/v1"
    withdraw(tmp_path, "s", "12_0")
    withdraw(tmp_path, "s", "12_0")  # idempotent
    assert [r.job for r in read_replicas(tmp_path, "s")] == ["12_1"]
    assert read_replicas(tmp_path, "other") == []


def test_discovery_ignores_dead_servers_and_gone_jobs(tmp_path: Path, http_port: int) -> None:
    publish(tmp_path, "s", _replica("1", http_port))
    publish(tmp_path, "s", _replica("2", _dead_port()))  # file left by a SIGKILLed job
    assert [r.job for r in live_replicas(tmp_path, "s")] == ["1"]
    assert discoverer(tmp_path, "s")() == [f"http://127.0.0.1:{http_port}/v1"]
    # the scheduler says job 1 is gone: its (still answering) server is not used
    assert live_replicas(tmp_path, "s", jobs_alive=lambda ids: set()) == []


def test_waiting_for_replicas_fails_clearly_when_none_comes(tmp_path: Path) -> None:
    with pytest.raises(NoReplicaError, match="rerun.py"):
        wait_for_replicas(tmp_path, "s", timeout_s=0.3, poll_s=0.1)


def test_serve_id_is_shared_by_points_talking_to_the_same_model() -> None:
    a = load_run_config({**SERVED, "layer": 3})
    b = load_run_config({**SERVED, "layer": 6})
    c = load_run_config({**SERVED, "llm": {**SERVED["llm"], "model": "other"}})
    assert serve_id(a.llm, a.serve) == serve_id(b.llm, b.serve) != serve_id(c.llm, c.serve)


def test_plan_starts_interpret_after_the_servers_and_servers_after_compact() -> None:
    cfgs = [load_run_config({**SERVED, "layer": layer}) for layer in (3, 6)]
    plan = plan_sweep([(c, 576) for c in cfgs])
    serve = [j for j in plan.jobs if j.stage == "serve"]
    assert len(serve) == 1 and len(serve[0].tasks) == 2  # one job, a replica per task
    keys = [j.key for j in plan.jobs]
    for job in plan.jobs:
        if job.stage == "interpret":
            assert job.starts_after == (serve[0].key,)
            assert keys.index(serve[0].key) < keys.index(job.key)
    assert plan.job(serve[0].depends_on[0]).stage == "compact"
    plain = plan_sweep([(load_run_config({}), 576)])
    assert not any(j.stage == "serve" or j.starts_after for j in plain.jobs)


def test_serving_needs_an_http_llm() -> None:
    cfg = load_run_config({"serve": {"enabled": True}})
    with pytest.raises(ValueError, match="llm.backend=http"):
        plan_sweep([(cfg, 576)])


def test_bad_serve_settings_name_the_fix() -> None:
    with pytest.raises(ValueError, match="port_range"):
        load_run_config({"serve": {"port_range": [9000, 8000]}})
    with pytest.raises(ValueError, match="tensor_parallel"):
        load_run_config({"serve": {"engine": "vllm", "gpus_per_replica": 2, "tensor_parallel": 4}})


def test_dependency_waits_for_success_and_for_servers_to_start() -> None:
    assert dependency(["5", "6_1"], ["9"]) == "afterok:5:6_1,after:9"
    assert dependency([], ["9"]) == "after:9"
    assert dependency([]) is None


def test_servers_are_kept_while_queued_and_restarted_only_when_needed() -> None:
    cfg = load_run_config(SERVED)
    job = plan_sweep([(cfg, 576)]).jobs[3]
    assert job.stage == "serve"
    sub = Submission(job.key, "serve", "40", (0, 1), True, "", 0.0)
    running = {
        0: Attempt("40_0", sub, QueueEntry("RUNNING", "None")),
        1: Attempt("40_1", sub, None),
    }
    d = decide_service(job, True, running)
    assert [a.slurm_id for a in d.keep] == ["40_0"] and [t.index for t in d.todo] == [1]
    assert decide_service(job, False, running).todo == []  # nothing to interpret: no new server
    stuck = {0: Attempt("40_0", sub, QueueEntry("PENDING", "DependencyNeverSatisfied"))}
    assert decide_service(job, True, stuck) == Decision([], ["40_0"], list(job.tasks))


def test_serve_resources_take_time_and_gpus_from_the_serve_config() -> None:
    cfg = load_run_config(
        {**SERVED, "serve": {"enabled": True, "replicas": 2, "time_min": 90, "gpus_per_replica": 4}}
    )
    plan = plan_sweep([(cfg, 576)])
    (job,) = [j for j in plan.jobs if j.spec.service]
    cfgs = {job.point: cfg}
    res = service_resources(StageResources(time_min=30, max_requeues=3), job, cfgs)
    assert (res.time_min, res.gpus_per_node, res.array_parallelism, res.max_requeues) == (
        90, 4, 2, 0,
    )  # fmt: skip
    plain = StageResources(time_min=30, gpus_per_task=1)
    res = service_resources(plain, job, {job.point: load_run_config(SERVED)})
    assert (res.time_min, res.gpus_per_task, res.max_requeues) == (30, 1, 0)  # profile's kept


def test_a_service_payload_names_the_work_it_serves_and_unwraps_on_the_node(
    tmp_path: Path,
) -> None:
    cfg = load_run_config(SERVED)
    plan = plan_sweep([(cfg, 576)])
    (job,) = [j for j in plan.jobs if j.spec.service]
    users = [j for j in plan.jobs if job.key in j.starts_after]
    payload = service_payload(job, plan, {job.point: cfg}, tmp_path)
    config, watched = split_service_payload(payload)
    assert load_run_config(config) == cfg
    assert watched is not None and watched["keys"] == [u.key for u in users]
    assert len(watched["manifests"]) == sum(len(u.tasks) for u in users)
    assert all("/manifest/interpret/" in m for m in watched["manifests"])
    assert split_service_payload({"members": []}) == ({"members": []}, None)  # not a service


class _FakeServer:
    """Stands in for the llama.cpp process in the serve stage's lifecycle test."""

    def __init__(self, port: int) -> None:
        self.host, self.port, self.alive, self.stopped = "127.0.0.1", port, True, False
        self.proc = type("P", (), {"pid": 4242})()

    def start(self, timeout_s: float) -> _FakeServer:
        return self

    def running(self) -> bool:
        return self.alive

    def stop(self, grace_s: float = 10.0) -> None:
        self.stopped = True

    def log_tail(self, n_lines: int = 30) -> str:
        return "segfault"


def test_replica_publishes_then_withdraws_when_the_work_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_run_config({**SERVED, "serve": {"enabled": True, "poll_s": 0.05}})
    fake = _FakeServer(8123)
    monkeypatch.setattr(serving, "start_replica", lambda *a, **k: fake)
    seen: list[list[str]] = []

    def finished() -> bool:
        seen.append([r.job for r in read_replicas(tmp_path, serve_id(cfg.llm, cfg.serve))])
        return len(seen) >= 2

    out = serve_stage.serve(cfg, tmp_path, lambda: False, finished, job="7_0", tick_s=0.01)
    assert seen[0] == ["7_0"]  # published while it served
    assert read_replicas(tmp_path, serve_id(cfg.llm, cfg.serve)) == [] and fake.stopped
    assert out["reason"].startswith("the interpret work") and out["base_url"].endswith(":8123/v1")


def test_a_dying_server_fails_the_replica_and_is_withdrawn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_run_config({**SERVED, "serve": {"enabled": True, "poll_s": 0.05}})
    fake = _FakeServer(8124)
    monkeypatch.setattr(serving, "start_replica", lambda *a, **k: fake)

    def finished() -> bool:
        fake.alive = False  # the process dies while published
        return False

    with pytest.raises(serve_stage.ServerDied, match="segfault"):
        serve_stage.serve(cfg, tmp_path, lambda: False, finished, job="8", tick_s=0.01)
    assert read_replicas(tmp_path, serve_id(cfg.llm, cfg.serve)) == [] and fake.stopped
    stop = serve_stage.serve  # a stop request ends it cleanly too
    fake.alive = True
    out = stop(cfg, tmp_path, lambda: True, lambda: False, job="9", tick_s=0.01)
    assert out["reason"].startswith("told to stop")


def test_status_shows_replicas_and_failed_ones_from_the_stage_report(tmp_path: Path) -> None:
    from slurm.status import format_status, job_status

    cfg = load_run_config(SERVED)
    plan = plan_sweep([(cfg, 576)])
    (job,) = [j for j in plan.jobs if j.spec.service]
    Submission(job.key, job.stage, "40", (0, 1), True, "", 0.0).save(tmp_path)
    publish(tmp_path, job.run_id, Replica("40_0", "127.0.0.1", 8100, "m", "llama_cpp", 1, 0.0))
    queue = {"40_0": QueueEntry("RUNNING", "None")}
    row = job_status(tmp_path, job, {job.point: cfg}, queue, {"40_1": "FAILED"}, False)
    assert (row.counts["running"], row.counts["failed"]) == (1, 1)
    text = format_status(tmp_path, [row])
    assert "served LLM replicas:" in text and "http://127.0.0.1:8100/v1" in text
    assert f"serve replica 1: job 40_1 FAILED; log {tmp_path}" in text
    gone = job_status(tmp_path, job, {job.point: cfg}, {}, {}, False)
    assert "job gone, file left over" in format_status(tmp_path, [gone])
