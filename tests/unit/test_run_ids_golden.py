"""Run ids of the embedded default, the presets and one point per config group, pinned.

A run id names a folder of committed work: if a refactor moves one, a rerun of an
existing sweep silently redoes everything instead of resuming. These values were computed
on main before the config was split into per-component schemas (issue 14); a change here
needs a migration that recognises the old folders, not a new number.
"""

from __future__ import annotations

import pytest
from conf_compose import composer

from interp.runs import RunIds
from slurm.schema import resolve

pytestmark = pytest.mark.unit

# The embedded default moved once, on purpose (issue 18): layer 6 instead of 15 and a
# seeded sample of 24 alive latents instead of [0, 24). PRE18 restores the old default, so
# every id below still pins what it pinned (a rerun of an old sweep with these overrides
# resumes); NOW pins the new default.
PRE18 = ["layer=15", "interpret.latents=0:24"]

# name: (overrides, data id, train id, collect id, interpret id); PRE18 goes first except for
# presets that set their own layer and latents (tiny)
# The interpret ids moved once, on purpose (issue 18): the default control is drawn from the
# whole dictionary (interpret.control_source=dictionary), so its results differ; LEGACY
# below keeps the old ids, which control_source=range still gets.
GOLDEN = {
    "default": ([], "857b6bfc7d", "9918fc6f78", "3f01146849", "43fac559d5"),
    "tiny": (["experiment=tiny"], "74a2909e87", "f7cf43e4a4", "11dd6bc8be", "41cf79c8a3"),
    "demo": (["experiment=demo"], "857b6bfc7d", "9918fc6f78", "3f01146849", "43fac559d5"),
    "relu": (["sae=relu", "layer=3"], "857b6bfc7d", "94ff943bde", "108a4596c8", "733a37321a"),
    "jumprelu": (["sae=jumprelu"], "857b6bfc7d", "60e37251c7", "c85a5f7e29", "ec340d46d5"),
    "gated": (["sae=gated"], "857b6bfc7d", "a083529e9b", "68c1c14f9a", "af0a64b48c"),
    "batchtopk": (["sae=batchtopk"], "857b6bfc7d", "4067256497", "31bee0f72c", "e3695a2b84"),
    "neurons": (["sae=neurons"], "857b6bfc7d", "b74cb6c506", "b60bd19aef", "541a271626"),
    "neurons_rotated": (
        ["sae=neurons_rotated"],
        "857b6bfc7d",
        "0847c687f0",
        "402f4a55c7",
        "cb0dfd7a4f",
    ),
    "transcoder": (
        ["sae=topk_transcoder", "hook=layers.3.mlp:input", "target_hookpoint=layers.3.mlp"],
        "857b6bfc7d",
        "6c83eec43d",
        "84f29a934d",
        "6fe196ca64",
    ),
    "scorers": (["scorer=classifiers"], "857b6bfc7d", "9918fc6f78", "3f01146849", "c1585e4022"),
    "intervention": (
        ["scorer=intervention", "scorer.intervention_kl=1.0"],
        "857b6bfc7d",
        "9918fc6f78",
        "3f01146849",
        "24c884f092",
    ),
    "batched": (["scorer=batched"], "857b6bfc7d", "9918fc6f78", "3f01146849", "b3abafe972"),
    "intruder": (
        ["scorer.names=[intruder]", "scorer.intruder_examples=5"],
        "857b6bfc7d",
        "9918fc6f78",
        "3f01146849",
        "c8f11b7464",
    ),
    "http": (
        ["llm=http", "llm.model=foo", "llm.base_urls=[http://127.0.0.1:8000/v1]"],
        "857b6bfc7d",
        "9918fc6f78",
        "3f01146849",
        "bf46955ed5",
    ),
    "llama": (["llm=llama_server"], "857b6bfc7d", "9918fc6f78", "3f01146849", "8b48ec2e6d"),
}


def _pre18(overrides: list[str]) -> list[str]:
    return list(overrides) if "experiment=tiny" in overrides else [*PRE18, *overrides]


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_run_ids_are_pinned(name: str) -> None:
    overrides, *expected = GOLDEN[name]
    with composer() as compose:
        cfg, _cluster = resolve(compose(_pre18(overrides)))
    ids = RunIds.of(cfg)
    assert [ids.data, ids.train, ids.collect, ids.interpret] == expected
    assert ids.point == ids.interpret


