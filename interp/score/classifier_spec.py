"""Specs of the classifier scorers (:mod:`interp.score.classifier`): detection, fuzzing
and active fuzzing. They read the common ``scorer.examples_per_prompt`` and
``scorer.batch_read``, keep delphi-compatible ``per_quantile`` counts and are exported
under delphi's folder names (``fuzz`` for fuzzing whatever its fuzz_type)."""

from __future__ import annotations

from interp.score.spec import ScorerSpec

MODULE = "interp.score.classifier"

DETECTION = ScorerSpec(
    "detection", f"{MODULE}:score_detection", "balanced_accuracy", delphi="detection"
)
FUZZING = ScorerSpec("fuzzing", f"{MODULE}:score_fuzzing", "balanced_accuracy", delphi="fuzz")
FUZZING_ACTIVE = ScorerSpec(
    "fuzzing_active", f"{MODULE}:score_fuzzing_active", "balanced_accuracy", delphi="fuzz_active"
)
