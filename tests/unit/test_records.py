"""The typed latent record (interp.records) against today's records on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interp.records import (
    STATUSES,
    Alternative,
    LatentRecord,
    RecordError,
    Tokens,
    parse_score_column,
    read_records,
    records_bytes,
    score_column,
)

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "records_v1"
FILES = sorted(FIXTURES.glob("*.jsonl"))
# written by the stage with every key of schema 1 (the others predate a key or are
# hand-written by tests in their own key order)
CURRENT = ("stage_faults", "tiny_local", "validity_baseline", "http_fake")


def test_the_fixture_covers_every_outcome() -> None:
    statuses = {r.status for f in FILES for r in read_records(f)}
    assert statuses >= {"ok", "too_rare", "explain_failed", "error"}
    assert {f.stem for f in FILES} >= set(CURRENT)


@pytest.mark.parametrize("name", CURRENT)
def test_current_records_are_written_back_byte_for_byte(name: str) -> None:
    data = (FIXTURES / f"{name}.jsonl").read_bytes()
    records = list(read_records(FIXTURES / f"{name}.jsonl"))
    assert records_bytes(records) == data


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_every_record_loads_with_its_values(path: Path) -> None:
    for line in path.read_text().splitlines():
        raw = json.loads(line)
        r = LatentRecord.from_json(line)
        assert (r.latent, r.status, r.explanation) == (
            raw["latent"], raw["status"], raw["explanation"]
        )  # fmt: skip
        assert r.scores == raw.get("scores", {})
        assert r.error == raw.get("error") and r.retries == raw.get("retries", 0)
        tokens = raw.get("tokens", {})
        assert r.tokens.prompt == tokens.get("prompt", 0)
        assert r.tokens.usage_missing == tokens.get("usage_missing", 0)
        for kind in ("control", "baseline"):
            alt = raw.get(kind)
            assert getattr(r, kind) == Alternative.from_dict(alt)
            assert r.source(kind) == ((alt or {}).get("scores") or {})
        assert LatentRecord.from_json(r.to_json()) == r  # older shapes round-trip too


def test_the_stage_s_outcomes_are_typed() -> None:
    records = {r.latent: r for r in read_records(FIXTURES / "stage_faults.jsonl")}
    ok = next(r for r in records.values() if r.status == "ok")
    assert ok.control is not None and ok.control.source_latent in records
    assert set(ok.tokens.parts) >= {"explain", "score", "control"}
    assert ok.tokens.prompt == sum(p.prompt for p in ok.tokens.parts.values())
    raw = next(r for r in records.values() if "500 oops" in (r.raw_explanation or ""))
    assert raw.status == "error" and "server answered 500" in raw.error
    assert all(r.attempted == (r.status not in ("too_rare", "skipped")) for r in records.values())


def test_unknown_status_and_newer_schema_are_refused_by_name() -> None:
    with pytest.raises(RecordError, match=r"status 'OK' is not one of"):
        LatentRecord.from_json('{"latent": 1, "status": "OK"}')
    with pytest.raises(RecordError, match="schema_version=2 is newer"):
        LatentRecord.from_json('{"latent": 1, "status": "ok", "schema_version": 2}')
    assert set(STATUSES) == {"ok", "too_rare", "skipped", "explain_failed", "error"}


def test_a_bad_line_names_its_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "r00000.jsonl"
    f.write_text('{"latent": 0, "status": "ok"}\n{"latent": 1, "sta')
    with pytest.raises(RecordError, match=r"r00000.jsonl:2: not a latent record"):
        list(read_records(f))


def test_legacy_flat_scores_and_column_names() -> None:
    r = LatentRecord.from_dict({"latent": 3, "status": "ok", "detection_auroc": 0.75,
                                "fuzzing_active_balanced_accuracy": 0.5, "prompt_tokens": 9})  # fmt: skip
    assert r.scores == {"detection": {"auroc": 0.75}, "fuzzing_active": {"balanced_accuracy": 0.5}}
    assert parse_score_column(score_column("control", "detection", "auroc")) == (
        "control", "detection", "auroc"
    )  # fmt: skip
    assert parse_score_column("control.scores.fuzzing.f1") == ("control", "fuzzing", "f1")
    assert parse_score_column("wall_s") is None and parse_score_column("prompt_tokens") is None


def test_a_record_built_in_code_writes_schema_1() -> None:
    r = LatentRecord(5, "too_rare", n_active_tokens=2, max_act=1.5, error="2 < 12",
                     tokens=Tokens())  # fmt: skip
    d = json.loads(r.to_json())
    assert list(d) == [
        "latent", "status", "n_active_tokens", "n_active_contexts", "max_act", "explanation",
        "raw_explanation", "negatives", "scores", "control", "baseline", "tokens", "retries",
        "wall_s", "error",
    ]  # fmt: skip
    assert d["tokens"] == {"prompt": 0, "completion": 0, "prompt_computed": 0,
                           "usage_tokenizer": 0, "usage_missing": 0, "parts": {}}  # fmt: skip


def test_the_sweep_table_columns_follow_the_record_grammar() -> None:
    """gather flattens record files into dotted columns; the score columns it makes parse
    back (parse_score_column) to exactly the (source, scorer, metric) the records hold."""
    from interp.report.table import read_record_file

    path = FIXTURES / "stage_faults.jsonl"
    records = list(read_records(path))
    table = read_record_file(path, records[0].latent, records[-1].latent + 1)
    parsed = {parse_score_column(n) for n in table.column_names} - {None}
    held = {
        (source, scorer, metric)
        for r in records
        for source in ("scores", "control", "baseline")
        for scorer, metrics in r.source(source).items()
        for metric in metrics
    }
    assert parsed == held and ("baseline", "detection", "auroc") in held


def test_the_record_and_the_moved_configs_import_light() -> None:
    """interp.config re-exports the interpret, examples and explainer configs from their
    packages; neither that nor interp.records may pull numpy or torch in."""
    import subprocess
    import sys

    code = (
        "import sys, interp.config as c, interp.records;"
        "from interp.interpret.config import InterpretConfig;"
        "assert c.InterpretConfig is InterpretConfig;"
        "assert c.ExamplesConfig.__module__ == 'interp.latents.config';"
        "assert c.ExplainerConfig.__module__ == 'interp.explain.config';"
        "print(sorted(m for m in ('numpy', 'torch', 'tqdm') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
