"""sae=pretrained points: composed from conf/, resolved at plan time (run ids from the
checkpoint's content, not its path), planned without a train job and in the same collect
forward as trained points of the same model, refused before anything is submitted when
the checkpoint does not fit, and loaded by collect into the point's dictionary folder.

Checkpoints written by the real eai-sparsify and SAELens at the width of
model=tiny-random-llama (tests/fixtures/interop/*_tiny_*, layers.2).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conf_compose import composer

from interp.config import RunConfig, load_run_config
from interp.plan import plan_sweep
from interp.preflight import PreflightError, point_problems, preflight
from interp.pretrained_point import load_point_dictionary, resolve_points, source_label
from interp.runs import RunIds, RunPaths
from slurm.schema import resolve

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "interop"
SPARSIFY = FIXTURES / "sparsify_tiny_topk"
SAELENS = FIXTURES / "saelens_tiny_jumprelu"
GEMMA = FIXTURES / "gemma-scope-tiny-res"
TINY = "tiny-random-llama"
D_IN = 256


def point(tmp_path: Path, path: Path | str | None = SPARSIFY, **over: object) -> RunConfig:
    sae = {"architecture": "pretrained", **({"path": str(path)} if path is not None else {})}
    raw = {"name": "s", "out_dir": str(tmp_path), "model": {"name": TINY}, "layer": 2,
           "llm": {"model": TINY}, "sae": sae, **over}  # fmt: skip
    if isinstance(over.get("sae"), dict):
        raw["sae"] = {**sae, **over["sae"]}  # type: ignore[dict-item]
    return load_run_config(raw)


def resolved(*cfgs: RunConfig) -> list[RunConfig]:
    out, problems = resolve_points(cfgs)
    assert problems == []
    return out


def trained(tmp_path: Path, **over: object) -> RunConfig:
    raw = {"name": "s", "out_dir": str(tmp_path), "model": {"name": TINY}, "layer": 2,
           "llm": {"model": TINY}, **over}  # fmt: skip
    return load_run_config(raw)


def test_the_config_group_composes_and_leaves_other_points_alone() -> None:
    with composer() as compose:
        cfg, _ = resolve(compose(["sae=pretrained", f"sae.path={SPARSIFY}", "sae.format=sparsify"]))
        topk, _ = resolve(compose(["sae=topk", f"sae.path={SPARSIFY}"]))
        default, _ = resolve(compose([]))
    assert cfg.sae.architecture == "pretrained" and cfg.sae.path == str(SPARSIFY)
    assert topk.sae.architecture == "topk"
    assert RunIds.of(topk) == RunIds.of(default)  # sae.path is ignored by a trained point
    with pytest.raises(ValueError, match=r"sae.format='npz' is not one of"):
        point(Path("/tmp"), sae={"format": "npz"})


def test_resolution_records_hash_format_and_width(tmp_path: Path) -> None:
    (cfg,) = resolved(point(tmp_path))
    assert len(cfg.sae.content_hash) == 64 and cfg.sae.format == "sparsify"
    assert cfg.sae.num_latents == 512
    assert cfg.sae.sae_id == f"pretrained-512-{cfg.sae.content_hash[:8]}"
    assert source_label(cfg) == (str(SPARSIFY), "sparsify")
    assert source_label(trained(tmp_path)) == ("trained", "")
    with pytest.raises(ValueError, match="has no sae.content_hash"):
        RunIds.of(point(tmp_path))  # unresolved: no id rather than a wrong one


def test_run_ids_follow_the_content_not_the_path(tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(SPARSIFY, moved)
    a, b = resolved(point(tmp_path), point(tmp_path, path=moved))
    assert RunIds.of(a) == RunIds.of(b)  # moved folder: same point, resumes
    weights = moved / "layers.2" / "sae.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    (c,) = resolved(point(tmp_path, path=moved))
    ids_a, ids_c = RunIds.of(a), RunIds.of(c)
    assert ids_a.data == ids_c.data
    assert ids_a.train != ids_c.train and ids_a.point != ids_c.point  # changed file: new point
    (other_layer,) = resolved(point(tmp_path, path=SAELENS))
    assert RunIds.of(other_layer).train != ids_a.train


def test_a_pretrained_point_plans_no_train_and_shares_the_collect_forward(
    tmp_path: Path,
) -> None:
    sp, sl = resolved(point(tmp_path), point(tmp_path, path=SAELENS))
    topk = trained(tmp_path)
    plan = plan_sweep([(c, D_IN) for c in (sp, sl, topk)])
    by_stage: dict[str, list] = {}
    for job in plan.jobs:
        by_stage.setdefault(job.stage, []).append(job)
    (train,) = by_stage["train"]  # the trained point's only
    assert train.point == RunIds.of(topk).point
    (collect,) = by_stage["collect"]  # one LM forward per slice for all three
    assert set(collect.members) == {RunIds.of(c).point for c in (sp, sl, topk)}
    assert collect.depends_on == (train.key,)
    compact = {j.point: j for j in by_stage["compact"]}
    assert compact[RunIds.of(sp).point].tasks[-1].stop == 512  # the checkpoint's width
    alone = plan_sweep([(sp, D_IN)])
    assert [j.stage for j in alone.jobs] == ["collect", "compact", "interpret", "gather"]
    assert alone.job(f"collect-{RunIds.of(sp).collect}").depends_on == ()


# ----------------------------------------------------------------------------- preflight


def test_preflight_passes_a_good_pretrained_point(tmp_path: Path) -> None:
    for path in (SPARSIFY, SAELENS, GEMMA, SPARSIFY / "layers.2"):
        assert point_problems(resolved(point(tmp_path, path=path))[0], {}) == []


def test_a_missing_or_unreadable_source_is_refused(tmp_path: Path) -> None:
    missing = point(tmp_path, path=tmp_path / "nope")
    _, problems = resolve_points([missing])
    (line,) = problems
    assert line.startswith(f"sae.path='{tmp_path / 'nope'}' cannot be read (")
    assert "sae.format=auto|sparsify|saelens|gemmascope" in line
    (line,) = point_problems(missing, {})
    assert line.startswith(f"sae.path='{tmp_path / 'nope'}' cannot be read")
    (line,) = point_problems(point(tmp_path, path=None), {})
    assert line == "sae=pretrained needs sae.path=<checkpoint folder or hub id>: set it"
    assert resolve_points([point(tmp_path, path=None)])[1] == [line]  # not the working dir
    (line,) = point_problems(point(tmp_path, sae={"format": "saelens"}), {})
    assert "cannot be read" in line and "saelens" in line


def test_a_hookpoint_mismatch_names_both_sides(tmp_path: Path) -> None:
    (line,) = point_problems(point(tmp_path, path=SAELENS, layer=3), {})
    assert line.startswith(
        f"sae.path='{SAELENS}' holds a dictionary of layers.2 (file: "
        "'blocks.2.hook_resid_post') but layer=3 reads layers.3: set layer=2"
    )
    (line,) = point_problems(point(tmp_path, layer=1), {})  # a run folder of layers.2 only
    assert line.startswith(f"sae.path='{SPARSIFY}' holds a dictionary of layers.2 (file: ")
    assert line.endswith("but layer=1 reads layers.1: set layer=2 (or sae.hookpoint= for "
                         "another of its dictionaries)")  # fmt: skip
    (line,) = point_problems(point(tmp_path, sae={"hookpoint": "layers.1"}), {})
    assert line.startswith(f"sae.path='{SPARSIFY}' cannot be read (")
    (line,) = point_problems(point(tmp_path, layer=9), {})  # not in the model at all
    assert line.startswith("layer=9 is past the last decoder layer of tiny-random-llama")


def test_a_width_mismatch_with_the_model_names_both(tmp_path: Path) -> None:
    (line,) = point_problems(point(tmp_path, model={"name": "smollm2-135m"}), {})
    assert line == (
        f"sae.path='{SPARSIFY}' reads 256-wide activations but smollm2-135m is 576 wide at "
        "layers.2: use the model the dictionary was trained on (model.name=)"
    )


def test_training_keys_are_refused_alone_and_ignored_beside_trained_points(
    tmp_path: Path,
) -> None:
    lone = point(tmp_path, sae={"k": 16})
    (line,) = point_problems(lone, {}, trains=False)
    assert line == (
        f"sae.k=16 is a training setting but sae=pretrained reads its dictionary from "
        f"sae.path='{SPARSIFY}': drop sae.k"
    )
    with pytest.raises(PreflightError, match="drop sae.k"):
        preflight(resolved(lone))
    mixed = resolved(lone, trained(tmp_path, sae={"k": 16}))
    preflight(mixed)  # sae.k=16 is for the topk point
    assert RunIds.of(mixed[0]) == RunIds.of(resolved(point(tmp_path))[0])  # and ignored here
    (line,) = point_problems(point(tmp_path, sae={"num_latents": 100}), {})
    assert line.startswith("sae.num_latents=100 but") and "has 512 latents" in line


def test_a_checkpoint_changed_since_planning_is_refused(tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(SPARSIFY, copy)
    (cfg,) = resolved(point(tmp_path, path=copy))
    cfgfile = copy / "layers.2" / "cfg.json"
    cfgfile.write_text(cfgfile.read_text() + "\n")
    (line,) = point_problems(cfg, {})
    assert line.startswith(f"sae.path='{copy}' changed since this point was planned")
    with pytest.raises(ValueError, match="changed since this point was planned"):
        load_point_dictionary(cfg, RunPaths(tmp_path, cfg))


# ----------------------------------------------------------------------------- collect


@pytest.mark.parametrize("path", [SPARSIFY, SAELENS, GEMMA])
def test_collect_loads_the_checkpoint_and_keeps_a_copy(tmp_path: Path, path: Path) -> None:
    from interp.sae.io import load_sae
    from interp.sae.pretrained import inspect_pretrained, load_pretrained

    (cfg,) = resolved(point(tmp_path, path=path))
    paths = RunPaths(tmp_path, cfg)
    sae = load_point_dictionary(cfg, paths)
    folder = paths.sae_dir()
    assert folder.is_relative_to(tmp_path / "pretrained" / RunIds.of(cfg).train)
    assert not (tmp_path / "train").exists()
    source = json.loads(paths.pretrained_source_file().read_text())
    assert source["content_hash"] == cfg.sae.content_hash and source["source"] == str(path)
    x = torch.randn(64, D_IN, generator=torch.Generator().manual_seed(0))
    direct = load_pretrained(inspect_pretrained(str(path), "auto", "layers.2"))
    width = cfg.sae.num_latents
    want = dense(direct.encode(x), width)
    assert want.count_nonzero() > 0
    for got in (sae, load_sae(folder), load_point_dictionary(cfg, paths)):
        torch.testing.assert_close(dense(got.encode(x), width), want, atol=1e-6, rtol=0)


def dense(code: object, width: int) -> torch.Tensor:
    acts, idx = code.top_acts, code.top_idx  # type: ignore[attr-defined]
    return torch.zeros(acts.shape[0], width).scatter_(1, idx, acts)


def test_trained_points_that_differ_only_in_the_ignored_path_are_one(tmp_path: Path) -> None:
    from interp.pretrained_point import drop_repeats

    # -m sae=pretrained,topk sae.path=A,B: four combinations, three points
    combos = [
        point(tmp_path, path=SPARSIFY),
        point(tmp_path, path=SAELENS),
        trained(tmp_path, sae={"path": str(SPARSIFY)}),
        trained(tmp_path, sae={"path": str(SAELENS)}),
    ]
    cfgs, over = drop_repeats(combos, ["a", "b", "c", "d"])
    assert over == ["a", "b", "c"] and len(cfgs) == 3
    assert cfgs[2].sae.path == "" and RunIds.of(cfgs[2]) == RunIds.of(trained(tmp_path))
    assert cfgs[:2] == combos[:2]
    same = [trained(tmp_path), trained(tmp_path)]  # a value listed twice: not hidden here
    assert drop_repeats(same)[0] == same


# ----------------------------------------------------------------------------- transcoders

TRANSCODER = FIXTURES / "sparsify_tiny_transcoder"  # written by eai-sparsify: layers.1.mlp


def transcoder_point(tmp_path: Path, **over: object) -> RunConfig:
    return point(tmp_path, path=TRANSCODER, hook="layers.1.mlp:input", layer=1, **over)


def test_a_pretrained_transcoder_steers_where_it_writes(tmp_path: Path) -> None:
    from interp.stages.interpret_io import build_resources

    (cfg,) = resolved(transcoder_point(tmp_path))
    assert cfg.sae.transcode and cfg.target_hookpoint == "layers.1.mlp"
    assert cfg.target == "layers.1.mlp" and cfg.hookpoint == "layers.1.mlp:input"
    assert point_problems(cfg, {}) == []
    plain = transcoder_point(tmp_path)  # nothing about transcoding set by hand
    assert not plain.sae.transcode and plain.target == "layers.1.mlp:input"
    # the intervention scorer's subject, built as an interpret task builds it, steers at
    # the MLP's output (where the transcoder writes), not at its input
    scorer = {"names": ["intervention"]}
    (cfg,) = resolved(transcoder_point(tmp_path, scorer=scorer))
    paths = RunPaths(tmp_path, cfg)
    load_point_dictionary(cfg, paths)  # collect's copy, which the scorer reads
    resources = build_resources(cfg, paths)
    try:
        subject = resources.get("subject")
        assert subject.lm.hookpoint == "layers.1.mlp"
        assert subject.lm.module is subject.lm.model.model.layers[1].mlp
    finally:
        resources.close()


def test_a_transcoder_target_that_differs_from_the_file_is_refused(tmp_path: Path) -> None:
    (same,) = resolved(transcoder_point(tmp_path, target_hookpoint="layers.1.mlp"))
    assert point_problems(same, {}) == []
    assert RunIds.of(same) == RunIds.of(resolved(transcoder_point(tmp_path))[0])
    (other,) = resolved(transcoder_point(tmp_path, target_hookpoint="layers.1"))
    assert other.target_hookpoint == "layers.1"  # the user's, kept for the check
    (line,) = point_problems(other, {})
    assert line == (
        f"target_hookpoint=layers.1 but sae.path='{TRANSCODER}' is a transcoder writing "
        "layers.1.mlp (file: 'layers.1.mlp'): drop target_hookpoint (the file's is used)"
    )
    with pytest.raises(PreflightError, match="is a transcoder writing layers.1.mlp"):
        preflight([other])
    (sae_on,) = resolved(point(tmp_path, target_hookpoint="layers.2.mlp"))
    (line,) = point_problems(sae_on, {})
    assert line == f"target_hookpoint is set but sae.path='{SPARSIFY}' is not a transcoder: drop target_hookpoint"  # fmt: skip
