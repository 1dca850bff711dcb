"""The house rules: interp/ imports no hydra/submitit/launch/slurm; ruff is clean."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {"hydra", "submitit", "launch", "slurm", "omegaconf"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_library_never_imports_the_cluster_edge() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(imported_modules(p) & FORBIDDEN)
        for p in (ROOT / "interp").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"interp/ must not import {sorted(FORBIDDEN)}: {offenders}"


def stage_names_in(path: Path) -> set[str]:
    """String literals in ``path`` that are a registered stage's name."""
    from interp.stages.registry import names

    tree = ast.parse(path.read_text(), filename=str(path))
    found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    return found & set(names())


def test_the_cluster_edge_names_no_stage() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(stage_names_in(p)) for p in (ROOT / "slurm").rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"slurm/ must read stages from the registry, not name them: {offenders}"


def test_the_stage_name_check_catches_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('if job.stage == "gather":\n    pass\n')
    assert stage_names_in(bad) == {"gather"}


def test_layering_check_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom submitit import AutoExecutor\nimport hydra.utils\n")
    assert imported_modules(bad) & FORBIDDEN == {"submitit", "hydra"}


def test_importing_interp_has_no_side_effects() -> None:
    code = (
        "import sys, interp, interp.config, interp.runs, interp.plan, interp.stages;"
        "heavy = {'torch', 'transformers', 'zarr', 'hydra', 'submitit'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"light modules pulled in heavy imports: {out.stdout}"


@pytest.mark.skipif(shutil.which("ruff") is None and not (ROOT / ".venv/bin/ruff").exists(),
                    reason="ruff not installed")  # fmt: skip
def test_ruff_lint_and_format_are_clean() -> None:
    ruff = str(ROOT / ".venv/bin/ruff") if (ROOT / ".venv/bin/ruff").exists() else "ruff"
    lint = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
