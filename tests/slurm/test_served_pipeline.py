"""The whole pipeline in served mode through the real scheduler, real stages only: the
user's command submits train -> collect -> compact -> a llama-cpp-python server job
(SmolLM2-135M-Instruct GGUF on loopback) -> the real interpret stage talking to it over
HTTP -> gather. Every latent is explained and scored through the served model, the
replica withdraws itself when the array is done, and no server process is left."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, all_done, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
SERVED = [
    "experiment=tiny",
    "cluster=local_slurm",
    "serve=llama_cpp",
    "llm=http",
    "llm.model=smollm2-135m-instruct",
    "llm.served_model=smollm2-135m-instruct",
    "llm.tokenizer=smollm2-135m-instruct",
    "llm.base_urls=[]",
    "name=served",
]


def test_served_tiny_sweep_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp", reason="bash launch/setup.sh builds llama-cpp-python")
    import pyarrow.parquet as pq

    cmd = [sys.executable, "launch/sweep.py", *SERVED, f"out_dir={tmp_path}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "serve-" in proc.stderr + proc.stdout, "no serve job was submitted"
    root = tmp_path / "served"
    wait_for(lambda: all_done(root), 1800, "the served sweep to finish", every=5)

    rows = pq.read_table(root / "gather" / "latents.parquet").to_pylist()
    ok = [r for r in rows if r["status"] == "ok"]
    assert ok, {r["status"] for r in rows}
    for r in ok:
        assert r["explanation"] and r["prompt_tokens"] > 0
        assert 0.0 <= r["scores.detection.auroc"] <= 1.0
    logs = "".join(p.read_text() for p in (root / "slurm" / "logs").glob("interpret-*/*.err"))
    assert "live replica(s): ['http://127.0.0.1:" in logs
    assert not list(root.glob("serve/*/replicas/*.json")), "a replica did not withdraw"
    left = subprocess.run(["pgrep", "-f", "llama_cpp.server"], capture_output=True, text=True)
    assert left.returncode != 0, f"a server is still running: {left.stdout}"
    assert (root / "gather" / "report" / "index.html").is_file()
