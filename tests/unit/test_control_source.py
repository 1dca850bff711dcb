"""interpret.control_source=dictionary: the control's source is drawn from the whole
dictionary, never a latent that co-fires with the scored one, explained for the control
when the range did not explain it (one explainer call, in the control's tokens).

The range-level tests use word latents (one latent per planted word, as in
test_interpret_stage) and a client that explains by the marked word; the stage-level
test runs the real interpret stage on a real Zarr store against the loopback fake
OpenAI server and counts its requests.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from fake_openai import FakeOpenAI
from interpret_point import interpret_point
from test_interpret_stage import _CSR, RENDER, TRIGGERS, _cfg, _data

from interp.config import load_run_config, to_dict
from interp.interpret.controls import DictionaryPool, overlap
from interp.interpret.pipeline import LatentRange, interpret_range
from interp.interpret.summary import summarize
from interp.llm.base import ChoiceLogprobs, Generation
from interp.records import Alternative
from interp.runs import RunPaths
from interp.stages.interpret import range_config

pytestmark = pytest.mark.unit


class WordClient:
    """Explains "the word X" (X: the marked word); scores Yes iff X is in the text."""

    model_id = "words"

    def __init__(self) -> None:
        self.explained: list[str] = []

    async def generate(self, messages, *, max_new_tokens, temperature=0.0) -> Generation:
        word = re.search(r'marked tokens: "(\w+)"', messages[1]["content"]).group(1)
        self.explained.append(word)
        return Generation(f"Explanation: the word {word}", 120, 6, 0)

    async def next_token_logprobs(self, prompts, candidates) -> list[ChoiceLogprobs]:
        out = []
        for p in prompts:
            content = p[-1]["content"]
            m = re.search(r'the (?:word|token) "?(\w+)"?', content)
            yes = 0.9 if m.group(1) in content.replace(m.group(0), "") else 0.1
            out.append(ChoiceLogprobs({"Yes": math.log(yes), "No": math.log(1 - yes)}, 40, 30))
        return out

    def close(self) -> None:
        pass


WORDS = ["cat", "dog", "ran", "sat", "big"]


def _dictionary() -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray, dict[str, int]]:
    """Latents 0-4: one per word; 5: cat's tokens and big's (a heavy co-firer of cat);
    6: a third of cat's tokens (a partial co-firer, overlap 1 > 0.1 as it lives inside)."""
    csr, ids = _data(WORDS, rare=False)
    parts = [(csr.tok[a:b], csr.val[a:b]) for a, b in zip(csr.offsets[:-1], csr.offsets[1:])]
    cat, big = parts[0], parts[4]
    both = np.sort(np.concatenate([cat[0], big[0]]))
    parts.append((both, np.ones(len(both), np.float32)))
    parts.append((cat[0][::3], cat[1][::3]))
    return parts, ids, {w: i for i, w in enumerate(WORDS)}


def _pool(parts, seed: int = 0, max_overlap: float = 0.1) -> DictionaryPool:
    count_L = np.array([len(t) for t, _ in parts])
    return DictionaryPool(count_L, 4, lambda i: _CSR([parts[i]]), max_overlap, seed)


def _run(selected: list[int], seed: int = 0, **interpret):
    parts, ids, _ = _dictionary()
    cfg = _cfg(examples={"seed": seed}, **interpret)
    csr = _CSR([parts[i] for i in selected])
    client = WordClient()
    task = LatentRange(0, 0, len(selected), tuple(selected))
    records = asyncio.run(
        interpret_range(
            range_config(cfg), task, csr, ids, RENDER, client, lambda: False,
            pool=_pool(parts, seed),
        )
    )  # fmt: skip
    return records, client


def test_overlap_is_the_share_of_the_smaller_set() -> None:
    a, b = np.array([1, 2, 3, 4]), np.array([3, 4, 5, 6, 7, 8, 9, 10])
    assert overlap(a, b) == 0.5 and overlap(b, a) == 0.5
    assert overlap(a, np.array([9])) == 0.0 and overlap(a, np.zeros(0, int)) == 0.0


def test_one_latent_gets_a_control_explained_for_it_from_the_whole_dictionary() -> None:
    records, client = _run([0])
    (r,) = records
    c = r.control
    assert r.status == "ok" and c is not None and c.error is None
    assert c.source_latent in {1, 2, 3}  # alive, not cat, neither co-firer (4 = big: ok too)
    assert c.explanation == f"the word {WORDS[c.source_latent]}"
    assert c.explained_for_control and c.to_dict()["explained_for_control"] is True
    assert client.explained == ["cat", WORDS[c.source_latent]]  # one extra explainer call
    # the extra call is the control's cost: its prompt tokens on top of the scoring
    assert r.tokens.parts["control"].prompt == r.tokens.parts["score"].prompt + 120
    assert r.scores["detection"]["auroc"] == 1.0 > c.scores["detection"]["auroc"]
    # the record round-trips with its provenance
    assert Alternative.from_dict(c.to_dict()) == c


def test_the_source_is_never_a_heavy_cofirer_and_is_seeded() -> None:
    seen = set()
    for seed in range(24):
        (r,), _ = _run([0], seed=seed)
        assert r.control.source_latent not in (0, 5, 6), seed
        seen.add(r.control.source_latent)
        (again,), _ = _run([0], seed=seed)
        assert again.control.source_latent == r.control.source_latent  # deterministic
    assert seen == {1, 2, 3, 4}  # every non-co-firing alive latent is drawn for some seed


