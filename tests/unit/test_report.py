"""The sweep report, compare and latent dashboards on small sweeps written by the real
writers (point records, train summaries, SAE save, latent store slice writer), with the
latent table written in gather's column layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from interp.config import load_run_config
from interp.runs import RunPaths, atomic_write_json, gather_dir

PLANT = "</script><script>alert(1)</script> & <b>bold</b>"
CORPUS = "def f(x): return x  # " + PLANT + " The quick brown fox jumps over the lazy dog. "
MODEL = "tiny-random-llama"  # hidden 256, vocab 49152 (setup.sh --test provisions it)
N_LATENTS, CTX, N_TOKENS, N_INTERP = 64, 16, 512, 8


def point_cfg(out_dir: Path, name: str, layer: int, arch: str = "topk", **extra: Any):
    sae = {"architecture": arch, "num_latents": N_LATENTS, "k": 4}
    if arch == "neurons":
        sae = {"architecture": "neurons", "k": 4, "expansion_factor": 1, "num_latents": 0}
    raw = {
        "name": name, "out_dir": str(out_dir), "layer": layer, "model": {"name": MODEL},
        "sae": sae, "data": {"ctx_len": CTX},
        "train": {"num_tokens": 1024},
        "collect": {"num_tokens": N_TOKENS, "slice_tokens": N_TOKENS, "range_latents": N_LATENTS},
        "interpret": {"num_latents": N_INTERP, "range_latents": 4,
                      "examples": {"window": CTX, "min_examples": 2}},
        **extra,
    }  # fmt: skip
    return load_run_config(raw)


def record(latent: int, scorers: tuple[str, ...], rng: np.random.Generator, control: bool) -> dict:
    status = "ok" if latent % 7 else ("too_rare" if latent else "ok")
    if latent == 5:
        status = "explain_failed"
    rec: dict[str, Any] = {
        "latent": latent, "status": status, "n_active_tokens": 10 + latent,
        "n_active_contexts": 3, "max_act": 2.5, "explanation": None, "raw_explanation": None,
        "scores": {}, "tokens": {"prompt": 900 + latent, "completion": 20, "prompt_computed": 400},
        "wall_s": 1.5, "retries": 0, "error": None,
    }  # fmt: skip
    if status == "explain_failed":
        rec["error"], rec["raw_explanation"] = "no usable line", PLANT
    if status != "ok":
        return rec
    rec["explanation"] = (
        f"latent {latent}: {PLANT}" if latent == 0 else f"words about topic {latent}"
    )
    base = rng.uniform(0.5, 1.0)
    for s in scorers:
        metric = "correlation" if s == "simulation" else "balanced_accuracy"
        val = float(np.clip(base + rng.normal(0, 0.05), 0, 1))
        # gather also writes list columns (CIs): the report must skip them, not crash
        rec["scores"][s] = {metric: val, "auroc": val, "n": 8, "auroc_ci": [val - 0.1, val]}
    if control:
        rec["control"] = {
            "explanation": f"control text {PLANT}", "source_latent": (latent + 1) % N_INTERP,
            "scores": {s: {"balanced_accuracy": 0.5, "auroc": float(rng.uniform(0.3, 0.6)), "n": 8}
                       for s in scorers if s != "simulation"},
        }  # fmt: skip
    return rec


def flat_row(rec: dict, point: dict) -> dict:
    """gather's layout: point columns, record fields, scores.<s>.<m> / control.<s>.<m>."""
    row = {**point}
    for k in ("latent", "status", "n_active_tokens", "n_active_contexts", "max_act",
              "explanation", "raw_explanation", "wall_s", "error", "retries"):  # fmt: skip
        row[k] = rec.get(k)
    for s, metrics in rec["scores"].items():
        row.update({f"scores.{s}.{m}": v for m, v in metrics.items()})
    ctrl = rec.get("control") or {}
    row["control.explanation"] = ctrl.get("explanation")
    for s, metrics in (ctrl.get("scores") or {}).items():
        row.update({f"control.{s}.{m}": v for m, v in metrics.items()})
    for step in ("explain", "score"):
        row[f"tokens.parts.{step}.prompt"] = rec["tokens"]["prompt"] // 2
    row["prompt_tokens"] = rec["tokens"]["prompt"]
    row["completion_tokens"] = rec["tokens"]["completion"]
    return row


