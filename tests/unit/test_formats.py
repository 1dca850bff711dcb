"""Interop: our loaders and exporter against outputs the REAL eai-sparsify and SAELens
computed (fixtures from tests/fixtures/make_interop_fixtures.py), round trips, and the
SAEBench custom-SAE interface."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from interp.sae import load_sae
from interp.sae.build import architecture_class
from interp.sae.formats import (
    SAELENS_WEIGHTS,
    SAEBenchConfig,
    detect_format,
    export_saelens,
    fold_decoder_norms,
    load_dictionary,
    load_saelens,
    load_sparsify,
    load_sparsify_many,
    read_saelens_cfg,
    sparsify_hookpoints,
    to_saebench,
)

pytestmark = pytest.mark.unit

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
TOL = {"atol": 1e-5, "rtol": 1e-5}
SAELENS_FIXTURES = {  # fixture folder -> our architecture it loads as
    "saelens_topk": "topk",
    "saelens_topk_nobdec": "topk",
    "saelens_pre6_topk": "topk",
    "saelens_jumprelu": "jumprelu",
    "saelens_batchtopk": "jumprelu",
    "saelens_batchtopk_training": "jumprelu",
    "saelens_standard": "relu",
    "saelens_gated": "gated",
    "saelens_transcoder": "relu",
    "saelens_jumprelu_transcoder": "jumprelu",
}
OURS = {  # our dictionaries exported for SAELens by the fixture script -> architecture
    "ours_topk": "topk",
    "ours_batchtopk": "batchtopk",
    "ours_jumprelu": "jumprelu",
    "ours_relu": "relu",
    "ours_gated": "gated",
    "ours_relu_transcoder": "relu",
    "ours_jumprelu_transcoder": "jumprelu",
}


def needs(arch: str) -> None:
    """Every fixture's architecture is registered with a class (no skips left)."""
    assert architecture_class(arch).architecture == arch


def expected(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(FIX / "expected" / f"{name}.safetensors"))


def dense_code(sae, x: torch.Tensor) -> torch.Tensor:
    acts, idx = sae.encode(x)
    return torch.zeros(*acts.shape[:-1], sae.num_latents).scatter(-1, idx, acts)


def assert_same_outputs(sae, exp: dict[str, torch.Tensor]) -> None:
    """Our dense latent activations and reconstruction equal the package's."""
    with torch.no_grad():
        acts = dense_code(sae, exp["x"])
        recon = sae.decode(*sae.encode(exp["x"]))
    assert (exp["acts"] != 0).sum(-1).float().mean() > 0.5, "fixture has no active latents"
    torch.testing.assert_close(acts, exp["acts"], **TOL)
    torch.testing.assert_close(recon, exp["recon"], **TOL)


def perturbed(arch: str, *, d_in: int = 12, m: int = 40, d_out: int = 0, seed: int = 0):
    """A fresh dictionary of ``arch`` with non-trivial biases (and thresholds); a
    transcoder to width ``d_out`` when that is set."""
    g = torch.Generator().manual_seed(seed)
    kwargs = {"k": 5} if arch in ("topk", "batchtopk") else {}
    if d_out:
        kwargs.update(transcode=True, d_out=d_out)
    sae = architecture_class(arch)(d_in, m, generator=g, **kwargs)
    with torch.no_grad():
        if d_out:
            sae.W_dec.copy_(torch.randn(m, d_out, generator=g))
        sae.b_dec.copy_(0.3 * torch.randn(sae.d_out, generator=g))
        sae.encoder.bias.copy_(0.1 * torch.randn(m, generator=g))
        for name, p in sae.named_parameters():
            if name in ("threshold", "b_mag", "r_mag"):
                p.copy_(0.1 * torch.rand(p.shape, generator=g))
        if arch == "batchtopk":
            sae.threshold.fill_(0.2)  # as if learned: the JumpReLU export must carry it
    return sae, 1.5 * torch.randn(16, d_in, generator=g)


