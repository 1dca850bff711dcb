"""Subject models bigger than one device: ``model.device_map`` / ``max_memory`` /
``offload_folder`` and the cut at the deepest hookpoint.

On CPU the real tiny model (tiny-random-llama, float32, 4 layers: the tied embedding is
~50 MB, each layer ~2.4 MB) is loaded with ``max_memory`` "cpu=56MB", which leaves room
for the embedding and about one layer: the rest is offloaded to disk. Offloaded layers
run on the CPU with the same float32 weights read back from the checkpoint, the same
kernels in the same order, so the activations, the sparse codes and the logits are
expected to equal the unsplit model's exactly (bitwise), and are asserted so.
"""

from __future__ import annotations

import gc
import json
import logging

import numpy as np
import pytest
import torch

from interp.config import ModelConfig, RunConfig, load_run_config
from interp.models import decoder_layers, load_causal_lm, load_subject
from interp.models.config import parse_max_memory
from interp.models.placement import gpu_problem, input_device
from interp.models.steer import SteerableLM
from interp.sae.build import build_sae
from interp.sae.config import SAEConfig
from interp.sae.encode import EncodeRange, encode_windows
from interp.train.evaluate import evaluate_spliced

TINY = "tiny-random-llama"
SMALL_CPU = "cpu=56MB"  # the embedding + ~1 layer; the rest goes to disk


def _split(tmp_path, **kw) -> ModelConfig:
    return ModelConfig(name=TINY, dtype="float32", device="cpu", device_map="auto",
                       max_memory=SMALL_CPU, offload_folder=str(tmp_path / "offload"), **kw)  # fmt: skip


def _whole() -> ModelConfig:
    return ModelConfig(name=TINY, dtype="float32", device="cpu")


# ----------------------------------------------------------------------------- config


def test_max_memory_parses_sizes_and_refuses_bad_syntax() -> None:
    assert parse_max_memory("0=20GiB, 1=1.5GB,cpu=64MiB") == {
        0: 20 * 2**30, 1: 1_500_000_000, "cpu": 64 * 2**20,
    }  # fmt: skip
    assert parse_max_memory("") == {}
    for bad in ("cuda0=20GiB", "0:20GiB", "0=20 gigs", "cpu=1GiB,cpu=2GiB"):
        with pytest.raises(ValueError, match=r"model\.max_memory"):
            parse_max_memory(bad)


def test_placement_keys_need_a_device_map_and_are_id_neutral() -> None:
    with pytest.raises(ValueError, match="set model.device_map=auto"):
        ModelConfig(max_memory="cpu=1GiB")
    with pytest.raises(ValueError, match=r"model.max_memory='0=2 parsecs'"):
        load_run_config({"model": {"device_map": "auto", "max_memory": "0=2 parsecs"}})
    from interp.runs import RunIds

    base = RunIds.of(load_run_config({}))
    split = load_run_config({"model": {"device_map": "sequential", "max_memory": "0=1GiB,cpu=2GiB",
                                       "offload_folder": "/tmp/x"}})  # fmt: skip
    assert isinstance(split, RunConfig) and RunIds.of(split) == base


def test_gpu_problem_names_a_gpu_a_task_does_not_see() -> None:
    assert gpu_problem("cpu=8GiB", 0) == ""
    assert gpu_problem("0=8GiB,1=8GiB,cpu=8GiB", 2) == ""
    line = gpu_problem("0=8GiB,3=8GiB", 2)
    assert "GPU 3" in line and "GPUs 0..1" in line and "\n" not in line
    assert "no GPU" in gpu_problem("0=8GiB", 0)


def test_load_refuses_a_gpu_this_process_does_not_see(tmp_path) -> None:
    gpus = torch.cuda.device_count()
    cfg = ModelConfig(name=TINY, dtype="float32", device="cpu", device_map="auto",
                      max_memory=f"{gpus}=1GiB,cpu=1GiB")  # fmt: skip
    with pytest.raises(ValueError, match=f"names GPU {gpus}"):
        load_subject(cfg, layer=1)