def write_store(paths: RunPaths, rng: np.random.Generator, n_latents: int) -> None:
    from interp.models.load import load_tokenizer
    from interp.store.writer import write_slice

    ids = load_tokenizer(MODEL)(CORPUS)["input_ids"]
    token_ids = np.resize(np.asarray(ids, dtype=np.int64), N_TOKENS)
    idx = np.stack([rng.choice(n_latents, size=2, replace=False) for _ in range(N_TOKENS)])
    val = rng.uniform(0.1, 3.0, size=idx.shape).astype(np.float32)
    write_slice(paths.slice_group(0), token_start=0, token_stop=N_TOKENS, latent_idx=idx,
                latent_val=val, token_ids=token_ids, keep=np.ones(N_TOKENS, bool),
                n_latents=n_latents)  # fmt: skip


def write_sae(cfg, paths: RunPaths) -> None:
    import torch

    from interp.sae.build import build_sae
    from interp.sae.io import save_sae

    d_in = 512 if cfg.sae.architecture == "neurons" else 256  # neurons read mlp.down_proj:input
    # one seed for every layer: equal decoders, so alignment pairs latent i with latent i
    sae = build_sae(cfg.sae, d_in, generator=torch.Generator().manual_seed(0))
    save_sae(sae, paths.sae_dir())


def make_sweep(
    out_dir: Path,
    name: str,
    points: list[tuple[int, str, list[str] | None]],
    *,
    scorers: tuple[str, ...] = ("detection", "fuzzing", "simulation"),
    control: bool = True,
    table: bool = True,
    train: bool = True,
    store: bool = False,
    align: bool = False,
    seed: int = 0,
    **extra: Any,
) -> Path:
    """A sweep folder: points (layer, architecture, overrides) recorded as the sweep
    command records them, their training summaries, optionally dictionaries and stores,
    the gathered table and alignment results."""
    from slurm.submit import record_point

    rng = np.random.default_rng(seed)
    rows, ids = [], []
    for layer, arch, overrides in points:
        hook = {"hook": f"layers.{layer}.mlp.down_proj:input"} if arch == "neurons" else {}
        cfg = point_cfg(out_dir, name, layer, arch, **hook, **extra)
        over = {"overrides": overrides, "multirun_dir": str(out_dir / "mr"), "job_num": 0}
        root = record_point(cfg, over if overrides is not None else None)
        paths = RunPaths(root, cfg)
        ids.append(paths.ids.point)
        if train and arch != "neurons":
            atomic_write_json(paths.train_summary(), {
                "fvu": 0.3 - 0.02 * layer + 0.01 * seed, "l0": 4.0, "dead_pct": 1.5 * layer,
                "ce_increase": 0.1 * layer})  # fmt: skip
            paths.train_metrics().write_text("".join(
                json.dumps({"step": s, "tokens": 256 * s, "fvu": 1.0 / (s + 1)}) + "\n"
                for s in range(1, 6)))  # fmt: skip
        if store:
            width = 512 if arch == "neurons" else N_LATENTS
            write_store(paths, rng, width)
            write_sae(cfg, paths)
        point = {"point": paths.ids.point, "layer": layer, "sae_id": cfg.sae.sae_id,
                 "architecture": arch, "hookpoint": cfg.hookpoint}  # fmt: skip
        rows += [flat_row(record(i, scorers, rng, control), point) for i in range(N_INTERP)]
    root = out_dir / name
    if table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        gather_dir(root).mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), gather_dir(root) / "latents.parquet")
    if align:
        write_alignment(root, ids[0], ids[1])
    return root


