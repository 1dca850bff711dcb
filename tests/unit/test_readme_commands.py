"""Every ``launch/*.py`` command that README.md shows works as written.

Commands are the lines of README.md's fenced code blocks and its inline code spans that
run ``python launch/<script>.py`` (or ``.venv/bin/python ...``, also after ``&&``), read
as the shell would: ``\\`` continues a line, ``#`` starts a comment, quotes group.

Placeholders ``<...>``: ``cluster=<site>`` stands for ``conf/cluster/example_site.yaml``,
the profile the README says to copy; any other placeholder in a sweep.py command fails
(give it a rule here). In the other scripts a placeholder is one argument (a path).

- ``sweep.py``: its flags must be Hydra's or ours; the overrides are composed in-process
  over the schema (what ``--cfg job`` prints) and validated as ``launch/sweep.py`` does:
  ``load_run_config``, the cluster profile and served mode; with ``-m`` every point of
  the sweep, and the points must not collide on a run id.
- ``status.py``, ``rerun.py``, ``compare.py``: the arguments parse (nothing runs) and
  ``--help`` exits 0.
- ``prepare.py``: every name is a bundled model.
"""

from __future__ import annotations

import argparse
import itertools
import re
import runpy
import shlex
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from conf_compose import CONF, Composer, composer
from hydra.core.override_parser.overrides_parser import OverridesParser

from interp.config import RunConfig
from interp.pretrained_point import drop_repeats, resolve_points
from slurm.schema import resolve
from slurm.submit import check_cluster, check_collisions, check_serving

pytestmark = pytest.mark.unit

ROOT = CONF.parent
PLACEHOLDER = "__placeholder__"
PLACEHOLDER_RULES = {f"cluster={PLACEHOLDER}": "cluster=example_site"}
PYTHONS = {"python", "python3", ".venv/bin/python"}
SWEEP_FLAGS = {"-m", "--multirun", "--help", "-h", "--help-fields", "--resolve", "--info"}
CFG_VALUES = {"job", "hydra", "all"}
ARGPARSE_SCRIPTS = {"launch/status.py", "launch/rerun.py", "launch/compare.py", "launch/verify.py"}


def readme_lines(text: str) -> Iterator[str]:
    """Lines of the fenced code blocks (continuations joined), then the inline spans."""
    fence = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.S | re.M)
    for block in fence.findall(text):
        yield from block.replace("\\\n", " ").splitlines()
    yield from (" ".join(span.split()) for span in re.findall(r"`([^`]+)`", fence.sub("", text)))


def launch_commands(line: str) -> Iterator[list[str]]:
    """``[script, *args]`` of each ``python launch/*.py`` command of a shell line."""
    if not re.search(r"python3?\s+launch/", line):
        return  # prose, Python or a file tree: not a shell line to split
    tokens = shlex.split(re.sub(r"<[^<>]*>", PLACEHOLDER, line), comments=True)
    for _, group in itertools.groupby(tokens, key=lambda t: t == "&&"):
        cmd = list(group)
        if len(cmd) > 1 and cmd[0] in PYTHONS and re.fullmatch(r"launch/\w+\.py", cmd[1]):
            yield cmd[1:]


def readme_commands() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    commands = [cmd for line in readme_lines(text) for cmd in launch_commands(line)]
    return [cmd for i, cmd in enumerate(commands) if cmd not in commands[:i]]


COMMANDS = readme_commands()


def test_the_readme_commands_are_found() -> None:
    scripts = {cmd[0] for cmd in COMMANDS}
    assert {"launch/sweep.py", "launch/status.py", "launch/rerun.py"} <= scripts, scripts
    assert "launch/compare.py" in scripts and len(COMMANDS) >= 15, COMMANDS
    assert ["launch/sweep.py", "-m", "layer=9,15", "sae.k=16,32"] in COMMANDS
    served = next(c for c in COMMANDS if "serve=llama_cpp" in c)  # joined over its `\`
    assert served[-1] == "interpret.max_concurrent_latents=4", served


@pytest.fixture(scope="module")
def compose() -> Iterator[Composer]:
    with composer() as fn:
        yield fn


