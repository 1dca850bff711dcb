from __future__ import annotations

from pathlib import Path

from interp.config import load_run_config
from interp.groups import train_group_key
from interp.plan import (
    collect_group_key,
    intervals,
    job_payload,
    job_pending,
    pending,
    plan_point,
    plan_sweep,
    task_committed,
)
from interp.runs import RunIds, RunPaths, commit_task

D_IN = 576


def test_intervals_tile_exactly() -> None:
    tasks = intervals(10, 4)
    assert [(t.start, t.stop) for t in tasks] == [(0, 4), (4, 8), (8, 10)]
    assert [t.index for t in tasks] == [0, 1, 2]
    assert intervals(8, 4)[-1].stop == 8


def test_point_graph_shape_and_dependencies() -> None:
    cfg = load_run_config(
        {"collect": {"num_tokens": 131072, "slice_tokens": 32768, "range_latents": 1000},
         "interpret": {"num_latents": 25, "range_latents": 10}}
    )  # fmt: skip
    train, collect, compact, interp = plan_point(cfg, D_IN)
    assert [j.stage for j in (train, collect, compact, interp)] == [
        "train", "collect", "compact", "interpret"
    ]  # fmt: skip
    assert len(collect.tasks) == 4 and collect.tasks[-1].stop == 131072
    assert len(compact.tasks) == 5 and compact.tasks[-1].stop == D_IN * 8
    assert [(t.start, t.stop) for t in interp.tasks] == [(0, 10), (10, 20), (20, 25)]
    assert collect.depends_on == (train.key,) and interp.depends_on == (compact.key,)


def test_sweep_shares_stages_and_gathers_everything() -> None:
    a = load_run_config({"interpret": {"num_latents": 4}})
    b = load_run_config({"interpret": {"num_latents": 8}})  # same train/collect
    c = load_run_config({"layer": 3})
    plan = plan_sweep([(a, D_IN), (b, D_IN), (c, D_IN)], group=False)
    stages = [j.stage for j in plan.jobs]
    assert stages.count("train") == 2 and stages.count("interpret") == 3
    gather = plan.jobs[-1]
    assert gather.stage == "gather" and len(gather.depends_on) == 3
    seen: set[str] = set()
    for job in plan.jobs:  # topological order
        assert set(job.depends_on) <= seen
        seen.add(job.key)
    assert plan_sweep([(a, D_IN), (b, D_IN), (c, D_IN)], group=False) == plan  # pure


def test_points_sharing_a_forward_train_in_one_group_job(tmp_path: Path) -> None:
    a = load_run_config({"out_dir": str(tmp_path), "layer": 3})
    b = load_run_config({"out_dir": str(tmp_path), "layer": 9, "sae": {"k": 16}})
    c = load_run_config({"out_dir": str(tmp_path), "layer": 9, "train": {"lr": 1e-3}})
    other = load_run_config({"out_dir": str(tmp_path), "train": {"seed": 1}})  # other stream
    plan = plan_sweep([(cfg, D_IN) for cfg in (a, b, c, other)])
    trains = [j for j in plan.jobs if j.stage == "train"]
    (group,) = [j for j in trains if j.members]
    assert len(trains) == 2 and len(group.members) == 3 and len(group.tasks) == 1
    assert train_group_key(a) == train_group_key(b) != train_group_key(other)
    # their collects share one forward per slice too; `other` joins the collect group
    # (same data and slices) while waiting on its own train job
    (collect,) = [j for j in plan.jobs if j.stage == "collect"]
    assert collect.members and len(collect.members) == 4
    assert collect_group_key(a) == collect_group_key(other)
    assert set(collect.depends_on) == {group.key} | {j.key for j in trains if not j.members}
    compacts = [j for j in plan.jobs if j.stage == "compact"]
    assert len(compacts) == 4 and all(j.depends_on == (collect.key,) for j in compacts)
    seen: set[str] = set()
    for job in plan.jobs:
        assert set(job.depends_on) <= seen
        seen.add(job.key)
    # the group is pending until every member's train manifest is committed
    cfgs = {RunIds.of(x).point: x for x in (a, b, c, other)}
    assert job_pending(group, tmp_path, cfgs) == list(group.tasks)
    payload = job_payload(group, cfgs)
    assert payload is not None and len(payload["members"]) == 3
    for point in group.members[:2]:
        commit_task(RunPaths(tmp_path, cfgs[point]).manifest_file("train", 0), {})
    assert job_pending(group, tmp_path, cfgs) == list(group.tasks)
    assert not task_committed("train", payload, tmp_path, group.tasks[0])
    commit_task(RunPaths(tmp_path, cfgs[group.members[2]]).manifest_file("train", 0), {})
    assert job_pending(group, tmp_path, cfgs) == []
    assert task_committed("train", payload, tmp_path, group.tasks[0])


def test_pending_skips_committed_tasks(tmp_path: Path) -> None:
    cfg = load_run_config({"out_dir": str(tmp_path)})
    paths = RunPaths(tmp_path, cfg)
    collect = plan_point(cfg, D_IN)[1]
    assert [t.index for t in pending(collect, paths)] == [0, 1]
    commit_task(paths.manifest_file("collect", 1), {})
    assert [t.index for t in pending(collect, paths)] == [0]


def test_million_latent_plan_is_fast() -> None:
    cfg = load_run_config({"sae": {"num_latents": 1 << 20}, "interpret": {"range_latents": 1024}})
    plan = plan_sweep([(cfg, D_IN)])
    assert len(plan.job(f"interpret-{plan.jobs[3].run_id}").tasks) == 1024
