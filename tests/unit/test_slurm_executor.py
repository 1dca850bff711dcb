"""The SLURM layer's pure parts, without SLURM: profiles, array splitting, what to resubmit."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import yaml

from interp.config import load_run_config
from interp.plan import StageJob, Task, intervals, plan_sweep
from slurm.slurm_executor import (
    Decision,
    StageCall,
    chunk_parallelism,
    decide,
    dependency,
    dependency_ids,
    load_cluster,
    signals_seen,
    split_tasks,
)
from slurm.status import Attempt, QueueEntry, Submission

ROOT = Path(__file__).resolve().parents[2]


def profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "conf" / "cluster" / f"{name}.yaml").read_text())


# ------------------------------------------------------------------------------ arrays at scale


@pytest.mark.parametrize(
    ("n", "max_size", "sizes"),
    [(1024, 1001, [512, 512]), (1001, 1001, [1001]), (7, 3, [3, 2, 2]), (1, 5, [1]), (0, 5, [])],
)
def test_split_tasks_is_balanced_ordered_and_within_the_limit(n, max_size, sizes) -> None:
    tasks = intervals(n * 1024, 1024)
    chunks = split_tasks(tasks, max_size)
    assert [len(c) for c in chunks] == sizes
    assert [t for c in chunks for t in c] == list(tasks)


def test_parallelism_is_shared_among_the_arrays_of_one_stage() -> None:
    assert chunk_parallelism(64, 1) == 64
    assert chunk_parallelism(64, 2) == 32
    assert chunk_parallelism(3, 2) == 2
    assert chunk_parallelism(1, 4) == 1


def test_a_million_latent_sweep_plans_into_split_arrays() -> None:
    raw = {"sae": {"num_latents": 2**20}, "collect": {"range_latents": 1024}}
    raw["interpret"] = {"num_latents": 0, "range_latents": 1024}
    cfgs = [load_run_config({**raw, "layer": layer}) for layer in (6, 12, 18)]
    plan = plan_sweep([(cfg, 576) for cfg in cfgs])
    chunks = [split_tasks(j.tasks, 1001) for j in plan.jobs]
    # one train group and one collect group (2 slices) for the 3 layers
    assert plan.num_tasks == 1 + 2 + 3 * (1024 + 1024) + 1
    assert sum(len(c) for c in chunks) == 1 + 1 + 3 * 4 + 1  # compact, interpret: 2 arrays each


# ------------------------------------------------------------------------------ profiles


@pytest.mark.parametrize("name", ["local_slurm", "example_site"])
def test_shipped_profiles_are_valid(name: str) -> None:
    cluster = load_cluster(profile(name))
    assert set(cluster.stages) == {"serve", "train", "collect", "compact", "interpret", "gather"}


def test_stage_keys_override_shared_resources_and_add_setup_and_flags() -> None:
    cluster = load_cluster(profile("example_site"))
    train, compact = cluster.stages["train"], cluster.stages["compact"]
    assert (train.partition, train.gpus_per_node, train.tasks_per_node) == ("gpu", 4, 4)
    assert (compact.partition, compact.mem_gb) == ("cpu", 32)
    assert train.sbatch == ("--mail-type=FAIL", "--exclusive")
    params = train.executor_params("interp-train-x")
    assert params["additional_parameters"] == {"mail-type": "FAIL", "exclusive": True}
    assert params["mem"] == "262144M" and params["ntasks_per_node"] == 4
    assert params["setup"][0] == "module load cuda/12.4"
    assert "account" not in params  # null: the site's default


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"partitions": "x"}, "unknown key(s) ['partitions'] in cluster"),
        ({"executor": "local"}, "needs 'slurm'"),
        ({"stages": {"explain": {}}}, "stages are"),
        ({"resources": {"time_min": "1h"}}, "cluster.resources.time_min: expected an integer"),
        ({"resources": {"gpus": 1}}, "unknown key(s) ['gpus'] in cluster.resources"),
        ({"stages": {"train": {"time_min": 1, "signal_delay_s": 90}}}, "must be well under"),
        ({"resources": {"sbatch": ["--array=0-3"]}}, "set by interp itself"),
        ({"resources": {"sbatch": ["--partition=gpu"]}}, "use the key partition"),
        ({"resources": {"sbatch": ["exclusive"]}}, "--name=value"),
        ({"stages": {"train": {"gpus_per_node": 1, "gpus_per_task": 1}}}, "not both"),
        ({"stages": {"compact": {"nodes": 0}}}, "cluster.stages.compact: nodes=0 must be > 0"),
        ({"max_array_size": -1}, "max_array_size"),
        ({"worker": "not a function"}, "module:function"),
    ],
)
def test_bad_profiles_fail_naming_the_key(change: dict, message: str) -> None:
    raw = {**profile("local_slurm"), **change}
    with pytest.raises(ValueError) as err:
        load_cluster(raw)
    assert message in str(err.value)


def test_unknown_executor_is_refused_before_anything_runs() -> None:
    from slurm.submit import check_cluster

    with pytest.raises(ValueError, match="pick a profile"):
        check_cluster({"executor": "slurmm"})


# ------------------------------------------------------------------------------ resubmission


def submission(job_id: str, tasks: tuple[int, ...]) -> Submission:
    return Submission("collect-x", "collect", job_id, tasks, len(tasks) > 1, "", 0.0)


def attempt(sub: Submission, pos: int, state: str | None, reason: str = "None") -> Attempt:
    live = QueueEntry(state, reason) if state else None
    return Attempt(sub.slurm_ids()[pos], sub, live)


JOB = StageJob("collect-x", "collect", "x", tuple(Task(i, i, i + 1) for i in range(4)), (), "p")


def test_decide_keeps_queued_work_and_resubmits_failed_or_missing() -> None:
    sub = submission("10", (0, 1, 2))
    tries = {0: attempt(sub, 0, "RUNNING"), 1: attempt(sub, 1, "PENDING"), 2: attempt(sub, 2, None)}
    d = decide(JOB, list(JOB.tasks), tries, [])
    assert [a.slurm_id for a in d.keep] == ["10_0", "10_1"]
    assert d.cancel == [] and [t.index for t in d.todo] == [2, 3]


def test_decide_cancels_what_waits_on_a_failed_or_replaced_dependency() -> None:
    sub = Submission("collect-x", "collect", "10", (0, 1, 2, 3), True, "afterok:7_0:8", 0.0)
    tries = {
        0: attempt(sub, 0, "RUNNING"),
        1: attempt(sub, 1, "PENDING", "DependencyNeverSatisfied"),
        2: attempt(sub, 2, "PENDING", "Dependency"),
    }
    assert decide(JOB, list(JOB.tasks), tries, ["7", "8"]).cancel == ["10_1"]
    assert decide(JOB, list(JOB.tasks), tries, ["7_1"]).cancel == ["10_1"]
    d = decide(JOB, list(JOB.tasks), tries, ["7_1", "9"])  # upstream resubmitted as job 9
    assert d.cancel == ["10_1", "10_2"]  # the running task has its inputs: it is left alone
    assert [t.index for t in d.todo] == [1, 2, 3] and [a.slurm_id for a in d.keep] == ["10_0"]


def test_a_gather_that_misses_new_points_is_replaced_even_while_running() -> None:
    gather = StageJob("gather", "gather", "g", (Task(0, 0, 1),), (), "")
    sub = Submission("gather", "gather", "20", (0,), False, "afterok:11:12", 0.0)
    tries = {0: Attempt("20", sub, QueueEntry("RUNNING", "None"))}
    assert decide(gather, list(gather.tasks), tries, ["11", "12"]).keep == [tries[0]]
    assert decide(gather, list(gather.tasks), tries, []).keep == [tries[0]]
    assert decide(gather, list(gather.tasks), tries, ["11", "12", "13"]).cancel == ["20"]


def test_dependencies_name_whole_arrays_only_when_every_index_is_kept() -> None:
    whole, part = submission("10", (0, 1)), submission("11", (2, 3))
    keep = [attempt(whole, 0, "PENDING"), attempt(whole, 1, "RUNNING"), attempt(part, 1, "RUNNING")]
    assert dependency_ids(keep, [submission("12", (5, 6))]) == ["12", "10", "11_1"]
    assert dependency(["12", "11_1"]) == "afterok:12:11_1"
    assert dependency([]) is None
    assert Decision([], [], []).todo == []


def test_submission_maps_array_indices_back_to_plan_tasks(tmp_path: Path) -> None:
    sub = submission("77", (3, 17, 42))
    sub.save(tmp_path)
    (loaded,) = Submission.load_all(tmp_path, "collect-x")
    assert loaded == sub and loaded.slurm_ids() == ["77_0", "77_1", "77_2"]
    assert submission("78", (5,)).slurm_ids() == ["78"]


# ------------------------------------------------------------------------------ stop and requeue


def test_signals_seen_names_the_signal_without_replacing_the_handler() -> None:
    flags = []
    old = signal.signal(signal.SIGUSR1, lambda s, f: flags.append(s))
    try:
        with signals_seen() as seen:
            os.kill(os.getpid(), signal.SIGUSR1)
            time.sleep(0.01)
        assert seen == {signal.SIGUSR1} and flags == [signal.SIGUSR1]
    finally:
        signal.signal(signal.SIGUSR1, old)


class Requeued(Exception):
    pass


def stopped_by_usr2(stage: str, cfg_dict: dict, root: str, task: Task) -> str:
    """A worker whose stage is told to stop by USR2 and returns uncommitted."""
    signal.signal(signal.SIGUSR2, lambda s, f: None)  # the worker's stop flag
    os.kill(os.getpid(), signal.SIGUSR2)
    time.sleep(0.01)
    return "stopped"


def stopped_by_term(stage: str, cfg_dict: dict, root: str, task: Task) -> str:
    signal.signal(signal.SIGTERM, lambda s, f: None)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(0.01)
    return "stopped"


def _requeue(signum: int, frame: object) -> None:
    raise Requeued


def test_uncommitted_stop_on_usr2_hands_over_to_submitits_requeue(tmp_path: Path) -> None:
    cfg = {"out_dir": str(tmp_path)}
    old_usr2, old_term = signal.getsignal(signal.SIGUSR2), signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGUSR2, _requeue)  # what submitit installs in a job
        with pytest.raises(Requeued):
            StageCall(f"{__name__}:stopped_by_usr2")("collect", cfg, str(tmp_path), Task(0, 0, 1))
        signal.signal(signal.SIGUSR2, _requeue)
        with pytest.raises(RuntimeError, match="SIGTERM"):  # scancel: fail, never requeue
            StageCall(f"{__name__}:stopped_by_term")("collect", cfg, str(tmp_path), Task(0, 0, 1))
    finally:
        signal.signal(signal.SIGUSR2, old_usr2)
        signal.signal(signal.SIGTERM, old_term)