# ---------------------------------------------------------------------------- sparsify
@pytest.mark.parametrize("hook", ["layers.0", "layers.1"])
def test_sparsify_run_matches_sparsify_outputs(hook):
    sae = load_sparsify(FIX / "sparsify_run", hook)
    assert sae.num_latents == 4 * 24  # num_latents 0 = d_in * expansion_factor
    assert_same_outputs(sae, expected(f"sparsify_run.{hook}"))
    exp = expected(f"sparsify_run.{hook}")
    top_acts, top_idx = sae.encode(exp["x"])
    assert top_acts.shape == exp["top_acts"].shape  # K = k, as sparsify's


def test_sparsify_run_folder_lists_and_picks_hookpoints():
    assert sparsify_hookpoints(FIX / "sparsify_run") == ["layers.0", "layers.1"]
    assert list(load_sparsify_many(FIX / "sparsify_run")) == ["layers.0", "layers.1"]
    with pytest.raises(ValueError, match=r"several hookpoints .*layers\.0.*pass hookpoint="):
        load_sparsify(FIX / "sparsify_run")
    with pytest.raises(FileNotFoundError, match="layers.7"):
        load_sparsify(FIX / "sparsify_run", "layers.7")


def test_sparsify_natural_order_and_seed_folders(tmp_path):
    for hook in ["layers.10", "layers.2", "layers.2/seed1"]:
        shutil.copytree(FIX / "sparsify_run" / "layers.0", tmp_path / hook, dirs_exist_ok=True)
    assert sparsify_hookpoints(tmp_path) == ["layers.2", "layers.2/seed1", "layers.10"]


def test_sparsify_bf16_checkpoint_loads_as_float32():
    sae = load_sparsify(FIX / "sparsify_bf16")
    assert sae.W_dec.dtype == torch.float32 and sae.num_latents == 64
    assert_same_outputs(sae, expected("sparsify_bf16"))


def test_sparsify_transcoder_does_not_center_input():
    sae = load_sparsify(FIX / "sparsify_transcoder")  # one hookpoint: no name needed
    assert sae.transcode
    assert_same_outputs(sae, expected("sparsify_transcoder.layers.1.mlp"))


def test_sparsify_unsupported_options_are_refused(tmp_path):
    for key, value in [("skip_connection", True), ("activation", "groupmax")]:
        folder = tmp_path / key
        shutil.copytree(FIX / "sparsify_run" / "layers.0", folder)
        cfg = json.loads((folder / "cfg.json").read_text())
        (folder / "cfg.json").write_text(json.dumps({**cfg, key: value}))
        with pytest.raises(ValueError, match=key if key != "activation" else "groupmax"):
            load_sparsify(folder)
    (tmp_path / "skip_connection" / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no sparsify checkpoint"):
        load_sparsify(tmp_path / "skip_connection" / "empty")


# ---------------------------------------------------------------------------- SAELens
@pytest.mark.parametrize("name", sorted(SAELENS_FIXTURES))
def test_saelens_checkpoint_matches_saelens_outputs(name):
    needs(SAELENS_FIXTURES[name])
    sae = load_saelens(FIX / name)
    assert sae.architecture == SAELENS_FIXTURES[name]
    assert_same_outputs(sae, expected(name))


def test_saelens_folds_keep_decoder_constraint_where_exact():
    cfg = read_saelens_cfg(FIX / "saelens_topk")
    assert cfg["rescale_acts_by_decoder_norm"]
    sae = load_saelens(FIX / "saelens_topk")
    norms = sae.W_dec.norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))  # folded: rows unit-norm
    assert sae.normalize_decoder


def test_saelens_pre6_config_is_translated():
    cfg = read_saelens_cfg(FIX / "saelens_pre6_topk")
    assert cfg["architecture"] == "topk" and cfg["k"] == 8
    assert cfg["metadata"]["hook_name"] == "blocks.1.hook_resid_post"
    assert cfg["normalize_activations"] == "none"


