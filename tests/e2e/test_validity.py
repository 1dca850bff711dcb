"""Validity: a latent's true explanation scores clearly above another latent's.

What is real here: the text (the bundled corpus, tokenized by the subject model's
tokenizer), the Zarr latent store (written and compacted by the store's own writer),
the interpret stage's ``run`` (reader, response cache, records, manifest), the
detection and fuzzing scorers, and the offline scorer LLM through transformers.

What is constructed: the latents. Each fires on every occurrence of one word token
(`` def``, `` love``, ...), so its true explanation is known without asking anyone, and
the single-token baseline (no LLM) produces exactly it: 'the token "def"'. Two
orderings are checked, AUROC averaged over the latents, each against the
random-explanation control (another latent's LLM explanation):

- the single-token truth beats the control: a property of the scorers + scorer LLM;
- the LLM's own explanation (the default explainer) beats the control: the whole loop.

The scorer LLM is Qwen2.5-Coder-1.5B-Instruct (the default explainer/scorer):
SmolLM2-135M-Instruct, the fast fixture, cannot do it — on 12 such latents its
detection AUROC was 0.48 for the true explanations and 0.47 for the controls (fuzzing
0.53 vs 0.58). ``INTERP_VALIDITY_LLM`` names another model to check.

Measured (2026-11-25, 2-core machine, Qwen in bfloat16 on CPU, these 4 latents, 8
explain + 12 score examples): detection AUROC LLM explanations 0.851, single-token
truth 0.889, controls 0.469; fuzzing 0.872, 0.941, 0.431. 1 min 42 s on the quiet
machine (13 min at load ~14); the rerun from the response cache takes under 2 s.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from interp.config import RunConfig, load_run_config
from interp.plan import Task
from interp.runs import RunPaths, read_manifest
from interp.stages.context import StageContext

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

LLM = os.environ.get("INTERP_VALIDITY_LLM", "qwen2.5-coder-1.5b-instruct")
TRIGGERS = [" def", " love", " file", " error"]  # single tokens of SmolLM2's tokenizer
CTX, N_WINDOWS = 64, 4000
MARGIN = {"detection": 0.25, "fuzzing": 0.2}  # mean AUROC over latents, minus the control


def _cfg(out: Path) -> RunConfig:
    return load_run_config(
        {
            "name": "validity",
            "out_dir": str(out),
            "data": {"ctx_len": CTX},
            "collect": {"num_tokens": CTX * N_WINDOWS, "slice_tokens": CTX * N_WINDOWS},
            "llm": {"model": LLM, "dtype": "bfloat16", "device": "auto"},
            "scorer": {"names": ["detection", "fuzzing"]},
            "interpret": {
                "num_latents": len(TRIGGERS),
                "range_latents": len(TRIGGERS),
                "examples": {
                    "window": 16, "n_explain": 8, "n_score_active": 6, "n_score_inactive": 6,
                    "min_examples": 12,
                },
                "explainer": {"kind": "default"},
                "baseline": True,
            },
        }
    )  # fmt: skip


def _corpus_windows(cfg: RunConfig, tokenizer) -> np.ndarray:
    from interp.data.corpus import iter_documents
    from interp.data.pack import iter_windows

    blocks = iter_windows(iter_documents(cfg.data), tokenizer, CTX, max_windows=N_WINDOWS)
    return np.concatenate(list(blocks)).reshape(-1)


def _write_store(paths: RunPaths, token_ids: np.ndarray, trigger_ids: list[int]) -> None:
    """Latent i fires on every token equal to ``trigger_ids[i]`` (value 1 to 2)."""
    from interp.store.compact import compact_range
    from interp.store.writer import token_dtype_for, write_slice

    n = len(token_ids)
    idx = np.zeros((n, 1), np.int64)
    val = np.zeros((n, 1), np.float32)
    rng = np.random.default_rng(0)
    for latent, t in enumerate(trigger_ids):
        hit = token_ids == t
        idx[hit, 0] = latent
        val[hit, 0] = 1 + rng.random(int(hit.sum()))
    write_slice(
        paths.slice_group(0), token_start=0, token_stop=n, latent_idx=idx, latent_val=val,
        token_ids=token_ids, keep=np.ones(n, bool), n_latents=len(trigger_ids),
        token_dtype=token_dtype_for(int(token_ids.max())),
    )  # fmt: skip
    compact_range(
        paths.store_dir(), paths.range_group(0), latent_start=0,
        latent_stop=len(trigger_ids), slices=[paths.slice_group(0)],
    )  # fmt: skip


@pytest.fixture(scope="module")
def interpreted(tmp_path_factory: pytest.TempPathFactory):
    from interp.models.load import load_tokenizer
    from interp.models.provision import ModelNotFoundError, resolve_model
    from interp.stages import interpret

    try:
        resolve_model(LLM)
    except ModelNotFoundError as e:
        pytest.skip(f"scorer LLM {LLM} is not installed here: {e}")
    cfg = _cfg(tmp_path_factory.mktemp("runs"))
    paths = RunPaths(RunPaths.sweep_root(cfg), cfg)
    tokenizer = load_tokenizer(cfg.model.name)
    trigger_ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in TRIGGERS]
    assert all(len(t) == 1 for t in trigger_ids), trigger_ids
    _write_store(paths, _corpus_windows(cfg, tokenizer), [t[0] for t in trigger_ids])
    task = Task(0, 0, len(TRIGGERS))
    interpret.run(StageContext.of(cfg, paths, task, lambda: False))
    return cfg, paths, task


def _records(paths: RunPaths) -> list[dict]:
    return [json.loads(line) for line in paths.records_file(0).read_text().splitlines()]


def test_true_explanations_beat_random_ones(interpreted) -> None:
    _, paths, _ = interpreted
    records = _records(paths)
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    truth = [f'the token "{w.strip()}"' for w in TRIGGERS]
    assert [r["baseline"]["explanation"] for r in records] == truth
    explanations = [r["explanation"] for r in records]
    for r in records:
        assert r["control"]["explanation"] in explanations
        assert r["control"]["explanation"] != r["explanation"]
    scores = read_manifest(paths.manifest_file("interpret", 0))["scores"]
    lines = []
    for name, margin in MARGIN.items():
        auroc = scores[name]["auroc"]
        lines.append(
            f"{name}: LLM {auroc['real']:.3f}, single-token truth {auroc['baseline']:.3f}, "
            f"control {auroc['control']:.3f}"
        )
        assert auroc["n_real"] == auroc["n_control"] == auroc["n_baseline"] == len(TRIGGERS)
        assert auroc["baseline"] >= auroc["control"] + margin, lines
        assert auroc["real"] >= auroc["control"] + margin, lines
        wins = sum(
            r["baseline"]["scores"][name]["auroc"] > r["control"]["scores"][name]["auroc"]
            for r in records
        )
        assert wins >= len(records) - 1, (name, wins)
    print(explanations, "; ".join(lines))


def test_rerun_is_answered_by_the_response_cache(interpreted) -> None:
    from interp.stages import interpret

    cfg, paths, task = interpreted
    first = _records(paths)
    manifest = paths.manifest_file("interpret", 0)
    manifest.unlink()  # as if the task had been stopped before its commit
    interpret.run(StageContext.of(cfg, paths, task, lambda: False))
    again = _records(paths)
    strip = ("wall_s", "tokens")
    assert [{k: v for k, v in r.items() if k not in strip} for r in again] == [
        {k: v for k, v in r.items() if k not in strip} for r in first
    ]
    summary = read_manifest(manifest)
    assert summary["tokens"]["prompt"] > 0 and summary["tokens"]["prompt_computed"] == 0
