"""Pretrained dictionaries (interp.sae.pretrained): each format inspected from headers and
loaded, against what the REAL eai-sparsify / SAELens computed (fixtures at the width of
model=tiny-random-llama, tests/fixtures/interop_wide.py) and against Gemma Scope's
documented forward in numpy; hookpoint mapping and selection; content hash; hub offline."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from interp.sae.hookpoints import UnmappableHookpoint, map_hookpoint, transcoder_hookpoints
from interp.sae.hub import HubUnavailable, looks_like_hub_id
from interp.sae.pretrained import PretrainedInfo, inspect_pretrained, load_pretrained

pytestmark = pytest.mark.unit

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "interop"
GEMMA = "gemma-scope-tiny-res/layer_2/width_256/average_l0_64"
# fixture -> (format, hookpoint, file hookpoint, latents, architecture, transcode, expected)
CASES = {
    "sparsify_tiny_topk": ("sparsify", "layers.2", "layers.2", 512, "topk", False,
                           "sparsify_tiny_topk.layers.2"),
    "sparsify_tiny_transcoder": ("sparsify", "layers.1.mlp:input", "layers.1.mlp", 512, "topk",
                                 True, "sparsify_tiny_transcoder.layers.1.mlp"),
    "saelens_tiny_jumprelu": ("saelens", "layers.2", "blocks.2.hook_resid_post", 384,
                              "jumprelu", False, "saelens_tiny_jumprelu"),
    "gemma-scope-tiny-res": ("gemmascope", "layers.2", "layer_2/width_256/average_l0_64", 256,
                             "jumprelu", False, "gemma_scope_tiny"),
}  # fmt: skip


def dense_code(sae, x: torch.Tensor) -> torch.Tensor:
    acts, idx = sae.encode(x)
    return torch.zeros(*acts.shape[:-1], sae.num_latents).scatter(-1, idx, acts)


def max_delta(info: PretrainedInfo, expected: str) -> float:
    exp = load_file(str(FIX / "expected" / f"{expected}.safetensors"))
    sae = load_pretrained(info)
    with torch.no_grad():
        acts = dense_code(sae, exp["x"])
    assert (exp["acts"] != 0).sum(-1).float().mean() >= 4, "fixture latents do not fire"
    assert torch.equal(acts != 0, exp["acts"] != 0)  # the same latents fire
    return float((acts - exp["acts"]).abs().max())


# ---------------------------------------------------------------------------- formats
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_format_inspects_and_encodes_like_its_package(name):
    fmt, hook, file_hook, m, arch, transcode, expected = CASES[name]
    info = inspect_pretrained(str(FIX / name))
    assert (info.format, info.hookpoint, info.file_hookpoint) == (fmt, hook, file_hook)
    assert (info.d_in, info.d_out, info.num_latents) == (256, 256, m)
    assert (info.architecture, info.transcode) == (arch, transcode)
    assert inspect_pretrained(str(FIX / name), fmt=fmt) == info
    delta = max_delta(info, expected)
    print(f"\nmax |delta| ours vs {fmt} ({name}): {delta:.3g}")
    assert delta < 1e-4


def test_gemma_scope_matches_the_documented_numpy_forward():
    info = inspect_pretrained(str(FIX / GEMMA))
    assert info.path == FIX / GEMMA / "params.npz"
    with np.load(info.path) as npz:
        p = {k: npz[k].astype(np.float64) for k in npz.files}
    x = np.random.default_rng(0).normal(0.0, 0.13, (32, 256))
    pre = x @ p["W_enc"] + p["b_enc"]  # the tutorial: no b_dec subtracted from x
    acts = (pre > p["threshold"]) * np.maximum(pre, 0.0)
    recon = acts @ p["W_dec"] + p["b_dec"]
    sae = load_pretrained(info)
    with torch.no_grad():
        ours = dense_code(sae, torch.tensor(x, dtype=torch.float32))
        ours_recon = sae.decode(*sae.encode(torch.tensor(x, dtype=torch.float32)))
    assert (acts > 0).sum(-1).mean() >= 4
    delta = np.abs(ours.double().numpy() - acts).max()
    print(f"\nmax |delta| ours vs Gemma Scope numpy forward: {delta:.3g}")
    assert delta < 1e-4
    assert np.abs(ours_recon.double().numpy() - recon).max() < 1e-4


def test_transcoders_name_their_target():
    info = inspect_pretrained(str(FIX / "sparsify_tiny_transcoder"))
    assert (info.hookpoint, info.target_hookpoint) == ("layers.1.mlp:input", "layers.1.mlp")
    gs = FIX / GEMMA
    assert transcoder_hookpoints("google/gemma-scope-2b-pt-transcoders/layer_3", "gemmascope") == (
        "layers.3.mlp:input",
        "layers.3.post_feedforward_layernorm",
    )
    assert inspect_pretrained(str(gs)).target_hookpoint == ""


# ---------------------------------------------------------------------------- hookpoints
@pytest.mark.parametrize(
    ("name", "fmt", "model", "ours"),
    [
        ("blocks.6.hook_resid_post", "saelens", "", "layers.6"),
        ("blocks.6.hook_resid_pre", "saelens", "", "layers.5"),
        ("blocks.0.hook_resid_pre", "saelens", "", "layers.0:input"),
        ("blocks.6.hook_mlp_out", "saelens", "meta-llama/Llama-3.1-8B", "layers.6.mlp"),
        ("blocks.6.hook_mlp_out", "saelens", "gemma-2-2b", "layers.6.post_feedforward_layernorm"),
        ("blocks.6.ln2.hook_normalized", "saelens", "", "layers.6.mlp:input"),
        ("blocks.6.hook_attn_out", "saelens", "", "layers.6.self_attn"),
        ("blocks.6.attn.hook_z", "saelens", "", "layers.6.self_attn.o_proj:input"),
        ("blocks.6.mlp.hook_post", "saelens", "", "layers.6.mlp.down_proj:input"),
        ("layers.6", "sparsify", "", "layers.6"),
        ("model.layers.6.mlp", "sparsify", "", "layers.6.mlp"),
        ("google/gemma-scope-2b-pt-res/layer_20/width_16k/average_l0_71", "gemmascope", "",
         "layers.20"),
        ("google/gemma-scope-9b-pt-mlp-canonical/layer_4/width_16k/canonical", "gemmascope", "",
         "layers.4.post_feedforward_layernorm"),
        ("google/gemma-scope-2b-pt-att/layer_1/width_16k/average_l0_9", "gemmascope", "",
         "layers.1.self_attn.o_proj:input"),
    ],
)  # fmt: skip
def test_hookpoint_mapping_table(name, fmt, model, ours):
    assert map_hookpoint(name, fmt, model_name=model) == ours


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("blocks.6.hook_resid_mid", "saelens"), ("h.6", "sparsify"), ("x/layer_2", "gemmascope")],
)
def test_unmappable_hookpoint_names_the_override(name, fmt):
    with pytest.raises(UnmappableHookpoint, match=rf"{name!r}.*sae\.hookpoint="):
        map_hookpoint(name, fmt)


def test_unmappable_file_name_takes_the_hookpoint_override(tmp_path):
    src = tmp_path / "my_sae"  # a sparsify folder named by its owner, not by hookpoint
    shutil.copytree(FIX / "sparsify_tiny_topk" / "layers.2", src)
    with pytest.raises(UnmappableHookpoint, match=r"'my_sae'.*pass sae\.hookpoint="):
        inspect_pretrained(str(src))
    info = inspect_pretrained(str(src), hookpoint="layers.2")
    assert (info.hookpoint, info.file_hookpoint) == ("layers.2", "my_sae")


# ---------------------------------------------------------------------------- selection
def test_several_hookpoints_need_one_named():
    run = str(FIX / "sparsify_run")
    with pytest.raises(ValueError, match=r"holds 2 dictionaries: pass sae\.hookpoint=.*layers\.0.*layers\.1"):  # fmt: skip
        inspect_pretrained(run)
    assert inspect_pretrained(run, hookpoint="layers.1").path == FIX / "sparsify_run" / "layers.1"
    with pytest.raises(ValueError, match=r"no hookpoint 'layers\.7': it holds layers\.0"):
        inspect_pretrained(run, hookpoint="layers.7")


def test_saelens_file_name_or_ours_selects(tmp_path):
    for hook in (2, 3):
        folder = tmp_path / f"blocks.{hook}.hook_resid_post"
        shutil.copytree(FIX / "saelens_tiny_jumprelu", folder)
        cfg = (folder / "cfg.json").read_text().replace("blocks.2.", f"blocks.{hook}.")
        (folder / "cfg.json").write_text(cfg)
    by_ours = inspect_pretrained(str(tmp_path), hookpoint="layers.3")
    by_file = inspect_pretrained(str(tmp_path), hookpoint="blocks.3.hook_resid_post")
    assert by_ours == by_file and by_ours.hookpoint == "layers.3"


def test_gemma_scope_tree_selection_and_ambiguity(tmp_path):
    tree = tmp_path / "gemma-scope-tiny-res"
    for where in ("layer_2/width_256/average_l0_64", "layer_2/width_256/average_l0_9",
                  "layer_3/width_256/average_l0_64"):  # fmt: skip
        shutil.copytree(FIX / GEMMA, tree / where)
    with pytest.raises(ValueError, match=r"'layers\.2' matches 2 dictionaries.*average_l0_9"):
        inspect_pretrained(str(tree), hookpoint="layers.2")
    assert inspect_pretrained(str(tree), hookpoint="layer_3").hookpoint == "layers.3"
    info = inspect_pretrained(str(tree), hookpoint="layer_2/width_256/average_l0_9")
    assert info.hookpoint == "layers.2" and info.path.parent.name == "average_l0_9"
    with pytest.raises(ValueError, match="holds 3 dictionaries"):
        inspect_pretrained(str(tree))


def test_seed_folders_are_separate_dictionaries(tmp_path):
    for where in ("layers.2", "layers.2/seed1"):
        shutil.copytree(FIX / "sparsify_tiny_topk" / "layers.2", tmp_path / where)
    with pytest.raises(ValueError, match=r"matches 2 dictionaries.*layers\.2/seed1"):
        inspect_pretrained(str(tmp_path), hookpoint="layers.2")
    info = inspect_pretrained(str(tmp_path), hookpoint="layers.2/seed1")
    assert (info.hookpoint, info.path) == ("layers.2", tmp_path / "layers.2" / "seed1")


def test_format_errors_name_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"sae\.format='npz': use auto or one of"):
        inspect_pretrained(str(FIX / "sparsify_tiny_topk"), fmt="npz")
    with pytest.raises(FileNotFoundError, match=r"holds no a? ?saelens dictionary"):
        inspect_pretrained(str(FIX / "sparsify_tiny_topk"), fmt="saelens")
    shutil.copytree(FIX / "sparsify_tiny_topk", tmp_path / "a")
    shutil.copytree(FIX / "saelens_tiny_jumprelu", tmp_path / "b")
    with pytest.raises(
        ValueError, match=r"several formats \['saelens', 'sparsify'\].*sae\.format="
    ):
        inspect_pretrained(str(tmp_path))
    assert inspect_pretrained(str(tmp_path), fmt="saelens").format == "saelens"
    with pytest.raises(FileNotFoundError, match=r"no existing file or folder and no hub id"):
        inspect_pretrained(str(tmp_path / "missing" / "deeper" / "x"))


# ---------------------------------------------------------------------------- content hash
@pytest.mark.parametrize("name", ["sparsify_tiny_topk", "saelens_tiny_jumprelu", GEMMA])
def test_content_hash_is_stable_and_follows_every_byte(tmp_path, name):
    src = tmp_path / "copy"  # a copy's folder name says no layer: name it (the override)
    shutil.copytree(FIX / name, src)
    first = inspect_pretrained(str(src), hookpoint="layers.2")
    assert inspect_pretrained(str(src), hookpoint="layers.2").content_hash == first.content_hash
    assert inspect_pretrained(str(FIX / name)).content_hash == first.content_hash  # not the path
    weights = first.path if first.path.is_file() else next(first.path.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    changed = inspect_pretrained(str(src), hookpoint="layers.2")
    assert changed.content_hash != first.content_hash
    with pytest.raises(ValueError, match="changed since it was inspected"):
        load_pretrained(first)


# ---------------------------------------------------------------------------- hub
def test_hub_offline_names_the_id_and_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = "google/gemma-scope-tiny-res/layer_2/width_256/average_l0_64"
    assert looks_like_hub_id(source)
    folder = (
        tmp_path / "google" / "gemma-scope-tiny-res" / "layer_2" / "width_256" / "average_l0_64"
    )
    with pytest.raises(HubUnavailable) as err:
        inspect_pretrained(source, cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and source in message and str(folder) in message
    assert "HF_HUB_OFFLINE" in message and "sae.path" in message
    shutil.copytree(FIX / GEMMA, folder)  # placed by hand, as the message says
    info = inspect_pretrained(source, cache_dir=tmp_path)
    assert (info.source, info.hookpoint, info.format) == (source, "layers.2", "gemmascope")
    assert info.content_hash == inspect_pretrained(str(FIX / GEMMA)).content_hash


class FakeHub:
    """The hub's two calls over a local 'remote' tree: what the id holds, and a download
    that copies the files ``allow_patterns`` selects (as huggingface_hub does)."""

    def __init__(self, remote: Path) -> None:
        self.remote, self.downloads = remote, []

    def list_repo_files(self, repo_id: str) -> list[str]:
        root = self.remote / repo_id
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())

    def snapshot_download(self, repo_id, allow_patterns=None, local_dir=None):
        import fnmatch

        self.downloads.append(allow_patterns)
        for rel in self.list_repo_files(repo_id):
            if allow_patterns is None or any(fnmatch.fnmatch(rel, p) for p in allow_patterns):
                (Path(local_dir) / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(self.remote / repo_id / rel, Path(local_dir) / rel)
        return str(local_dir)


def test_hub_fetches_only_the_named_dictionary(tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    remote = tmp_path / "remote" / "google" / "gemma-scope-tiny-res"
    for layer in (2, 3):
        shutil.copytree(FIX / GEMMA, remote / f"layer_{layer}" / "width_256" / "average_l0_64")
    hub = FakeHub(tmp_path / "remote")
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: hub)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", hub.snapshot_download)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"holds 2 dictionaries: pass sae\.hookpoint=.*layer_2/"):
        inspect_pretrained("google/gemma-scope-tiny-res", cache_dir=cache)
    assert hub.downloads == []  # refused before downloading a whole release
    info = inspect_pretrained("google/gemma-scope-tiny-res", hookpoint="layers.3", cache_dir=cache)
    assert hub.downloads == [["layer_3/**"]]
    assert (info.hookpoint, info.format) == ("layers.3", "gemmascope")
    assert (
        info.path
        == cache / "google/gemma-scope-tiny-res/layer_3/width_256/average_l0_64/params.npz"
    )
    assert not (cache / "google/gemma-scope-tiny-res/layer_2").exists()


@pytest.mark.parametrize(("name", "arch"), [("ours_jumprelu", "jumprelu"), ("ours_gated", "gated")])
def test_our_own_saved_dictionaries_load_as_sparsify_layout(name, arch):
    """A dictionary this project trained (sparsify's layout, any architecture)."""
    info = inspect_pretrained(str(FIX / name), hookpoint="layers.1")
    assert (info.format, info.architecture, info.num_latents) == ("sparsify", arch, 64)
    assert load_pretrained(info).architecture == arch