@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_readme_command_works(cmd: list[str], compose: Composer) -> None:
    script, args = cmd[0], cmd[1:]
    if script == "launch/sweep.py":
        check_sweep(args, compose)
    elif script in ARGPARSE_SCRIPTS:
        assert isinstance(parse_launch_args(script, args), argparse.Namespace)
        assert parse_launch_args(script, ["--help"]) == 0
    elif script == "launch/prepare.py":
        check_prepare(args)
    else:
        pytest.fail(f"README runs {script}: no rule to check it in {__file__}")


def check_sweep(args: list[str], compose: Composer) -> None:
    multirun, overrides = sweep_overrides(args)
    points = sweep_points(overrides) if multirun else [overrides]
    cfgs = []
    for point in points:
        cfg, cluster = resolve(compose(point))
        check_cluster(cluster)
        check_serving([cfg], cluster)
        cfgs.append(cfg)
    assert all(isinstance(c, RunConfig) for c in cfgs)
    labels = [" ".join(p) for p in points]
    cfgs, labels = drop_repeats(cfgs, labels)  # as run_points: trained points ignore sae.path
    cfgs, unreadable = resolve_points(cfgs)  # pretrained points: their content hash
    assert not unreadable, unreadable
    check_collisions(cfgs, labels)


def sweep_overrides(args: list[str]) -> tuple[bool, list[str]]:
    """(is a multirun, the overrides), refusing a flag sweep.py does not know."""
    multirun, overrides = False, []
    it = iter(args)
    for arg in it:
        if arg in ("--cfg", "-c"):
            assert next(it, None) in CFG_VALUES, f"--cfg takes one of {CFG_VALUES}"
        elif arg.startswith("-"):
            assert arg in SWEEP_FLAGS, f"launch/sweep.py has no flag {arg}"
            multirun |= arg in ("-m", "--multirun")
        else:
            overrides.append(PLACEHOLDER_RULES.get(arg, arg))
    unresolved = [o for o in overrides if PLACEHOLDER in o]
    assert not unresolved, f"no rule for the placeholder in {unresolved}: add one"
    return multirun, overrides


def sweep_points(overrides: list[str]) -> list[list[str]]:
    """Every point of a multirun: the product of each override's comma-separated values."""
    choices = []
    for o in OverridesParser.create().parse_overrides(overrides):
        if o.is_sweep_override():
            choices.append([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()])
        else:
            choices.append([o.input_line])
    return [list(point) for point in itertools.product(*choices)]


class _Parsed(Exception):
    """Raised by the patched ``parse_args`` so that a launch script stops once parsed."""


def parse_launch_args(script: str, args: list[str]) -> Any:
    """The parsed Namespace of ``script args``, or the exit code argparse stopped with."""
    original = argparse.ArgumentParser.parse_args

    def parse_only(self: argparse.ArgumentParser, *a: Any, **kw: Any) -> Any:
        raise _Parsed(original(self, *a, **kw))

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(argparse.ArgumentParser, "parse_args", parse_only)
        mp.setattr(sys, "argv", [script, *args])
        try:
            runpy.run_path(str(ROOT / script), run_name="__main__")
        except _Parsed as parsed:
            return parsed.args[0]
        except SystemExit as exit_:
            return exit_.code
    pytest.fail(f"{script} ran without parsing arguments")


def check_prepare(names: list[str]) -> None:
    from interp.models.provision import ALIASES, BUNDLED, TINY_RANDOM

    known = {*BUNDLED, *ALIASES, TINY_RANDOM}
    assert names and set(names) <= known, f"launch/prepare.py knows {sorted(known)}"


def test_sweep_points_expand_every_comma_value() -> None:
    points = sweep_points(["sae=topk,relu", "layer=6,12", "llm.base_urls=[]"])
    assert len(points) == 4 and ["sae=relu", "layer=12", "llm.base_urls=[]"] in points


def test_a_wrong_readme_command_fails(compose: Composer) -> None:
    with pytest.raises(Exception, match="sae.kk"):
        check_sweep(["sae.kk=3"], compose)
    with pytest.raises(ValueError, match="sae.k="):
        check_sweep(["-m", "sae.k=0,16"], compose)
    with pytest.raises(AssertionError, match="no flag"):
        check_sweep(["--cfgjob"], compose)
    assert parse_launch_args("launch/status.py", ["runs/x", "--watch", "soon"]) == 2
