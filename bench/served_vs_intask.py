"""In-task vs served LLM on the same latent range: latents/min and prompt tokens/s.

    PYTHONPATH=. python bench/served_vs_intask.py --sweep runs/tiny            # after
    python launch/sweep.py experiment=tiny                                     # (its store)
    PYTHONPATH=. python bench/served_vs_intask.py --sweep runs/tiny --latents 0:6 --concurrency 4
    PYTHONPATH=. python bench/served_vs_intask.py --sweep runs/tiny --store <.../latents.zarr>
        # a store built by an older version (other run ids): throughput only, same for both

The committed store of the sweep's first point is read (never written: the bench works in
a temporary folder whose store/train/data link to the sweep's). The interpret stage runs
the same latent range twice with the same prompts and scorers, response cache off:

* in-task: the transformers backend loads the explainer in this process (what each
  interpret array task does in in-task mode);
* served: the serve stage's own code starts a llama-cpp-python replica of the same model
  (GGUF) on loopback, and the interpret stage talks to it over HTTP with
  ``--concurrency`` latents in flight (what an interpret task does in served mode).

Printed per mode: wall time, latents/min, prompt and completion tokens, prompt tokens/s,
and the load average (the machine is shared: say it with the numbers). Model load time
is reported apart: in-task mode pays it in every array task, served mode once per replica.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from interp.config import load_run_config, to_dict
from interp.plan import Task
from interp.runs import RunPaths, read_manifest
from interp.stages.context import StageContext

MODEL = "smollm2-135m-instruct"


def workdir(sweep: Path, tmp: Path) -> Path:
    """A root whose inputs are the sweep's (symlinks), so outputs stay out of it."""
    for name in ("store", "train", "data", "points"):
        if (sweep / name).exists():
            (tmp / name).symlink_to((sweep / name).resolve())
    return tmp


def point_config(sweep: Path, store: Path | None) -> dict[str, Any]:
    """The first point of the sweep whose latent store is complete (any, with ``store``)."""
    for f in sorted((sweep / "points").glob("*/config.json")):
        raw = json.loads(f.read_text())
        if store or (RunPaths(sweep, load_run_config(raw)).store_dir() / "store.json").exists():
            return raw
    raise SystemExit(
        f"no point under {sweep}/points has a complete store: run a sweep first, or pass "
        "--store <path to a latents.zarr with store.json>"
    )


def link_store(root: Path, raw: dict[str, Any], store: Path) -> None:
    """Put ``store`` where the point's reader looks for it (in the temporary root)."""
    target = RunPaths(root, load_run_config(raw)).store_dir()
    (root / "store").unlink()  # the sweep's store folder; replaced by a private one
    target.parent.mkdir(parents=True)
    target.symlink_to(store.resolve())


def run_mode(root: Path, raw: dict[str, Any], task: Task) -> dict[str, Any]:
    from interp.records import read_records
    from interp.stages import interpret

    cfg = load_run_config(raw)
    paths = RunPaths(root, cfg)
    t0 = time.perf_counter()
    interpret.run(StageContext.of(cfg, paths, task, lambda: False))
    wall = time.perf_counter() - t0
    manifest = read_manifest(paths.manifest_file("interpret", task.index)) or {}
    records = list(read_records(paths.records_file(task.index)))
    prompt = sum(r.tokens.prompt for r in records)
    completion = sum(r.tokens.completion for r in records)
    n = len(records)
    return {
        "latents": n,
        "statuses": manifest.get("status_counts"),
        "wall_s": round(wall, 1),
        "latents_per_min": round(60 * n / wall, 2),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_per_s": round(prompt / wall, 1),
        "load_avg": os.getloadavg()[0],
    }


def with_llm(raw: dict[str, Any], llm: dict[str, Any], concurrency: int) -> dict[str, Any]:
    out = json.loads(json.dumps(raw))
    out["llm"] = {**llm, "cache": False}
    out["interpret"]["max_concurrent_latents"] = concurrency
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, required=True, help="a sweep folder with a store")
    p.add_argument("--latents", default="0:6", help="start:stop of the range")
    p.add_argument("--concurrency", type=int, default=2, help="served: latents in flight")
    p.add_argument("--store", type=Path, default=None, help="use this latents.zarr instead")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    start, stop = (int(x) for x in args.latents.split(":"))
    task = Task(0, start, stop)
    raw = point_config(args.sweep.expanduser().resolve(), args.store)
    results = {}
    with tempfile.TemporaryDirectory(prefix="served-vs-intask-") as tmp:
        root = workdir(args.sweep.expanduser().resolve(), Path(tmp))
        if args.store:
            link_store(root, raw, args.store)
        intask = {"backend": "transformers", "model": MODEL, "dtype": "float32"}
        t0 = time.perf_counter()
        results["in-task"] = run_mode(root, with_llm(raw, intask, 1), task)
        results["in-task"]["includes_model_load"] = True
        served = with_llm(
            raw, {"backend": "http", "model": MODEL, "served_model": MODEL, "tokenizer": MODEL}, 1
        )
        served["serve"] = {"enabled": True, "engine": "llama_cpp", "n_ctx": 4096}
        cfg = load_run_config(served)
        from interp.stages.serve import start_replica

        t0 = time.perf_counter()
        server = start_replica(cfg, root, "bench")
        load_s = time.perf_counter() - t0
        try:
            served["llm"]["base_urls"] = [f"http://127.0.0.1:{server.port}/v1"]
            served["llm"]["max_concurrency"] = max(2, args.concurrency)
            served["interpret"]["max_concurrent_latents"] = args.concurrency
            results["served"] = run_mode(root, to_dict(load_run_config(served)), task)
            results["served"]["server_start_s"] = round(load_s, 1)
        finally:
            server.stop()
    print(json.dumps(results, indent=2))
    a, b = results["in-task"], results["served"]
    print(
        f"latents [{start}, {stop}): in-task {a['latents_per_min']} latents/min, "
        f"{a['prompt_tokens_per_s']} prompt tok/s; served {b['latents_per_min']} latents/min, "
        f"{b['prompt_tokens_per_s']} prompt tok/s (load avg {b['load_avg']:.1f})"
    )


if __name__ == "__main__":
    main()
