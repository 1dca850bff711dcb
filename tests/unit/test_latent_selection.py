"""``interpret.latents``: which latents a point interprets (interp/interpret/selection.py).

Parsing and its one-line errors; ``0:N`` / ``all`` keep the ``num_latents`` run ids; the
width checked before anything runs (preflight, the plan); the array split over the
selection's positions; ``sample`` / ``stratified`` deterministic and alive-only on a real
compacted Zarr store; and through the real interpret stage against the loopback LLM
(tests/fake_openai.py): dead latents recorded with their reason and no LLM call, a changed
selection reusing what overlaps (LLM calls counted), status and gather counting against it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from interpret_point import interpret_point, write_store

from interp.config import load_run_config, to_dict
from interp.interpret.config import InterpretConfig
from interp.interpret.select import frequency_bins, resolve, runs, store_counts, water_fill
from interp.interpret.selection import parse
from interp.plan import Task
from interp.records import read_records
from interp.runs import RunIds, RunPaths, read_manifest
from interp.stages import interpret
from interp.stages.context import StageContext
from interp.stages.registry import interpret_ranges
from interp.store import StoreMeta, compact_range, write_slice, write_store_meta

TINY_WIDTH = 256 * 8  # tiny-random-llama's 256-wide residual x sae.expansion_factor=8
SPLIT_WIDTH = 16 * 8  # the width the split tests plan at (d_in=16)


# ----------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "canonical", "size"),
    [
        ("all", "all", 1000),
        ("100:200", "100:200", 100),
        (" 42, 3,17 ,3", "3,17,42", 3),
        ("7,", "7,", 1),
        ("sample:50", "sample:50", 50),
        ("stratified:10", "stratified:10", 10),
    ],
)
def test_each_form_parses_to_one_spelling(text: str, canonical: str, size: int) -> None:
    sel = parse(text)
    assert sel.canonical == canonical and sel.size(1000) == size
    assert parse(sel.canonical) == sel


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("42", "'0:42' for the first 42"),
        ("5:3", "is empty"),
        ("a:b", "'a' is not a latent id"),
        ("-1,2", "latent ids are >= 0"),
        ("sample:0", "N >= 1"),
        ("sample:x", "'x' is not a latent id"),
        ("nonsense", "not a selection"),
    ],
)
def test_bad_selections_fail_on_one_line_naming_the_key(text: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        InterpretConfig(latents=text)
    msg = str(err.value)
    assert msg.startswith(f"interpret.latents={text!r}") and says in msg and "\n" not in msg
    assert "sample:N" in msg  # the forms there are


def test_a_file_of_ids_lines_or_json_and_its_content_in_the_id(tmp_path: Path) -> None:
    lines, js = tmp_path / "ids.txt", tmp_path / "ids.json"
    lines.write_text("5\n# a comment\n1\n\n9  # trailing\n")
    js.write_text("[9, 1, 5]")
    a, b = parse(f"file:{lines}"), parse(f"file:{js}")
    assert a.ids == b.ids == (1, 5, 9) and a.size(10) == 3
    assert a.canonical == f"file:{lines.resolve()}@{a.sha}"
    cfg = InterpretConfig(latents=f"file:{lines}")
    assert cfg.latents == a.canonical and InterpretConfig(latents=cfg.latents).selection == a
    lines.write_text("5\n1\n")  # changed after planning: refused, naming the fix
    with pytest.raises(ValueError, match=r"changed since this point was planned.*file:"):
        InterpretConfig(latents=cfg.latents)
    assert parse(f"file:{lines}").canonical != a.canonical  # a new selection, a new id
    with pytest.raises(ValueError, match="cannot read it"):
        parse(f"file:{tmp_path / 'missing.txt'}")
    (tmp_path / "bad.txt").write_text("1\nx\n")
    with pytest.raises(ValueError, match="'x' is not a latent id"):
        parse(f"file:{tmp_path / 'bad.txt'}")


# ----------------------------------------------------------------------------- run ids
def _cfg(tmp_path: Path, **interp) -> object:
    return load_run_config(
        {
            "out_dir": str(tmp_path),
            "model": {"name": "tiny-random-llama"},
            "layer": 2,
            "interpret": interp,
        }
    )


def test_num_latents_ids_stay_and_the_selection_is_in_the_interpret_id(tmp_path: Path) -> None:
    base = RunIds.of(_cfg(tmp_path, num_latents=24))
    assert RunIds.of(_cfg(tmp_path, num_latents=24, latents="0:24")) == base
    assert RunIds.of(_cfg(tmp_path, latents="0:24")) == base
    assert RunIds.of(_cfg(tmp_path, latents="all")) == RunIds.of(_cfg(tmp_path))
    other = RunIds.of(_cfg(tmp_path, latents="sample:24"))
    seeded = RunIds.of(_cfg(tmp_path, latents="sample:24", latents_seed=1))
    assert other.collect == base.collect and other.train == base.train
    assert len({base.interpret, other.interpret, seeded.interpret}) == 3
    with pytest.raises(ValueError, match="interpret.num_latents=24 and interpret.latents="):
        _cfg(tmp_path, num_latents=24, latents="sample:24")  # two selections: say one
    saved = _cfg(tmp_path, latents="3,1")
    assert saved.interpret.latents == "1,3" and saved.interpret.num_latents == 0
    assert load_run_config(to_dict(saved)) == saved  # the resolved config reloads as itself


def test_a_seed_without_a_sample_warns() -> None:
    with pytest.warns(UserWarning, match="latents_seed=3 has no effect"):
        InterpretConfig(latents="1:4", latents_seed=3)


# ----------------------------------------------------------------------------- width, split
def test_ids_beyond_the_width_are_refused_before_anything_runs(tmp_path: Path) -> None:
    from interp.preflight import point_problems

    cfg = _cfg(tmp_path, latents=f"3,{TINY_WIDTH}")
    (problem,) = point_problems(cfg, {})
    assert problem.startswith("interpret.latents=") and f"has id {TINY_WIDTH}" in problem
    assert f"ids 0..{TINY_WIDTH - 1}" in problem
    assert point_problems(_cfg(tmp_path, latents=f"0:{TINY_WIDTH + 5}"), {}) == []  # capped
    assert "asks for" in point_problems(_cfg(tmp_path, latents=f"sample:{TINY_WIDTH + 1}"), {})[0]
    with pytest.raises(ValueError, match=f"range ends at {SPLIT_WIDTH + 1}"):
        interpret_ranges(_cfg(tmp_path, latents=f"5:{SPLIT_WIDTH + 1}"), 16)


@pytest.mark.parametrize(
    ("latents", "n"),
    [("0:10", 10), ("3,17,42,99,100", 5), ("100:107", 7), ("sample:7", 7), ("all", SPLIT_WIDTH)],
)
def test_the_array_splits_the_selection_s_positions(tmp_path: Path, latents: str, n: int) -> None:
    tasks = interpret_ranges(_cfg(tmp_path, latents=latents, range_latents=3), 16)
    assert [(t.start, t.stop) for t in tasks] == [(a, min(a + 3, n)) for a in range(0, n, 3)]


# ----------------------------------------------------------------------------- samples
N_TOK, WIDTH, MIN = 4096, 64, 4


def _zipf_store(store: Path) -> np.ndarray:
    """A compacted store of WIDTH latents, one per token, firing with Zipf-like rates
    (some never: p = 0 for every 9th); returns the true per-latent counts."""
    rng = np.random.default_rng(0)
    p = 1.0 / np.arange(1, WIDTH + 1) ** 1.3
    p[::9] = 0.0
    idx = rng.choice(WIDTH, N_TOK, p=p / p.sum())
    write_store_meta(store, StoreMeta(WIDTH, 1, 32, N_TOK, 16, "layers.0", "uint16"))
    write_slice(
        store / "slices" / "s00000", token_start=0, token_stop=N_TOK, latent_idx=idx[:, None],
        latent_val=np.ones((N_TOK, 1), np.float32), token_ids=rng.integers(0, 100, N_TOK),
        keep=np.ones(N_TOK, bool), n_latents=WIDTH, token_dtype="uint16",
    )  # fmt: skip
    slices = [store / "slices" / "s00000"]
    compact_range(store, store / "ranges" / "r00000", latent_start=0, latent_stop=WIDTH, slices=slices)  # fmt: skip
    return np.bincount(idx, minlength=WIDTH)


@pytest.mark.parametrize("mode", ["sample", "stratified"])
def test_samples_are_seeded_and_alive_only(tmp_path: Path, mode: str) -> None:
    true = _zipf_store(tmp_path / "z")
    counts = store_counts(tmp_path / "z", WIDTH)  # the compacted range's stats
    assert np.array_equal(counts, true)
    alive = set(np.flatnonzero(true >= MIN).tolist())
    assert 20 < len(alive) < WIDTH - 7  # dead and too-rare latents exist

    def draw(seed: int, n: int = 16) -> np.ndarray:
        return resolve(parse(f"{mode}:{n}"), WIDTH, lambda: counts, MIN, seed)

    first = draw(0)
    assert len(first) == 16 and len(set(first.tolist())) == 16 and set(first.tolist()) <= alive
    assert np.array_equal(first, draw(0)) and not np.array_equal(first, draw(1))
    assert list(first) == sorted(first)
    assert set(draw(0, n=WIDTH).tolist()) == alive  # fewer alive than asked: every one


def test_stratified_gives_each_frequency_bin_its_share(tmp_path: Path) -> None:
    counts = _zipf_store(tmp_path / "z")
    alive = np.flatnonzero(counts >= MIN)
    bins = frequency_bins(counts[alive], 8)
    sizes = [int(np.sum(bins == b)) for b in range(8)]
    chosen = resolve(parse("stratified:16"), WIDTH, lambda: counts, MIN, 0)
    got = [int(np.sum(np.isin(alive[bins == b], chosen))) for b in range(8)]
    assert got == water_fill(sizes, 16) and sum(got) == 16
    assert min(g for g, s in zip(got, sizes) if s) >= 1  # rare and dense latents both
    uniform = resolve(parse("sample:16"), WIDTH, lambda: counts, MIN, 0)
    assert np.median(counts[chosen]) < np.median(counts[uniform]) * 4  # not all dense


def test_water_fill_and_runs() -> None:
    assert water_fill([1, 10, 10], 9) == [1, 4, 4]
    assert water_fill([0, 2, 30, 3], 12) == [0, 2, 7, 3]
    assert runs(np.array([1, 2, 3, 7, 9, 10])) == [(1, 4), (7, 8), (9, 11)]


# ----------------------------------------------------------------------------- the stage
CTX, N_CTX, N_LAT = 32, 30, 6


def _point(tmp_path: Path, url: str, latents: str, name: str = "sel") -> object:
    raw = to_dict(interpret_point(tmp_path, url, name=name))
    raw["interpret"]["latents"] = latents
    raw["interpret"]["range_latents"] = 2
    return load_run_config(raw)


def _store(paths: RunPaths) -> None:
    """Latent j < 5 fires on every token of contexts c with c % 5 == j; latent 5 never."""
    write_store(paths, n_latents=N_LAT, firing=5, n_ctx=N_CTX)


def _run_all(cfg, tasks: int) -> RunPaths:
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    paths.point_config().parent.mkdir(parents=True, exist_ok=True)
    paths.point_config().write_text(json.dumps(to_dict(cfg)))
    if not paths.store_dir().exists():
        _store(paths)
    planned = interpret_ranges(cfg, 16)
    assert len(planned) == tasks
    for task in planned:
        interpret.run(StageContext.of(cfg, paths, task, lambda: False))
    return paths


def _records(paths: RunPaths, tasks: int) -> dict[int, dict]:
    out = {}
    for i in range(tasks):
        out.update({r.latent: r for r in read_records(paths.records_file(i))})
    return out


@pytest.fixture
def llm():
    s = FakeOpenAI()
    yield s
    s.close()


def test_dead_latents_are_recorded_and_a_new_selection_reuses_the_overlap(
    tmp_path: Path, llm
) -> None:
    first = _run_all(_point(tmp_path, llm.url, "1,3,5"), tasks=2)
    calls_first = len(llm.requests)
    recs = _records(first, 2)
    assert sorted(recs) == [1, 3, 5]
    assert recs[5].status == "too_rare" and recs[5].error.startswith("dead: never fires")
    assert recs[5].tokens.prompt == 0 and recs[1].status == recs[3].status == "ok"
    per_latent = calls_first // 2  # only latents 1 and 3 went to the LLM
    assert calls_first == 2 * per_latent > 0
    assert read_manifest(first.manifest_file("interpret", 1))["latents"] == [5]

    broken = first.root / "points" / "gone" / "config.json"  # its id file was removed
    broken.parent.mkdir()
    broken.write_text(json.dumps({"interpret": {"latents": "file:/nonexistent@0123456789ab"}}))
    second = _run_all(_point(tmp_path, llm.url, "0:5"), tasks=3)  # another point, same work
    assert second.ids.interpret != first.ids.interpret
    assert len(llm.requests) - calls_first == 3 * per_latent  # 0, 2, 4: 1 and 3 reused
    again = _records(second, 3)
    assert sorted(again) == [0, 1, 2, 3, 4]
    assert again[3].to_dict() == recs[3].to_dict() and again[1].explanation == recs[1].explanation
    reused = [read_manifest(second.manifest_file("interpret", i))["reused"] for i in range(3)]
    assert sum(n for r in reused for n in r.values()) == 2
    assert all(set(r) <= {first.ids.interpret} for r in reused)

    before = len(llm.requests)
    _run_all(_point(tmp_path, llm.url, "1,3"), tasks=1)  # all reused: no LLM call at all
    assert len(llm.requests) == before


def test_status_and_gather_count_against_the_selection(tmp_path: Path, llm) -> None:
    from interp.gather.outputs import build_table
    from interp.gather.points import point_sources
    from interp.report.summary import format_markdown, summarize
    from interp.stages.selected import selection_note

    cfg = _point(tmp_path, llm.url, "1,3,5")
    paths = _run_all(cfg, tasks=2)
    tasks = interpret_ranges(cfg, 16)
    note = selection_note(paths, tasks)
    assert "interpret.latents=1,3,5: 3 selected, 3 done (1 dead or too rare" in note
    assert "2 selected, 0 done" in selection_note(paths, (Task(5, 0, 2),))  # not run
    from interp.plan import plan_point
    from slurm.status import format_status, job_status

    (job,) = [j for j in plan_point(cfg, 16) if j.stage == "interpret"]
    row = job_status(paths.root, job, {job.point: cfg}, {}, {}, False)
    assert row.counts["done"] == 2
    text = format_status(paths.root, [row])
    assert "interpret selections (interpret.latents):" in text and note in text
    (source,) = point_sources(paths.root, [cfg])
    assert source.columns["selection"] == "1,3,5" and source.columns["n_selected"] == 3
    table = tmp_path / "t.parquet"
    build_table([source], table)
    summary = summarize(table, [source.columns])
    (point,) = summary["points"]
    assert point["n_latents"] == 3 and point["selection"] == "1,3,5"
    md = format_markdown(summary)
    assert "selection `interpret.latents=1,3,5`: 3 selected, 3 recorded, 1 dead or too rare" in md


def test_a_sample_larger_than_the_alive_latents_leaves_its_last_task_empty(
    tmp_path: Path, llm
) -> None:
    from interp.gather.points import point_sources
    from interp.stages.selected import selection_note

    raw = to_dict(_point(tmp_path, llm.url, "sample:6"))
    raw["interpret"]["range_latents"] = 5
    cfg = load_run_config(raw)
    paths = _run_all(cfg, tasks=2)  # 5 of the 6 latents are alive: task 1 gets none
    assert sorted(_records(paths, 1)) == [0, 1, 2, 3, 4]
    empty = read_manifest(paths.manifest_file("interpret", 1))
    assert empty["latents"] == [] and empty["n_latents"] == 0 and empty["n_selected"] == 5
    (source,) = point_sources(paths.root, [cfg])
    assert len(source.records) == 1 and source.columns["n_selected"] == 5
    assert ": 5 selected, 5 done (0 dead or too rare" in selection_note(
        paths, interpret_ranges(cfg, 16)
    )
