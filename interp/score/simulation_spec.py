"""Spec of the simulation scorer (:mod:`interp.score.simulation`): the expensive
reference every other scorer is correlated against in the report (the paper's Table 1)."""

from __future__ import annotations

from interp.score.spec import ScorerSpec

SIMULATION = ScorerSpec(
    "simulation", "interp.score.simulation:score_simulation", "correlation", reference=True
)
