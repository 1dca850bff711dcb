"""SAE training on the tiny random model: loop, metrics, summary, stage wiring, resume."""

from __future__ import annotations

import json
import math

import pytest
import torch

from interp.config import RunConfig, load_run_config
from interp.plan import Task
from interp.runs import RunPaths, is_committed
from interp.stages.context import StageContext

pytestmark = pytest.mark.unit

SUMMARY_KEYS = {"fvu", "l0", "dead_pct", "ce_clean", "ce_spliced", "ce_increase", "kl",
                "tokens", "steps", "wall_s", "tokens_per_s"}  # fmt: skip


def small_config(out_dir, **train) -> RunConfig:
    """4-layer 256-d random Llama, 32-token windows, 15 steps of 256 vectors."""
    return load_run_config(
        {
            "name": "t",
            "out_dir": str(out_dir),
            "layer": 2,
            "model": {"name": "tiny-random-llama", "dtype": "float32", "device": "cpu"},
            "data": {"ctx_len": 32, "max_tokens": 8192},
            "sae": {"expansion_factor": 2, "k": 8},
            "train": {"num_tokens": 4096, "batch_size": 256, "lm_batch_size": 8,
                      "buffer_batches": 4, "warmup_steps": 2, "log_every": 2, **train},
            "collect": {"num_tokens": 1024, "slice_tokens": 1024},
        }
    )  # fmt: skip


def paths_of(cfg: RunConfig) -> RunPaths:
    return RunPaths(RunPaths.sweep_root(cfg), cfg)


def read_metrics(paths: RunPaths) -> list[dict]:
    return [json.loads(line) for line in paths.train_metrics().read_text().splitlines()]


def checkpoints(paths: RunPaths) -> list[str]:
    """Committed checkpoint folders of the point's one-member train group."""
    from interp.groups import train_group_id

    folder = paths.train_group_checkpoint_dir(train_group_id([paths.cfg]))
    return sorted(c.name for c in folder.iterdir())


def stop_after(n: int):
    calls = {"n": 0}

    def should_stop() -> bool:
        calls["n"] += 1
        return calls["n"] >= n

    return should_stop