def write_alignment(root: Path, a: str, b: str) -> None:
    """interp.align.sweep's layout: index.json + pairs/<name>/matches.parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    name = f"{a}_{b}_abcdef"
    folder = gather_dir(root) / "align" / "pairs" / name
    folder.mkdir(parents=True)
    i = np.arange(N_INTERP)
    pq.write_table(pa.table({"a": i, "b": i[::-1], "similarity": np.linspace(0.9, 0.2, N_INTERP),
                             "in_graph": np.ones(N_INTERP, bool)}), folder / "matches.parquet")  # fmt: skip
    entry = {
        "name": name,
        "kind": "layers",
        "a": {"point": a},
        "b": {"point": b},
        "status": "ok",
        "reason": None,
        "similarity": "decoder",
        "num_pairs": N_INTERP,
        "median": 0.55,
        "mean": 0.62,
        "frac_above": {"0.5": 0.7, "0.9": 0.1},
        "baseline_median": 0.11,
        "baseline_frac_above": {"0.5": 0.0, "0.9": 0.0},
        "explanation_similarity_mean": None,
        "explanation_similarity_shuffled": None,
    }
    skipped = {**entry, "name": "x", "kind": "same_layer", "status": "skipped",
               "reason": "different spaces", "b": {"point": "nowhere"}}  # fmt: skip
    atomic_write_json(gather_dir(root) / "align" / "index.json",
                      {"config": {}, "pairs": [entry, skipped]})  # fmt: skip


TOPK2 = [(3, "topk", ["layer=3"]), (6, "topk", ["layer=6"])]


# The complete report loads the subject model for the logit lens and draws every plot:
# 138 s of setup at load 13 on 2 cores (imports of transformers' Llama and matplotlib
# dominate), ~25 s on a quiet machine.
SLOW = pytest.mark.slow


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One complete sweep (two TopK layers + neurons, stores, dictionaries, alignment) and
    its report with dashboards, built once for the tests below."""
    from interp.report.html import ReportConfig, write_report

    tmp = tmp_path_factory.mktemp("full")
    root = make_sweep(tmp, "full", [*TOPK2, (3, "neurons", ["layer=3", "sae=neurons"])],
                      store=True, align=True)  # fmt: skip
    return write_report(root, cfg=ReportConfig())


@SLOW
def test_full_report_draws_every_plot(full_report: Path) -> None:
    page = full_report
    assert page.parent == page.parents[1] / "gather" / "report" or page.name == "index.html"
    assert page.parent.name == "report" and page.parent.parent.name == "gather"
    imgs = {p.name: p.read_bytes() for p in (page.parent / "img").iterdir()}
    assert {"reconstruction.png", "dead.png", "train_fvu.png", "scores.png", "scorer_corr.png",
            "align-topk-64-k4.png"} <= set(imgs)  # fmt: skip
    assert all(b.startswith(b"\x89PNG") and len(b) > 2000 for b in imgs.values())
    text = page.read_text()
    assert "Against simulation" in text and "missing" not in text.split("Layer-to-layer")[1]
    assert 'class="missing"' not in text.split("Score distributions")[1].split("Correlation")[0]
    assert "layer=3 sae=neurons" in text and "layer=6" in text  # overrides per point
    assert not list(page.parents[1].glob("report.tmp-*"))  # committed by rename


def test_partial_inputs_say_what_is_missing(tmp_path: Path) -> None:
    from interp.report.html import ReportConfig, write_report

    root = make_sweep(tmp_path, "part", TOPK2, scorers=("detection",), control=False,
                      train=False)  # fmt: skip
    page = write_report(root, cfg=ReportConfig(build_dashboards=False))
    text = page.read_text()
    imgs = {p.name for p in (page.parent / "img").iterdir()}
    assert imgs == {"scores.png"}  # no training metrics, one scorer, no alignment
    assert "no point has training metrics" in text
    assert "fewer than two scorers" in text
    assert "no random-explanation control" in text
    assert "no alignment results" in text
    # no table at all: still a report
    (root / "gather" / "latents.parquet").unlink()
    page = write_report(root, cfg=ReportConfig())
    text = page.read_text()
    assert "no latent table" in text and not (page.parent / "img").exists()


def test_report_on_a_folder_without_points_is_a_clear_error(tmp_path: Path) -> None:
    from interp.report.html import compare, write_report

    with pytest.raises(ValueError, match="no recorded sweep point"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="neither a sweep folder"):
        compare([tmp_path], tmp_path / "out")


