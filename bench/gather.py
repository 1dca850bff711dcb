"""Gather at scale: 1M generated latent records, completeness + table + summary (+ exports).

    python bench/gather.py                          # 8 points x 128 ranges x 1024 latents
    python bench/gather.py --points 2 --ranges 16   # a smoke run
    python bench/gather.py --exports                # also time the exports (see below)

Generates a sweep folder (default ``/tmp/interp-bench-gather``; kept and reused while the
parameters match) with real point configs (8 dictionaries: 4 architectures x 2 layers,
131,072 latents each), every stage's manifests committed, a training summary per point,
and one interpret record file per 1024-latent range holding records shaped like the
interpret stage's (explanation, raw reply, detection + fuzzing metrics with per-quantile
accuracies, the random-explanation control with its scores, tokens, retries, wall time,
status mix 88% ok / 8% too_rare / 3% explain_failed / 1% error with a traceback).

The gather runs in a fresh child process (``interp.stages.gather.gather``, exactly what
the gather job runs, exports off), so its peak RSS (``ru_maxrss``) is its own; the
record files are in the page cache (just written or read by the previous run). Goal:
<= 60 s and memory bounded by a row group, not by the number of latents.

``--exports`` then times the exports in another child: Neuronpedia for every point, and
delphi for one point only (delphi's layout is one file per latent per scorer: 3 files x
1M latents would be ~12 GB of 4 KB blocks on this shared disk), extrapolated linearly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ARCHS = ("topk", "batchtopk", "jumprelu", "relu")
LAYERS = (6, 15)
WIDTH = 131_072
WORDS = [
    "the token 'the' after a comma",
    "closing parentheses in Python code",
    "numbers in dates",
    "words about death and mourning",
    "the second token of a proper name",
    "negation in legal text",
    "plural nouns at the end of a clause",
    "quotation marks opening dialogue",
]


def point_configs(n_points: int, n_ranges: int, range_latents: int) -> list:
    from interp.config import load_run_config

    cfgs = []
    for i in range(n_points):
        arch, layer = ARCHS[i % len(ARCHS)], LAYERS[(i // len(ARCHS)) % len(LAYERS)]
        cfgs.append(
            load_run_config(
                {
                    "out_dir": "unused",
                    "name": "bench",
                    "layer": layer,
                    "sae": {"architecture": arch, "num_latents": WIDTH, "k": 32 + i // 8},
                    "interpret": {
                        "num_latents": n_ranges * range_latents,
                        "range_latents": range_latents,
                    },
                }
            )
        )
    return cfgs


def per_quantile_pool(rng: random.Random, n: int = 256) -> list[str]:
    """JSON text of per-quantile accuracies (10 quantiles + non-activating)."""
    pool = []
    for _ in range(n):
        qs = [{"quantile": q, "n": 5, "accuracy": rng.choice((0.2, 0.4, 0.6, 0.8, 1.0))}
              for q in range(10)]  # fmt: skip
        qs.append({"quantile": -1, "n": 50, "accuracy": rng.choice((0.5, 0.7, 0.8, 0.9, 0.96))})
        pool.append(json.dumps(qs))
    return pool


def scorer_json(rng: np.random.Generator, pq: str) -> str:
    ba, au = rng.uniform(0.45, 0.95), rng.uniform(0.45, 1.0)
    pr, re = rng.uniform(0.3, 1.0), rng.uniform(0.3, 1.0)
    return (
        f'{{"balanced_accuracy": {ba:.4f}, "precision": {pr:.4f}, "recall": {re:.4f}, '
        f'"f1": {2 * pr * re / (pr + re):.4f}, "auroc": {au:.4f}, "n": 100, "n_failed": '
        f'{int(rng.integers(0, 3))}, "per_quantile": {pq}}}'
    )


TRACEBACK = json.dumps(
    "Traceback (most recent call last):\n"
    + '  File "interp/stages/interpret.py", line 120, in interpret_latent\n' * 12
    + "RuntimeError: the scorer's reply had no logprobs for Yes or No"
)


def records_text(start: int, stop: int, seed: int, pools: list[str]) -> str:
    rng = np.random.default_rng(seed)
    prng = random.Random(seed)
    lines = []
    for latent in range(start, stop):
        u = rng.random()
        status = "ok" if u < 0.88 else "too_rare" if u < 0.96 else "explain_failed" if u < 0.99 else "error"  # fmt: skip
        n_tok = int(rng.integers(0, 50_000))
        head = (
            f'{{"latent": {latent}, "status": "{status}", "n_active_tokens": {n_tok}, '
            f'"n_active_contexts": {n_tok // 3}, "max_act": {rng.uniform(0.5, 40):.3f}, '
        )
        expl = f"{prng.choice(WORDS)} (latent {latent})"
        raw = json.dumps(f"Looking at the highlighted tokens, they share a theme. {expl}. " * 5)
        prompt = int(rng.integers(2500, 4000))
        tail = (
            f'"tokens": {{"prompt": {prompt}, "completion": {int(rng.integers(20, 200))}, '
            f'"prompt_computed": {prompt // 2}}}, "retries": {int(rng.integers(0, 2))}, '
            f'"wall_s": {rng.uniform(5, 60):.3f}'
        )
        if status == "ok":
            det, fuz = (scorer_json(rng, prng.choice(pools)) for _ in range(2))
            cdet, cfuz = (scorer_json(rng, prng.choice(pools)) for _ in range(2))
            body = (
                f'"explanation": {json.dumps(expl)}, "raw_explanation": {raw}, '
                f'"scores": {{"detection": {det}, "fuzzing": {fuz}}}, '
                f'"control": {{"explanation": "{prng.choice(WORDS)}", "source_latent": '
                f'{int(rng.integers(0, WIDTH))}, "scores": {{"detection": {cdet}, '
                f'"fuzzing": {cfuz}}}}}, "error": null, '
            )
        elif status == "too_rare":
            body = '"explanation": null, "raw_explanation": null, "scores": {}, "error": null, '
        elif status == "explain_failed":
            body = (
                f'"explanation": null, "raw_explanation": {raw}, "scores": {{}}, "error": '
                "\"no usable 'Explanation:' line in the reply, after one retry\", "
            )
        else:
            body = f'"explanation": null, "raw_explanation": null, "scores": {{}}, "error": {TRACEBACK}, '  # fmt: skip
        lines.append(head + body + tail + "}\n")
    return "".join(lines)


def generate(root: Path, n_points: int, n_ranges: int, range_latents: int) -> None:
    """The sweep folder, reused when ``root/bench.json`` says it has these parameters."""
    from interp.config import to_dict
    from interp.models import hookpoint_width
    from interp.plan import plan_point
    from interp.runs import RunPaths

    params = {"points": n_points, "ranges": n_ranges, "range_latents": range_latents, "v": 1}
    stamp = root / "bench.json"
    if stamp.exists() and json.loads(stamp.read_text()) == params and _configs_load(root):
        print(f"reusing {root}", file=sys.stderr)
        return
    if root.exists():
        subprocess.run(["rm", "-rf", str(root)], check=True)
    t0 = time.perf_counter()
    pools = per_quantile_pool(random.Random(0))
    for p, cfg in enumerate(point_configs(n_points, n_ranges, range_latents)):
        paths = RunPaths(root, cfg)
        _write(paths.point_config(), json.dumps(to_dict(cfg)))
        train = {"fvu": 0.15 + 0.02 * p, "l0": 32.0 + p, "dead_pct": 0.5 * p, "ce_increase": 0.1}
        _write(paths.train_summary(), json.dumps(train))
        for job in plan_point(cfg, hookpoint_width(cfg.model.name, cfg.hookpoint)):
            for task in job.tasks:
                if job.stage == "interpret":
                    text = records_text(task.start, task.stop, p * 100_003 + task.index, pools)
                    _write(paths.records_file(task.index), text)
                info = {"n_latents": task.stop - task.start} if job.stage == "interpret" else {}
                _write(paths.manifest_file(job.stage, task.index), json.dumps(info))
        print(
            f"point {p + 1}/{n_points} written ({time.perf_counter() - t0:.0f} s)", file=sys.stderr
        )
    stamp.write_text(json.dumps(params))


def _configs_load(root: Path) -> bool:
    """False when the recorded points no longer load or no longer name the generated
    folders (a config key renamed or added since changes the stage ids)."""
    from interp.stages import gather

    try:
        missing = gather.check_complete(root, gather.load_points(root))
    except ValueError as err:
        missing = [str(err)]
    if missing:
        print(f"regenerating {root}: {missing[0]}", file=sys.stderr)
    return not missing


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def child_gather(root: Path) -> dict:
    """Run in a fresh process: the gather job's work, timed, with its own peak memory."""
    import pyarrow as pa

    from interp.gather import outputs
    from interp.stages import gather

    # generated points have no dictionaries: alignment and the report have their own benches
    outputs.AFTER_TABLE = ()
    t0 = time.perf_counter()
    cfgs = gather.load_points(root)
    problems = gather.check_complete(root, cfgs)
    assert not problems, problems
    t_check = time.perf_counter() - t0
    summary = gather.gather(root, exports=())
    wall = time.perf_counter() - t0
    timing = json.loads(gather.gather_manifest(root).read_text())["timing"]
    return {
        "n_latents": summary["n_latents"],
        "wall_s": wall,
        "check_s (timed twice: once here, once inside gather)": t_check,
        **timing,
        "cpu_s": _cpu_s(),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "arrow_pool_peak_mib": pa.default_memory_pool().max_memory() / 2**20,
        "table_mib": (root / "gather" / "latents.parquet").stat().st_size / 2**20,
    }