# ----------------------------------------------------------------------------- the cut


def test_collect_never_loads_the_layers_above_the_deepest_hookpoint(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="transformers"):
        subject = load_subject(_whole(), hookpoints=["layers.0.mlp", "layers.1"])
    assert subject.model.config.num_hidden_layers == 2  # built with two layers only
    assert not any(k.startswith("model.layers.2.") for k in subject.model.state_dict())
    assert "LOAD REPORT" not in caplog.text  # the left-out layers are not reported
    kept = load_subject(_whole(), hookpoints=["layers.1"], keep_full=True)
    assert kept.model.config.num_hidden_layers == 4  # train keeps them (spliced eval)
    ids = torch.randint(0, 1000, (2, 12))
    got, want = subject.capture(ids)["layers.1"], kept.capture(ids)["layers.1"]
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_cut_config_cuts_per_layer_lists_and_the_report_filter_keeps_real_findings() -> None:
    from transformers import Gemma2Config

    from interp.models.placement import _CutReportFilter, cut_config

    full = Gemma2Config(num_hidden_layers=4)
    cut = cut_config(full, 2)
    assert cut.num_hidden_layers == 2 and cut.layer_types == full.layer_types[:2]
    assert full.num_hidden_layers == 4  # a copy

    def kept(rows: str) -> bool:
        msg = f"LlamaForCausalLM LOAD REPORT from: x\nKey | Status |  | \n---+---\n{rows}"
        return _CutReportFilter(2).filter(logging.LogRecord("t", 30, "", 0, msg, None, None))

    assert not kept("model.layers.{2, 3}.mlp.up_proj.weight | UNEXPECTED |  | ")
    assert not kept("model.layers.3.mlp.up_proj.weight | UNEXPECTED |  | ")
    assert not kept("model.layers.{7...29}.mlp.up_proj.weight | \x1b[31mUNEXPECTED\x1b[0m |  | ")
    assert kept("model.layers.{1...29}.mlp.up_proj.weight | UNEXPECTED |  | ")
    assert kept("model.layers.1.mlp.up_proj.weight | UNEXPECTED |  | ")
    assert kept("model.layers.{2, 3}.mlp.up_proj.weight | UNEXPECTED |  | \n"
                "model.norm.weight | MISSING |  | ")  # fmt: skip


# ----------------------------------------------------------------------------- offload


def test_offloaded_model_really_is_offloaded_and_cleans_its_folder(tmp_path) -> None:
    subject = load_subject(_split(tmp_path), hookpoints=["layers.2"])
    placed = subject.model.hf_device_map
    assert "disk" in placed.values() and "cpu" in placed.values(), placed
    assert len(decoder_layers(subject.model)) == 3
    assert subject.input_device == torch.device("cpu") == subject.device
    (private,) = (tmp_path / "offload").iterdir()  # one private folder per load
    del subject
    gc.collect()
    assert not private.exists()


def _codes(cfg: ModelConfig, hookpoints: list[str]) -> list:
    windows = np.random.default_rng(0).integers(0, 49152, size=(6, 16))
    dictionaries = []
    for i, hookpoint in enumerate(hookpoints):
        gen = torch.Generator().manual_seed(i)
        sae = build_sae(SAEConfig(architecture="topk", k=8, expansion_factor=2), 256, generator=gen)
        dictionaries.append((hookpoint, sae))
    span = EncodeRange(16, 1, 4, 0, 6 * 16, "placement")
    return encode_windows(cfg, windows, dictionaries, span, "cpu", lambda: False)


def test_collect_codes_of_an_offloaded_model_equal_the_unsplit_models(tmp_path) -> None:
    hookpoints = ["layers.1.mlp", "layers.3"]  # the deepest is offloaded to disk
    want = _codes(_whole(), hookpoints)
    got = _codes(_split(tmp_path), hookpoints)
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a.latent_idx, b.latent_idx)
        np.testing.assert_array_equal(a.latent_val, b.latent_val)  # exact: same CPU kernels
        np.testing.assert_array_equal(a.token_ids, b.token_ids)