def test_compare_lines_up_two_multiruns_by_overrides(tmp_path: Path) -> None:
    from interp.report.html import ReportConfig, compare, line_up, load_inputs

    a = make_sweep(
        tmp_path / "a",
        "sw",
        [(3, "topk", ["layer=3", "train.lr=0.001"]), (6, "topk", ["layer=6", "train.lr=0.001"])],
        seed=0,
    )
    b = make_sweep(tmp_path / "b", "sw", [(6, "topk", ["layer=6", "train.lr=0.002"]),
                                          (9, "topk", ["layer=9", "train.lr=0.002"])], seed=1)  # fmt: skip
    runs = load_inputs([a, b])
    keys, cells = line_up(runs)
    assert keys == ["layer"]
    assert [r.name for r in runs] == ["train.lr=0.001", "train.lr=0.002"]
    assert sorted(cells) == [("3",), ("6",), ("9",)]
    assert set(cells[("6",)]) == {0, 1} and set(cells[("3",)]) == {0} and set(cells[("9",)]) == {1}
    assert cells[("6",)][0].layer == cells[("6",)][1].layer == 6
    page = compare([a, b], tmp_path / "cmp", ReportConfig(build_dashboards=False))
    text = page.read_text()
    fvu = text.split("<h3>FVU</h3>")[1].split("</table>")[0]
    row6 = fvu.split("<td>6</td>")[1].split("</tr>")[0]
    assert "0.180" in row6 and "0.190" in row6  # layer 6 of both runs side by side
    assert "missing" in fvu.split("<td>3</td>")[1].split("</tr>")[0]


def test_hydra_multirun_folder_is_an_input(tmp_path: Path) -> None:
    import yaml

    from interp.config import to_dict
    from interp.report.html import resolve_input

    root = make_sweep(tmp_path, "mr", [(3, "topk", None), (6, "topk", None)])
    cfgs = [point_cfg(tmp_path, "mr", layer) for layer in (3, 6)]
    multirun = root / ".hydra" / "multirun-x"
    for n, cfg in enumerate(cfgs):
        job = multirun / str(n) / ".hydra"
        job.mkdir(parents=True)
        (job / "overrides.yaml").write_text(yaml.safe_dump([f"layer={cfg.layer}"]))
        (job / "config.yaml").write_text(yaml.safe_dump({**to_dict(cfg), "cluster": {"x": 1}}))
    (run,) = resolve_input(multirun)
    assert run.root == root.resolve()
    assert sorted(p.overrides for p in run.points) == [["layer=3"], ["layer=6"]]
    # the sweep folder itself recovers the overrides from Hydra's job folders too
    (run,) = resolve_input(root)
    assert sorted(p.overrides for p in run.points) == [["layer=3"], ["layer=6"]]


def test_score_columns_of_both_gather_layouts() -> None:
    from interp.records import parse_score_column
    from interp.report.sweepdata import LatentTable

    assert parse_score_column("scores.detection.auroc") == ("scores", "detection", "auroc")
    assert parse_score_column("control.fuzzing.balanced_accuracy") == (
        "control", "fuzzing", "balanced_accuracy")  # fmt: skip
    assert parse_score_column("fuzzing_active_auroc") == ("scores", "fuzzing_active", "auroc")
    assert parse_score_column("prompt_tokens") is None
    t = LatentTable({"status": np.array(["ok"] * 3, dtype=object),
                     "detection_balanced_accuracy": np.array([0.5, 0.7, np.nan]),
                     "scores.simulation.correlation": np.array([0.1, 0.2, 0.3])})  # fmt: skip
    assert t.scorers() == ["detection", "simulation"]
    assert t.metric_of("simulation") == "correlation"


def test_scorer_correlations_match_spearman() -> None:
    from scipy.stats import spearmanr

    from interp.report.html import scorer_correlations
    from interp.report.sweepdata import LatentTable

    rng = np.random.default_rng(0)
    a = rng.normal(size=50)
    b = a + rng.normal(0, 0.5, size=50)
    b[3] = np.nan  # pairwise complete
    t = LatentTable({"status": np.array(["ok"] * 50, dtype=object),
                     "scores.detection.auroc": a, "scores.simulation.correlation": b})  # fmt: skip
    names, corr, count = scorer_correlations(t)
    keep = np.isfinite(b)
    assert names == ["detection", "simulation"] and count[0, 1] == 49
    assert corr[0, 1] == pytest.approx(spearmanr(a[keep], b[keep]).statistic)


def test_select_latents_top_bottom_and_sample() -> None:
    from interp.report.dashboard import DashboardConfig, select_latents
    from interp.report.sweepdata import LatentTable

    score = np.arange(20, dtype=float)
    score[[0, 1]] = np.nan
    t = LatentTable({"scores.detection.auroc": score})
    chosen = select_latents(t, np.ones(20, bool), DashboardConfig(top_n=3, bottom_n=2, sample_n=4))
    assert [r for r, w in chosen.items() if w == "top"] == [19, 18, 17]
    assert sorted(r for r, w in chosen.items() if w == "bottom") == [2, 3]
    assert len([w for w in chosen.values() if w == "sample"]) == 4
    with pytest.raises(ValueError, match="rank_by='intruder'"):
        select_latents(t, np.ones(20, bool), DashboardConfig(rank_by="intruder"))


