"""The device half of bench/gpu_check.sh: provision the tiny model, run the GPU tests,
print one table (check, result, seconds, figures each test recorded).

Figures come from ``record_property`` in the tests (for example ``max_abs_diff``, the
largest |CUDA - CPU| difference a parity test saw), read back from pytest's JUnit XML.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = [
    "tests/unit/test_kernels.py",  # Triton compiled (no TRITON_INTERPRET on a GPU)
    "tests/unit/test_sae_archs.py::test_cuda_matches_cpu_and_trains",
    "tests/gpu",
]


def provision_tiny_model() -> None:
    """tiny-random-llama in INTERP_CACHE from the carried config + tokenizer (seeded init)."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    src = Path(os.environ["INTERP_GPU_TOKENIZER"])
    out = Path(os.environ["INTERP_CACHE"]) / "models" / "tiny-random-llama"
    if (out / "model.safetensors").exists():
        return
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    torch.manual_seed(0)
    LlamaForCausalLM(AutoConfig.from_pretrained(src)).save_pretrained(tmp)
    AutoTokenizer.from_pretrained(src).save_pretrained(tmp)
    tmp.rename(out)


def device_line() -> str:
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device: the GPU checks will skip"
    p = torch.cuda.get_device_properties(0)
    return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"


def table(junit: Path) -> tuple[list[list[str]], int]:
    rows, failed = [], 0
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{Path(case.get('file') or case.get('classname', '')).stem}::{case.get('name')}"
        result = "pass"
        if case.find("skipped") is not None:
            result = "skip: " + (case.find("skipped").get("message") or "")[:60]
        if case.find("failure") is not None or case.find("error") is not None:
            result, failed = "FAIL", failed + 1
        props = {p.get("name"): p.get("value") for p in case.iter("property")}
        figs = ", ".join(f"{k}={v}" for k, v in props.items())
        rows.append([name, result, f"{float(case.get('time', 0)):.1f}", figs])
    return rows, failed


def main() -> int:
    start = time.time()
    provision_tiny_model()
    junit = Path("/tmp/interp_gpu_junit.xml")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
           "addopts=", "--junitxml", str(junit), "-o", "junit_family=xunit1", *TESTS]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, check=False)
    rows, failed = table(junit)
    print(f"\n## GPU paths: {time.strftime('%Y-%m-%d')}, {device_line()}")
    print("| check | result | s | figures |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print(f"\n{len(rows)} checks, {failed} failed, {time.time() - start:.0f} s in all")
    out = os.environ.get("OUT")
    if out:
        Path(out, "gpu_check.json").write_text(json.dumps({"rows": rows, "failed": failed}))
    return 1 if failed or proc.returncode not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
