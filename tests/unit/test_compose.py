"""Config sections composed from registered parts (interp.compose)."""

from __future__ import annotations

import dataclasses
import pickle
import sys
from dataclasses import dataclass, field
from typing import Literal

import pytest

from interp.compose import Part, compose_section
from interp.typed import build, id_dict, to_dict

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Common:
    """Common fields."""

    names: tuple[str, ...] = ("a",)

    def __post_init__(self) -> None:
        if not self.names:
            raise ValueError("section.names is empty")


@dataclass(frozen=True)
class Alpha:
    examples: int = field(default=4, metadata={"doc": "examples", "id": "when_set"})
    source: Literal["x", "y"] = "x"

    def __post_init__(self) -> None:
        if self.examples < 1:
            raise ValueError(f"section.alpha_examples={self.examples} must be >= 1")


@dataclass(frozen=True)
class Beta:
    k: int = 32


@dataclass(frozen=True)
class Gamma:
    k: int = 32
    rate: float = 0.5


@dataclass(frozen=True)
class Clash:
    k: int = 16


Section = compose_section(
    "Section", __name__, Common, [Part(Alpha, "alpha"), Part(Beta), Part(Gamma)]
)


def test_fields_are_flat_prefixed_and_merged() -> None:
    names = [f.name for f in dataclasses.fields(Section)]
    assert names == ["names", "alpha_examples", "alpha_source", "k", "rate"]
    s = build(Section, {"alpha_examples": 6, "k": 8}, "section")
    assert s.part(Alpha) == Alpha(examples=6, source="x")
    assert s.part(Beta) == Beta(k=8) and s.part(Gamma) == Gamma(k=8, rate=0.5)
    assert to_dict(s) == {
        "names": ["a"],
        "alpha_examples": 6,
        "alpha_source": "x",
        "k": 8,
        "rate": 0.5,
    }
    # metadata travels: a when_set field at its default stays out of the id
    assert "alpha_examples" not in id_dict(Section())


def test_validation_of_common_and_parts_runs_at_build() -> None:
    with pytest.raises(ValueError, match="section.alpha_examples=0"):
        build(Section, {"alpha_examples": 0}, "section")
    with pytest.raises(ValueError, match="section.names is empty"):
        Section(names=())
    with pytest.raises(ValueError, match="alpha_source"):
        build(Section, {"alpha_source": "z"}, "section")


def test_disagreeing_parts_are_refused() -> None:
    with pytest.raises(TypeError, match="k is declared by Beta and Clash"):
        compose_section("Bad", __name__, Common, [Part(Beta), Part(Clash)])


def test_unregistered_part_gets_its_defaults_and_the_section_pickles() -> None:
    @dataclass(frozen=True)
    class Plugin:
        depth: int = 3

    s = Section(k=4)
    assert s.part(Plugin) == Plugin()
    assert pickle.loads(pickle.dumps(s)) == s
    assert sys.modules[__name__].Section is Section