def test_spliced_evaluation_and_steering_run_on_an_offloaded_model(tmp_path) -> None:
    whole = load_causal_lm(TINY, "float32", "cpu")
    split = load_causal_lm(TINY, "float32", "cpu", placement=_split(tmp_path))
    assert "disk" in split.hf_device_map.values() and input_device(split).type == "cpu"
    gen = torch.Generator().manual_seed(0)
    sae = build_sae(SAEConfig(architecture="topk", k=8, expansion_factor=2), 256, generator=gen)
    windows = np.random.default_rng(1).integers(0, 49152, size=(4, 16))
    want = evaluate_spliced(sae, whole, windows, 1, hookpoint="layers.2")
    got = evaluate_spliced(sae, split, windows, 1, hookpoint="layers.2")
    assert got == want
    prompts = [[5, 6, 7, 8], [9, 10, 11]]
    vector = torch.randn(256, generator=gen)
    lms = [SteerableLM(m, "layers.1", bos_id=1, pad_id=0) for m in (whole, split)]
    lp = [lm.next_token_logprobs(prompts, vector) for lm in lms]
    torch.testing.assert_close(lp[0], lp[1], rtol=0, atol=0)
    assert lms[0].generate(prompts, 4, vector) == lms[1].generate(prompts, 4, vector)


# ----------------------------------------------------------------------------- preflight


def _point(tmp_path, **model) -> RunConfig:
    return load_run_config({"name": "s", "out_dir": str(tmp_path), "layer": 2,
                            "model": {"name": TINY, **model}, "llm": {"model": TINY}})  # fmt: skip


def test_preflight_refuses_a_gpu_the_tasks_do_not_see_in_one_line(tmp_path) -> None:
    from interp.preflight import PreflightError, point_problems, preflight

    cpu_only = _point(tmp_path, device_map="auto", max_memory="cpu=64MiB")
    assert point_problems(cpu_only, {}, task_gpus=0) == []  # fine on a CPU machine
    assert point_problems(_point(tmp_path, device_map="auto"), {}, task_gpus=0) == []
    two = _point(tmp_path, device_map="auto", max_memory="0=1GiB,1=1GiB,cpu=1GiB")
    assert point_problems(two, {}, task_gpus=2) == []
    with pytest.raises(PreflightError) as err:
        preflight([two], {}, task_gpus=1)
    (line,) = str(err.value).splitlines()[1:]
    assert "model.max_memory='0=1GiB,1=1GiB,cpu=1GiB' names GPU 1" in line and "GPUs 0..0" in line


def test_the_submitter_counts_the_gpus_a_task_gets() -> None:
    from slurm.resources import StageResources, stage_gpus
    from slurm.submit import task_gpus

    assert task_gpus({"executor": "local"}) == torch.cuda.device_count()
    assert stage_gpus(StageResources()) == 0
    assert stage_gpus(StageResources(gpus_per_node=4)) == 4
    assert stage_gpus(StageResources(gres="gpu:a100:2")) == 2
    assert stage_gpus(StageResources(gres="gpu:3")) == 3
    assert stage_gpus(StageResources(gres="shard:8")) is None
    profile = {"executor": "slurm", "resources": {"gpus_per_node": 0},
               "stages": {"train": {"gpus_per_node": 4}, "collect": {"gres": "gpu:a100:2"}}}  # fmt: skip
    assert task_gpus(profile) == 2


# ----------------------------------------------------------------------------- train


