"""Spec of the surprisal scorer (:mod:`interp.score.surprisal`): the AUROC of the loss
reduction the explanation brings, read from the scorer LLM's log-probs."""

from __future__ import annotations

from interp.score.spec import ScorerSpec

SURPRISAL = ScorerSpec("surprisal", "interp.score.surprisal:score_surprisal", "auroc")
