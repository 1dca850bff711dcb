"""Train groups: one LM forward feeds several SAEs; bad input refused before training."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from interp.config import RunConfig, load_run_config
from interp.runs import RunPaths

pytestmark = pytest.mark.unit


def config(out_dir, *, layer: int = 2, sae=None, train=None, data=None, **top) -> RunConfig:
    """4-layer 256-d random Llama, 32-token windows, 7 steps of 256 vectors."""
    return load_run_config(
        {
            "name": "g",
            "out_dir": str(out_dir),
            "layer": layer,
            "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
            "data": {"ctx_len": 32, "max_tokens": 8192, **(data or {})},
            "sae": {"expansion_factor": 2, "k": 8, **(sae or {})},
            "train": {"num_tokens": 2048, "batch_size": 256, "lm_batch_size": 8,
                      "buffer_batches": 4, "warmup_steps": 2, "log_every": 3, **(train or {})},
            "collect": {"num_tokens": 1024, "slice_tokens": 1024},
            **top,
        }
    )  # fmt: skip


def paths_of(cfg: RunConfig) -> RunPaths:
    return RunPaths(RunPaths.sweep_root(cfg), cfg)


def weights(paths: RunPaths) -> dict[str, torch.Tensor]:
    from interp.sae import load_sae

    return load_sae(paths.sae_dir()).state_dict()


def test_group_key_needs_no_torch_and_groups_by_stream(tmp_path):
    code = (
        "import sys; from interp.groups import train_group_key; "
        "assert 'torch' not in sys.modules, 'train_group_key imported torch'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    from interp.groups import train_group_key

    base = config(tmp_path)
    same = [
        config(tmp_path, layer=1),
        config(tmp_path, sae={"architecture": "relu"}, train={"lr": 1e-3, "warmup_steps": 5}),
        config(tmp_path, hook="layers.1.mlp:input", target_hookpoint="layers.1.mlp",
               sae={"transcode": True}),
    ]  # fmt: skip
    assert {train_group_key(c) for c in same} == {train_group_key(base)}
    for other in (
        config(tmp_path, train={"batch_size": 128}),
        config(tmp_path, data={"shuffle_seed": 1}),
    ):
        assert train_group_key(other) != train_group_key(base)


@pytest.mark.slow  # two trainings with evaluations (97 s measured on the loaded 2-core box)
def test_group_members_train_exactly_as_alone(tmp_path):
    """A residual SAE trained in a group with a transcoder (another layer, another lr,
    periodic evaluation) ends bit for bit where it ends trained alone."""
    from interp.stages.train import train_group, train_sae

    solo = config(tmp_path / "solo")
    train_sae(solo, paths_of(solo))

    resid = config(tmp_path / "group")
    tc = config(
        tmp_path / "group",
        hook="layers.1.mlp:input",
        target_hookpoint="layers.1.mlp",
        sae={"transcode": True, "architecture": "topk", "k": 4},
        train={"lr": 1e-3, "eval_every": 3, "checkpoint_every": 2},
    )
    from interp.plan import Task
    from interp.runs import is_committed, read_manifest
    from interp.stages import train as stage

    members = [(resid, paths_of(resid)), (tc, paths_of(tc))]
    stage.run_group(members, Task(0, 0, 1), lambda: False)  # the lead's group task
    manifests = [read_manifest(p.manifest_file("train", 0)) for _, p in members]
    assert all(m is not None for m in manifests)
    summaries = [m["summary"] for m in manifests]
    assert manifests[1]["target_hookpoint"] == "layers.1.mlp"
    assert train_group(members) == summaries  # finished: nothing trains again
    assert all(is_committed(p.manifest_file("train", 0)) for _, p in members)

    a, b = weights(paths_of(solo)), weights(paths_of(resid))
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), f"{name} differs between solo and group training"

    tc_summary = summaries[1]
    assert tc_summary["target_hookpoint"] == "layers.1.mlp" and tc_summary["group_size"] == 2
    assert math.isfinite(tc_summary["fvu"]) and tc_summary["kl"] >= 0
    assert (paths_of(tc).sae_dir() / "cfg.json").is_file()
    assert paths_of(tc).sae_dir().parent.name == "layers.1.mlp:input"

    metrics = [json.loads(x) for x in paths_of(tc).train_metrics().read_text().splitlines()]
    assert [m["step"] for m in metrics] == [3, 6, 7]
    evaluated = [m for m in metrics if "eval_ce_increase" in m]
    assert [m["step"] for m in evaluated] == [3, 6]  # the end's evaluation is the summary's
    assert all(m["eval_kl"] >= 0 and math.isfinite(m["eval_fvu"]) for m in evaluated)
    for m in metrics:
        assert {"fvu", "l0", "loss", "dead_pct", "lr", "tokens_per_s"} <= set(m)

    from interp.groups import train_group_id

    ckpt = paths_of(resid).train_group_checkpoint_dir(train_group_id([resid, tc]))
    assert sorted(p.name for p in ckpt.iterdir()) == ["step-00000006", "step-00000007"]


def test_nan_loss_stops_naming_member_step_and_checkpoint(tmp_path, monkeypatch):
    import interp.train.loop as loop
    from interp.stages.train import train_sae
    from interp.train import TrainingDiverged

    real = loop._train_forward

    def poisoned(sae, x, y, dead_M, step):
        out = real(sae, x, y, dead_M, step)
        if step == 3:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(loop, "_train_forward", poisoned)
    cfg = config(tmp_path, train={"checkpoint_every": 2})
    with pytest.raises(TrainingDiverged) as err:
        train_sae(cfg, paths_of(cfg))
    message = str(err.value)
    assert "step 3" in message and "layers.2/topk-x2-k8" in message
    assert "step-00000002" in message
    assert not paths_of(cfg).sae_dir().exists()


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"hook": "layers.2.mlpp"}, r"unknown hookpoint 'layers.2.mlpp'.*layers\.\{0\.\.3\}\.mlp"),
        ({"sae": {"num_latents": 8, "k": 8}}, "k=8 must be smaller"),
        ({"sae": {"expansion_factor": 1, "k": 256}}, "k=256 must be smaller"),
    ],
)
def test_impossible_members_are_refused_before_training(tmp_path, overrides, match):
    from interp.stages.train import train_sae

    try:
        cfg = config(tmp_path, **overrides)
    except ValueError as err:  # refused by the config itself: fine, and earlier still
        assert __import__("re").search(match, str(err)), err
        return
    with pytest.raises(ValueError, match=match):
        train_sae(cfg, paths_of(cfg))
    assert not paths_of(cfg).train_metrics().exists()


def test_transcoder_without_target_and_mixed_streams_are_refused(tmp_path):
    from interp.groups import check_group

    with pytest.raises(ValueError, match="needs target_hookpoint"):
        config(tmp_path, hook="layers.1.mlp:input", sae={"transcode": True})
    with pytest.raises(ValueError, match="sae.transcode is false"):
        config(tmp_path, target_hookpoint="layers.1.mlp")
    with pytest.raises(ValueError, match="batch_size"):
        check_group([config(tmp_path), config(tmp_path, train={"batch_size": 128})])
    with pytest.raises(ValueError, match="same training twice"):
        check_group([config(tmp_path), config(tmp_path)])


@pytest.mark.slow  # five dictionaries, five evaluations (135 s on the loaded 2-core box)
def test_every_architecture_trains_in_one_group(tmp_path):
    from interp.sae import load_sae
    from interp.stages.train import train_group

    extras = {"topk": "auxk", "batchtopk": None, "jumprelu": "sparsity_loss",
              "relu": "sparsity_loss", "gated": "sparsity_loss"}  # fmt: skip
    members = [
        config(tmp_path, layer=1, sae={"architecture": a, "auxk_alpha": 0.03 if a == "topk" else 0})
        for a in extras
    ]
    summaries = train_group([(c, paths_of(c)) for c in members])
    assert summaries is not None
    for cfg, summary in zip(members, summaries):
        arch = cfg.sae.architecture
        last = json.loads(paths_of(cfg).train_metrics().read_text().splitlines()[-1])
        assert last["step"] == 7 and math.isfinite(last["loss"]) and last["lr"] > 0, arch
        if extras[arch]:
            assert extras[arch] in last, f"{arch} did not log {extras[arch]}"
        assert 0 < summary["fvu"] < 1.5 and summary["architecture"] == arch
        saved = load_sae(paths_of(cfg).sae_dir())
        assert saved.architecture == ("jumprelu" if arch == "batchtopk" else arch)