def test_script_json_cannot_close_the_script() -> None:
    from interp.report.dashboard import script_json

    obj = {"e": PLANT + "\u2028<!--", "n": None}
    text = script_json(obj)
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == obj


@SLOW
def test_dashboards_escape_corpus_and_explanations(full_report: Path) -> None:
    latents = full_report.parent / "latents"
    assert 'href="latents/index.html"' in full_report.read_text()
    index = (latents / "index.html").read_text()
    assert index.count("<script") == 2 and index.count("</script>") == 2  # data + code only
    pages = sorted(latents.glob("*/*.html"))
    assert len(pages) == 3 * N_INTERP  # 8 latents per point, all under the default bounds
    for p in pages:
        assert "<script" not in p.read_text(), p  # nothing from the corpus or the LLM got through
    # the planted corpus text shows up in example tokens, escaped token by token
    examples = [p.read_text().split("Activation histogram")[-1] for p in pages]
    assert sum('">&lt;/' in e or '">&lt;' in e for e in examples) >= len(pages) // 2
    first = (latents / pages[0].parent.name / "0.html").read_text()
    assert "latent 0: &lt;/script&gt;" in first  # the explanation, escaped
    assert 'class="t"' in first and "data-act=" in first  # highlighted example tokens
    assert "<svg" in first and "promoted" in first  # histogram, logit lens
    assert "<td>explain</td><td>450</td>" in first  # token cost per step
    neuron_pages = [p.read_text() for p in pages if "promoted" in p.read_text()]
    assert len(neuron_pages) == len(pages)  # neurons too: through mlp.down_proj
    partners = [p for p in pages if "similarity 0.900" in p.read_text()]
    assert len(partners) == 2  # latent 0 of each aligned dictionary links the other
    assert '.html">' in partners[0].read_text().split("Aligned partners")[1]


@SLOW
def test_decoder_logits_rank_the_token_the_direction_writes(tmp_path: Path) -> None:
    import torch

    from interp.models.load import load_causal_lm, load_tokenizer
    from interp.report.dashboard import decoder_logits
    from interp.report.sweepdata import load_points
    from interp.sae.io import load_sae, save_sae

    root = make_sweep(tmp_path, "lens", TOPK2[:1], store=True, table=False)
    (point,) = load_points(root)
    model = load_causal_lm(MODEL, "float32", "cpu")
    W_U = model.get_output_embeddings().weight.detach()
    gain = model.model.norm.weight.detach()
    t = int(W_U.norm(dim=1).argmax())  # the largest-norm row wins its own dot product
    sae = load_sae(point.files.sae_dir)
    with torch.no_grad():
        sae.W_dec[0] = W_U[t] / gain
        sae.W_dec[1] = -W_U[t] / gain
    shutil.rmtree(point.files.sae_dir)  # save_sae never overwrites a committed dictionary
    save_sae(sae, point.files.sae_dir)
    out = decoder_logits(point, [0, 1], 5, {})
    name = load_tokenizer(MODEL).decode([t])
    assert out[0][0][0][0] == name and out[1][1][0][0] == name
    assert out[0][0][0][1] > out[0][0][1][1] and out[1][1][0][1] < 0


def test_compare_command(tmp_path: Path) -> None:
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    a = make_sweep(tmp_path / "a", "s", TOPK2, scorers=("detection",))
    b = make_sweep(tmp_path / "b", "s", TOPK2, scorers=("detection",), seed=1)
    cmd = [sys.executable, "launch/compare.py", str(a), str(b), "--out", str(tmp_path / "o")]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"report: {tmp_path / 'o' / 'index.html'}" in proc.stdout
    assert "<h3>FVU</h3>" in (tmp_path / "o" / "index.html").read_text()
    proc = subprocess.run([*cmd[:2], str(tmp_path)], cwd=root, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert proc.returncode != 0 and "compare: " in proc.stderr and "neither a sweep" in proc.stderr