# interpret.control_source=range (the control before issue 18): the ids from before it
LEGACY = {
    "default": ([], "857b6bfc7d", "9918fc6f78", "3f01146849", "55927a9051"),
    "tiny": (["experiment=tiny"], "74a2909e87", "f7cf43e4a4", "11dd6bc8be", "5130533567"),
    "demo": (["experiment=demo"], "857b6bfc7d", "9918fc6f78", "3f01146849", "55927a9051"),
    "relu": (["sae=relu", "layer=3"], "857b6bfc7d", "94ff943bde", "108a4596c8", "82b646e91d"),
    "jumprelu": (["sae=jumprelu"], "857b6bfc7d", "60e37251c7", "c85a5f7e29", "9cc5a433fa"),
    "gated": (["sae=gated"], "857b6bfc7d", "a083529e9b", "68c1c14f9a", "d895b77adb"),
    "batchtopk": (["sae=batchtopk"], "857b6bfc7d", "4067256497", "31bee0f72c", "baf9718088"),
    "neurons": (["sae=neurons"], "857b6bfc7d", "b74cb6c506", "b60bd19aef", "a7936fbd3d"),
    "neurons_rotated": (
        ["sae=neurons_rotated"],
        "857b6bfc7d",
        "0847c687f0",
        "402f4a55c7",
        "f65198fba6",
    ),
    "transcoder": (
        ["sae=topk_transcoder", "hook=layers.3.mlp:input", "target_hookpoint=layers.3.mlp"],
        "857b6bfc7d",
        "6c83eec43d",
        "84f29a934d",
        "7d8b754c8c",
    ),
    "scorers": (["scorer=classifiers"], "857b6bfc7d", "9918fc6f78", "3f01146849", "24baaeccf5"),
    "intervention": (
        ["scorer=intervention", "scorer.intervention_kl=1.0"],
        "857b6bfc7d",
        "9918fc6f78",
        "3f01146849",
        "5719be5596",
    ),
    "batched": (["scorer=batched"], "857b6bfc7d", "9918fc6f78", "3f01146849", "5b075a5d6e"),
    "intruder": (
        ["scorer.names=[intruder]", "scorer.intruder_examples=5"],
        "857b6bfc7d",
        "9918fc6f78",
        "3f01146849",
        "0e134b41e2",
    ),
    "http": (
        ["llm=http", "llm.model=foo", "llm.base_urls=[http://127.0.0.1:8000/v1]"],
        "857b6bfc7d",
        "9918fc6f78",
        "3f01146849",
        "09a68b46f3",
    ),
    "llama": (["llm=llama_server"], "857b6bfc7d", "9918fc6f78", "3f01146849", "443abbcdba"),
}


@pytest.mark.parametrize("name", sorted(LEGACY))
def test_control_source_range_keeps_the_old_ids(name: str) -> None:
    overrides, *expected = LEGACY[name]
    with composer() as compose:
        cfg, _cluster = resolve(compose([*_pre18(overrides), "interpret.control_source=range"]))
        off, _cluster = resolve(compose([*_pre18(overrides), "interpret.control=false"]))
    ids = RunIds.of(cfg)
    assert [ids.data, ids.train, ids.collect, ids.interpret] == expected
    assert off.interpret.control_source == "range"  # no effect without a control


def test_control_off_keeps_its_old_id() -> None:
    """Without a control, the new key changes nothing: the ids from before issue 18."""
    with composer() as compose:
        default, _ = resolve(compose([*PRE18, "interpret.control=false"]))
        tiny, _ = resolve(compose(["experiment=tiny", "interpret.control=false"]))
    assert RunIds.of(default).interpret == "56a1be5217"
    assert RunIds.of(tiny).interpret == "69088a3620"


# The embedded default since issue 18 (layer 6, interpret.latents=sample:24); demo spells it out.
NOW = {
    "default": ([], "857b6bfc7d", "c34f63c919", "38b9c4f504", "8bca67d0ba"),
    "demo": (["experiment=demo"], "857b6bfc7d", "c34f63c919", "38b9c4f504", "8bca67d0ba"),
}


@pytest.mark.parametrize("name", sorted(NOW))
def test_the_default_is_pinned(name: str) -> None:
    overrides, *expected = NOW[name]
    with composer() as compose:
        cfg, _cluster = resolve(compose(list(overrides)))
    ids = RunIds.of(cfg)
    assert [ids.data, ids.train, ids.collect, ids.interpret] == expected
    assert cfg.layer == 6 and cfg.interpret.latents == "sample:24"


def test_a_config_saved_before_a_key_existed_keeps_its_meaning_and_id() -> None:
    """A point's config.json written before interpret.control_source existed loads with the
    control it was run with (range), so its id and folder stay; newer defaults do not leak
    into saved configs."""
    from interp.config import load_saved_config
    from interp.typed import to_dict

    overrides, *expected = LEGACY["default"]
    with composer() as compose:
        cfg, _cluster = resolve(compose([*_pre18(overrides), "interpret.control_source=range"]))
    raw = to_dict(cfg)
    for key in ("control_source", "control_max_overlap"):
        del raw["interpret"][key]  # what a point saved before issue 18 holds
    old = load_saved_config(raw)
    assert old.interpret.control_source == "range"
    ids = RunIds.of(old)
    assert [ids.data, ids.train, ids.collect, ids.interpret] == expected