def test_saelens_bad_input_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="SAELens SAE folder"):
        load_saelens(tmp_path)
    folder = tmp_path / "sae"
    shutil.copytree(FIX / "saelens_topk", folder)
    cfg = json.loads((folder / "cfg.json").read_text())
    for change, match in [
        ({"architecture": "matching_pursuit"}, "not supported: use one of"),
        ({"normalize_activations": "layer_norm"}, "normalises every token"),
        ({"d_sae": 97}, "do not match cfg"),
    ]:
        (folder / "cfg.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(ValueError, match=match):
            load_saelens(folder)


@pytest.mark.parametrize("name", sorted(OURS))
def test_our_export_gives_saelens_the_same_outputs(name, tmp_path):
    """SAELens itself loaded our export (fixture script): it computed what we compute."""
    needs(OURS[name])
    ours = load_sae(FIX / name)
    assert ours.architecture == OURS[name] and ours.transcode == name.endswith("transcoder")
    assert_same_outputs(ours.to_inference(), expected(f"{name}.saelens"))
    # ... and today's exporter still writes exactly what SAELens was checked against.
    hook = "blocks.1.hook_resid_post"
    export_saelens(ours, tmp_path / name, hook_name=hook, model_name="tiny")
    committed = FIX / f"{name}.saelens"
    assert json.loads((tmp_path / name / "cfg.json").read_text()) == json.loads(
        (committed / "cfg.json").read_text()
    )
    now, then = (load_file(str(p / SAELENS_WEIGHTS)) for p in (tmp_path / name, committed))
    assert now.keys() == then.keys()
    for key in now:
        torch.testing.assert_close(now[key], then[key], atol=0, rtol=0)


def test_our_native_save_gives_sparsify_the_same_outputs():
    """sparsify's SparseCoder.load_from_disk read our TopK folder (fixture script)."""
    assert_same_outputs(load_sae(FIX / "ours_topk"), expected("ours_topk.sparsify"))


@pytest.mark.parametrize(
    ("arch", "d_out"),
    [("topk", 0), ("batchtopk", 0), ("jumprelu", 0), ("relu", 0), ("gated", 0),
     ("relu", 7), ("jumprelu", 7)],
)  # fmt: skip
def test_export_then_load_round_trip(arch, d_out, tmp_path):
    needs(arch)
    sae, x = perturbed(arch, d_out=d_out)
    if arch == "batchtopk":
        needs("jumprelu")
    inf = sae.to_inference()
    export_saelens(sae, tmp_path / arch, hook_name="blocks.0.hook_resid_post", model_name="m")
    back = load_saelens(tmp_path / arch)
    assert back.architecture == inf.architecture and back.transcode == bool(d_out)
    with torch.no_grad():
        torch.testing.assert_close(dense_code(back, x), dense_code(inf, x), **TOL)
        torch.testing.assert_close(back.decode(*back.encode(x)), inf.decode(*inf.encode(x)))


def test_export_never_overwrites(tmp_path):
    sae = load_sae(FIX / "ours_topk")
    export_saelens(sae, tmp_path / "x", hook_name="h", model_name="m")
    with pytest.raises(FileExistsError, match="remove it"):
        export_saelens(sae, tmp_path / "x", hook_name="h", model_name="m")


def test_export_refuses_what_saelens_cannot_express(tmp_path):
    tc = load_sparsify(FIX / "sparsify_transcoder")
    with pytest.raises(ValueError, match="cannot export a topk transcoder"):
        export_saelens(tc, tmp_path / "t", hook_name="h", model_name="m")
    assert not (tmp_path / "t").exists()


# ---------------------------------------------------------------------------- either
def test_load_dictionary_detects_the_format(tmp_path):
    assert detect_format(FIX / "saelens_topk") == "saelens"
    assert detect_format(FIX / "ours_topk") == detect_format(FIX / "sparsify_run") == "sparsify"
    assert load_dictionary(FIX / "saelens_topk").architecture == "topk"
    assert load_dictionary(FIX / "sparsify_run", "layers.1").num_latents == 96
    with pytest.raises(ValueError, match="drop hookpoint"):
        load_dictionary(FIX / "saelens_topk", "layers.1")
    with pytest.raises(FileNotFoundError, match="neither a SAELens SAE folder"):
        detect_format(tmp_path)


# ---------------------------------------------------------------------------- SAEBench
def test_saebench_config_has_every_field_saebench_declares():
    manifest = json.loads((FIX / "manifest.json").read_text())["saebench"]
    ours = {f.name for f in dataclasses.fields(SAEBenchConfig)}
    assert set(manifest["config_fields"]) <= ours
    assert manifest["check_decoder_norms(ours_topk)"]  # SAEBench's own check, on our export


def test_saebench_adapter_interface():
    sae = load_sparsify(FIX / "sparsify_run", "layers.0")
    bench = to_saebench(sae, model_name="tiny", hook_layer=0, context_size=32)
    d, m = sae.d_in, sae.num_latents
    assert bench.W_enc.shape == (d, m) and bench.W_dec.shape == (m, d)
    assert bench.b_enc.shape == (m,) and bench.b_dec.shape == (d,)
    cfg = bench.cfg
    assert (cfg.d_in, cfg.d_sae, cfg.hook_layer) == (d, m, 0)
    assert cfg.hook_name == "blocks.0.hook_resid_post" and cfg.architecture == "topk"
    assert cfg.dtype == "float32" and cfg.context_size == 32 and cfg.model_name == "tiny"
    assert bench.check_decoder_norms()
    assert not hasattr(bench, "b_mag") and bench.cfg.model_from_pretrained_kwargs == {}
    assert bench.to(device="cpu", dtype=torch.float64) is bench
    assert bench.dtype == torch.float64 and bench.cfg.dtype == "float64"
    bench.to(dtype=torch.float32)
    x = expected("sparsify_run.layers.0")["x"].reshape(2, 8, d)  # [batch, seq, D] works
    with torch.no_grad():
        f = bench.encode(x)
        assert f.shape == (2, 8, m)
        torch.testing.assert_close(f.reshape(16, m), expected("sparsify_run.layers.0")["acts"])
        torch.testing.assert_close(bench(x), bench.decode(f))
        torch.testing.assert_close(
            bench(x).reshape(16, d), expected("sparsify_run.layers.0")["recon"]
        )


@pytest.mark.parametrize("name", ["saelens_standard", "saelens_jumprelu", "saelens_gated"])
def test_saebench_adapter_folds_decoder_norms(name):
    """SAELens leaves decoder rows off unit norm; the adapter folds the norms into the
    encoder (thresholds, magnitude bias) so SAEBench's check passes and outputs stay."""
    needs(SAELENS_FIXTURES[name])
    sae = load_saelens(FIX / name)
    assert not torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.num_latents))
    bench = to_saebench(sae, model_name="tiny", hook_layer=1)
    assert bench.check_decoder_norms()
    assert bench.cfg.architecture_str == SAELENS_FIXTURES[name]
    exp = expected(name)
    with torch.no_grad():
        torch.testing.assert_close(bench(exp["x"]), exp["recon"], **TOL)
        active = bench.encode(exp["x"]) > 0  # the same latents fire, scaled by the norms
        assert torch.equal(active, exp["acts"] > 0)
    assert not torch.allclose(sae.W_dec.norm(dim=1), torch.ones(sae.num_latents))  # a copy


def test_fold_decoder_norms_refuses_topk_off_unit_norm():
    sae = load_sparsify(FIX / "sparsify_run", "layers.0")
    with torch.no_grad():
        sae.W_dec.mul_(2.0)
    with pytest.raises(ValueError, match="top-k selection"):
        fold_decoder_norms(sae)