def test_a_source_in_the_range_is_reused_not_explained_again() -> None:
    parts, ids, _ = _dictionary()
    # only dog (1) may be cat's control and only cat dog's: 2-6 co-fire with both
    for i in range(2, 7):
        both = np.sort(np.concatenate([parts[0][0], parts[1][0]]))
        parts[i] = (both, np.ones(len(both), np.float32))
    pool = _pool(parts)
    assert pool.draw(0, parts[0][0])[0] == 1 and pool.draw(1, parts[1][0])[0] == 0
    records, client = _run_with(parts, ids, [0, 1])
    assert [r.control.source_latent for r in records] == [1, 0]
    assert not any(r.control.explained_for_control for r in records)
    assert sorted(client.explained) == ["cat", "dog"]  # no extra call


def _run_with(parts, ids, selected):
    cfg = _cfg()
    csr = _CSR([parts[i] for i in selected])
    client = WordClient()
    records = asyncio.run(
        interpret_range(
            range_config(cfg), LatentRange(0, 0, len(selected), tuple(selected)), csr, ids,
            RENDER, client, lambda: False, pool=_pool(parts),
        )
    )  # fmt: skip
    return records, client


def test_no_candidate_is_recorded_and_range_keeps_the_derangement() -> None:
    parts, ids, _ = _dictionary()
    pool = _pool(parts, max_overlap=0.0)
    everything = np.arange(len(ids))
    src, why = DictionaryPool(pool.count_L, 4, lambda i: _CSR([(everything, everything)]),
                              0.1, 0).draw(0, parts[0][0])  # fmt: skip
    assert src is None and "control_max_overlap=0.1" in why
    # control_source=range: the control stays inside the range, as before
    records, client = _run([0, 1], control_source="range")
    assert [r.control.source_latent for r in records] == [1, 0]
    assert sorted(client.explained) == ["cat", "dog"]
    (one,), _ = _run([0], control_source="range")
    assert one.control.error == "no other latent of this range was explained"
    # the summary reads a dictionary control like any other
    records, _ = _run([0, 2])
    s = summarize(records, 1.0)["scores"]["detection"]["auroc"]
    assert s["real"] == 1.0 and s["control"] < 0.8 and s["n_real"] == 2
    assert TRIGGERS["cat"] != TRIGGERS["dog"]


# ----------------------------------------------------------------------------- the stage
def test_the_stage_draws_from_the_store_and_pays_one_explain_call(tmp_path: Path) -> None:
    """A real Zarr store (latent 4 fires wherever latent 0 does), one selected latent:
    the control comes from the store, never latent 4, and costs exactly one more explain
    call (the fake server's explanation is the same for every latent, so the control's
    scoring prompts equal the real ones and the response cache answers them)."""
    from interp.plan import Task
    from interp.records import read_records
    from interp.stages import interpret
    from interp.stages.context import StageContext
    from interp.store import StoreMeta, write_slice, write_store_meta

    def run(name: str, control: bool, url: str) -> tuple[list, object]:
        raw = to_dict(interpret_point(tmp_path, url, name=name))
        raw["interpret"].update(latents="0,", control=control, control_source="dictionary")
        cfg = load_run_config(raw)
        paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
        paths.point_config().parent.mkdir(parents=True, exist_ok=True)
        paths.point_config().write_text(json.dumps(to_dict(cfg)))
        n, ctx, width = 32 * 32, 32, 5
        t = np.arange(n)
        idx = np.stack([(t // ctx) % 4, np.full(n, 4)], 1)  # 4: only where 0 fires
        val = np.stack([np.ones(n), ((t // ctx) % 4 == 0).astype(float)], 1)
        write_store_meta(paths.store_dir(), StoreMeta(width, 2, ctx, n, 16, "layers.6", "uint16"))
        write_slice(
            paths.slice_group(0), token_start=0, token_stop=n, latent_idx=idx,
            latent_val=val.astype(np.float32),
            token_ids=np.random.default_rng(0).integers(100, 2000, n), keep=t % ctx >= 1,
            n_latents=width, token_dtype="uint16",
        )  # fmt: skip
        interpret.run(StageContext.of(cfg, paths, Task(0, 0, 1), lambda: False))
        return list(read_records(paths.records_file(0))), (paths, cfg)

    server = FakeOpenAI()
    try:
        off, _ = run("off", False, server.url)
        calls_off = len(server.requests)
        on, (paths, cfg) = run("on", True, server.url)
        calls_on = len(server.requests) - calls_off
        explains = [r for r in server.requests[calls_off:] if not r["body"].get("logprobs")]
    finally:
        server.close()
    assert off[0].control is None and on[0].status == "ok"
    c = on[0].control
    assert c.source_latent in (1, 2, 3) and c.explained_for_control and c.error is None
    assert calls_on == calls_off + 1 and len(explains) == 2  # latent 0's and its control's
    # gather: the provenance is a column beside the control's scores, the summary as ever
    import pyarrow.parquet as pq

    from interp.gather.outputs import build_table
    from interp.gather.points import point_sources
    from interp.report.summary import summarize as summarize_table

    sources = point_sources(paths.root, [cfg])
    build_table(sources, tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet").to_pylist()
    assert table[0]["control.source_latent"] == c.source_latent
    assert table[0]["control.explained_for_control"] is True
    (point,) = summarize_table(tmp_path / "t.parquet", [sources[0].columns])["points"]
    assert point["n_latents"] == 1