def child_exports(root: Path) -> dict:
    from interp.report.export import write_exports
    from interp.runs import gather_dir
    from interp.stages import gather

    cfgs = gather.load_points(root)
    points = [gather.point_columns(root, c) for c in cfgs]
    table = gather_dir(root) / gather.TABLE
    out = {}
    t0 = time.perf_counter()
    write_exports(table, gather_dir(root) / "export", points, formats=("neuronpedia",))
    out["neuronpedia_all_points_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    write_exports(table, gather_dir(root) / "export-delphi", points[:1], formats=("delphi",))
    out["delphi_one_point_s"] = time.perf_counter() - t0
    out["delphi_all_points_s (extrapolated)"] = out["delphi_one_point_s"] * len(points)
    subprocess.run(["rm", "-rf", str(gather_dir(root) / "export-delphi")], check=True)
    out["cpu_s"] = _cpu_s()
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _cpu_s() -> float:
    """User + system CPU time of this process, all threads (the busy machine's fair share)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def in_child(kind: str, root: Path) -> dict:
    cmd = [sys.executable, __file__, f"--child-{kind}", str(root)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode:
        sys.exit(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", type=Path, default=Path("/tmp/interp-bench-gather"))
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--ranges", type=int, default=128)
    ap.add_argument("--range-latents", type=int, default=1024)
    ap.add_argument("--exports", action="store_true")
    ap.add_argument("--child-gather", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--child-exports", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_gather or args.child_exports:
        out = (
            child_gather(args.child_gather)
            if args.child_gather
            else child_exports(args.child_exports)
        )
        print(json.dumps(out))
        return
    generate(args.root, args.points, args.ranges, args.range_latents)
    json_mib = sum(f.stat().st_size for f in args.root.glob("interpret/*/records/*.jsonl")) / 2**20
    load = os.getloadavg()[0]
    result = {"records_json_mib": round(json_mib), "load_avg_1min_before": load}
    result.update(in_child("gather", args.root))
    if args.exports:
        result["exports"] = in_child("exports", args.root)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