@pytest.mark.slow  # ~20 s: two train stages
def test_train_stage_on_an_offloaded_model_trains_the_same_dictionary(tmp_path) -> None:
    """The whole train stage (stream, fit, spliced evaluation with the full model kept)
    on the offloaded model: the same weights and held-out figures, bitwise."""
    from interp.plan import Task
    from interp.runs import RunPaths
    from interp.sae import load_sae
    from interp.stages import train as stage
    from interp.stages.context import StageContext

    results = []
    for name, model in (("whole", {}), ("split", {"device_map": "auto", "max_memory": SMALL_CPU})):
        raw = {"name": "t", "out_dir": str(tmp_path / name), "layer": 1,
               "model": {"name": TINY, "dtype": "float32", "device": "cpu", **model},
               "data": {"ctx_len": 32, "max_tokens": 2048}, "sae": {"expansion_factor": 2, "k": 8},
               "train": {"num_tokens": 512, "batch_size": 128, "lm_batch_size": 8,
                         "buffer_batches": 2, "warmup_steps": 1},
               "collect": {"num_tokens": 512, "slice_tokens": 512}}  # fmt: skip
        cfg = load_run_config(raw)
        paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
        stage.run(StageContext.of(cfg, paths, Task(0, 0, 1), lambda: False))
        summary = json.loads(paths.train_summary().read_text())
        results.append((load_sae(paths.sae_dir()).state_dict(), summary))
    (w_whole, s_whole), (w_split, s_split) = results
    for key in w_whole:
        torch.testing.assert_close(w_split[key], w_whole[key], rtol=0, atol=0)
    for key in ("fvu", "l0", "ce_clean", "ce_spliced", "kl"):
        assert s_split[key] == s_whole[key], key


def test_train_refuses_a_device_map_with_several_processes(tmp_path) -> None:
    from types import SimpleNamespace

    from interp.runs import RunPaths
    from interp.stages.train import train_group

    cfg = load_run_config({"name": "t", "out_dir": str(tmp_path), "layer": 1,
                           "model": {"name": TINY, "device_map": "auto"}})  # fmt: skip
    two_ranks = SimpleNamespace(world_size=2)
    with pytest.raises(ValueError, match="training runs 2 processes: run train as one process"):
        train_group([(cfg, RunPaths(RunPaths.sweep_root(cfg), cfg))], dist=two_ranks)


# ----------------------------------------------------------------------------- collect stage


def test_collect_stage_store_of_an_offloaded_model_equals_the_unsplit_models(
    tmp_path, monkeypatch
) -> None:
    """The collect stage's committed slice group (real Zarr) through the offloaded model
    equals, array for array, the one through the whole model."""
    import interp.data
    from interp.plan import Task
    from interp.runs import RunPaths, is_committed
    from interp.sae import save_sae
    from interp.stages import collect
    from interp.stages.context import StageContext
    from interp.store.compact import load_slices, merge_slices

    windows = np.random.default_rng(0).integers(0, 4000, (8, 32))
    monkeypatch.setattr(interp.data, "load_windows", lambda paths, split: windows)
    stores = []
    for name, model in (("whole", {}), ("split", {"device_map": "auto", "max_memory": SMALL_CPU})):
        cfg = load_run_config({"name": "c", "out_dir": str(tmp_path / name), "layer": 3,
                               "model": {"name": TINY, "dtype": "float32", "device": "cpu", **model},
                               "data": {"ctx_len": 32, "max_tokens": 8192, "exclude_first": 1},
                               "sae": {"expansion_factor": 2, "k": 8}, "train": {"num_tokens": 2048},
                               "collect": {"num_tokens": 256, "slice_tokens": 256}})  # fmt: skip
        paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
        gen = torch.Generator().manual_seed(0)
        save_sae(build_sae(cfg.sae, 256, generator=gen), paths.sae_dir())
        collect.run(StageContext.of(cfg, paths, Task(0, 0, 256), lambda: False))
        assert is_committed(paths.manifest_file("collect", 0))
        (info,) = load_slices([paths.slice_group(0)])
        csr = merge_slices([info], 0, 512)
        stores.append((csr.offsets, csr.tok, csr.val))
    assert len(stores[0][1]) > 0
    for got, want in zip(stores[1], stores[0]):
        np.testing.assert_array_equal(got, want)