def test_lr_schedule_warms_up_then_decays_to_zero():
    from interp.train import default_lr, lr_factor

    factors = [lr_factor(s, warmup=4, total=12) for s in range(12)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert all(a > b for a, b in zip(factors[4:], factors[5:]))  # linear decay
    assert factors[-1] == pytest.approx(1 / 8)  # the last step still learns
    assert lr_factor(0, warmup=0, total=5) == 1.0
    assert default_lr(2**14) == pytest.approx(2e-4)
    assert default_lr(4 * 2**14) == pytest.approx(1e-4)


def test_train_stage_trains_saves_evaluates_and_commits(tmp_path, monkeypatch):
    from interp.sae import load_sae
    from interp.stages import train as stage

    cfg = small_config(tmp_path)
    paths = paths_of(cfg)
    stage.run(StageContext.of(cfg, paths, Task(0, 0, 1), lambda: False))

    manifest = paths.manifest_file("train", 0)
    assert is_committed(manifest)
    sae = load_sae(paths.sae_dir())
    assert (sae.d_in, sae.num_latents, sae.k) == (256, 512, 8)
    torch.testing.assert_close(sae.W_dec.norm(dim=1), torch.ones(512))

    metrics = read_metrics(paths)
    assert [m["step"] for m in metrics] == [2, 4, 6, 8, 10, 12, 14, 15]
    assert metrics[-1]["fvu"] < metrics[0]["fvu"] - 0.02, "FVU did not decrease"
    for m in metrics:
        assert m["tokens"] == 256 * m["step"]
        assert 0 < m["fvu"] < 2 and 0 < m["l0"] <= 8 and 0 <= m["dead_pct"] <= 100
        assert m["lr"] > 0 and m["tokens_per_s"] > 0

    summary = json.loads(paths.train_summary().read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert all(math.isfinite(summary[k]) for k in SUMMARY_KEYS)
    assert summary["steps"] == 15 and summary["tokens"] == 15 * 256
    assert 0 < summary["fvu"] < 1.5 and 0 < summary["l0"] <= 8 and summary["kl"] >= 0
    assert summary["ce_increase"] == pytest.approx(summary["ce_spliced"] - summary["ce_clean"])
    assert json.loads(manifest.read_text())["summary"] == summary

    def must_not_train(*args, **kwargs):
        raise AssertionError("a committed train task ran again")

    import interp.train.run

    monkeypatch.setattr(interp.train.run, "train_group", must_not_train)
    before = manifest.read_text()
    stage.run(StageContext.of(cfg, paths, Task(0, 0, 1), lambda: False))  # a no-op
    assert manifest.read_text() == before


def test_interrupted_run_resumes_to_the_same_weights(tmp_path):
    from interp.sae import load_sae
    from interp.stages import train as stage
    from interp.stages.train import train_sae

    straight = small_config(tmp_path / "straight")
    stopped = small_config(tmp_path / "stopped")
    assert paths_of(straight).ids.train == paths_of(stopped).ids.train
    train_sae(straight, paths_of(straight))

    p = paths_of(stopped)
    stage.run(StageContext.of(stopped, p, Task(0, 0, 1), stop_after(5)))  # preempted after step 5
    assert not is_committed(p.manifest_file("train", 0))
    assert not p.sae_dir().exists() and not p.train_summary().exists()
    assert checkpoints(p) == ["step-00000005"]
    assert train_sae(stopped, p, stop_after(3), checkpoint_every=4) is None  # stops at 8
    assert checkpoints(p) == ["step-00000005", "step-00000008"]  # keep_checkpoints=2
    stage.run(StageContext.of(stopped, p, Task(0, 0, 1), lambda: False))
    assert is_committed(p.manifest_file("train", 0))

    a, b = load_sae(paths_of(straight).sae_dir()), load_sae(p.sae_dir())
    for name, tensor in a.state_dict().items():
        assert torch.equal(tensor, b.state_dict()[name]), f"{name} differs after resume"

    def without_speed(metrics):
        return [{k: v for k, v in m.items() if k != "tokens_per_s"} for m in metrics]

    assert without_speed(read_metrics(p)) == without_speed(read_metrics(paths_of(straight)))
    summary_a = json.loads(paths_of(straight).train_summary().read_text())
    summary_b = json.loads(p.train_summary().read_text())
    for key in ("fvu", "l0", "dead_pct", "ce_spliced", "kl", "tokens", "steps"):
        assert summary_a[key] == summary_b[key], key


def test_too_few_tokens_for_one_batch_is_a_value_error(tmp_path):
    from interp.stages.train import train_sae

    cfg = small_config(tmp_path, num_tokens=64, batch_size=512)
    with pytest.raises(ValueError, match="fewer than train.batch_size"):
        train_sae(cfg, paths_of(cfg))


def test_shuffle_buffer_draws_every_vector_once_and_resumes_exactly() -> None:
    from interp.train.stream import ShuffleBuffer

    def run(buffer: ShuffleBuffer, pushes: list[torch.Tensor], pops: int) -> list[torch.Tensor]:
        out = []
        for chunk in pushes:
            buffer.push(chunk)
            while len(buffer) >= 48 and len(out) < pops:
                out.append(buffer.pop(16))
        return out

    ids = torch.arange(300, dtype=torch.float32)
    chunks = [torch.stack([ids[i : i + 30], -ids[i : i + 30]], 1) for i in range(0, 300, 30)]
    a = ShuffleBuffer(2, seed=5, device=torch.device("cpu"))
    drawn = run(a, chunks, pops=99)
    rest = a.pop(len(a))
    seen = torch.cat([*drawn, rest])
    assert torch.equal(seen[:, 1], -seen[:, 0])  # rows stay whole
    assert sorted(seen[:, 0].tolist()) == ids.tolist()  # every vector exactly once
    assert not torch.equal(seen[:48, 0], ids[:48])  # and shuffled

    b = ShuffleBuffer(2, seed=5, device=torch.device("cpu"))
    first = run(b, chunks[:5], pops=99)
    c = ShuffleBuffer(2, seed=0, device=torch.device("cpu"))
    c.load_state_dict(b.state_dict())  # a resumed run continues the same draw
    later = run(c, chunks[5:], pops=99)
    assert all(torch.equal(x, y) for x, y in zip(first + later, drawn))
