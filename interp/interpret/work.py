"""One latent through the interpret passes: its examples, its draft record, its meters.

A :class:`Draft` is the record while the passes fill it (status ``pending`` until
explained or failed); :meth:`LatentWork.finish` turns it into the frozen
:class:`~interp.records.LatentRecord` with the latent's token counts and wall time.
Failures are recorded here too: a traceback (and the raw reply an LLM error carries)
on the draft, never a dropped latent. A broken setup (:data:`FATAL`) is not recorded:
it fails the task.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from interp.latents import CooccurrenceIndex, SimilarPool, build_examples
from interp.latents.config import ExamplesConfig
from interp.latents.examples import LatentExamples
from interp.llm import LLMClient, MeteredClient, TokenUsage
from interp.llm.http import LLMUnavailableError
from interp.models.provision import ModelNotFoundError
from interp.records import PARTS, Alternative, LatentRecord, PartTokens, Scores, Tokens

# A broken setup, not a property of one latent: fail the task instead of recording it.
# LLMUnavailableError: no replica answers, or every retry met a timeout, 429 or 5xx; the
# range stops uncommitted (the response cache keeps the work) so `rerun` redoes it.
FATAL = (ModelNotFoundError, MemoryError, ImportError, LLMUnavailableError)
RAW_LIMIT = 2000  # characters of an unusable LLM response kept on the record


@dataclass
class Draft:
    """A :class:`LatentRecord` being filled; ``status`` is ``pending`` until decided."""

    latent: int
    status: str = "pending"
    n_active_tokens: int = 0
    n_active_contexts: int = 0
    max_act: float = 0.0
    explanation: str | None = None
    raw_explanation: str | None = None
    negatives: dict[str, dict[str, int]] | None = None
    scores: Scores = field(default_factory=dict)
    control: Alternative | None = None
    baseline: Alternative | None = None
    retries: int = 0
    error: str | None = None


@dataclass
class LatentWork:
    """One latent through both passes: its examples, draft record, meters and wall time."""

    latent: int
    examples: LatentExamples | None
    record: Draft
    baseline: str | None = None  # single-token explanation to score, if enabled
    meters: dict[str, MeteredClient] = field(default_factory=dict)
    wall: float = 0.0

    def meter(self, part: str, client: LLMClient) -> MeteredClient:
        if part not in self.meters:
            self.meters[part] = MeteredClient(client)
        return self.meters[part]

    def finish(self) -> LatentRecord:
        """The final record: token counts (total and per part), wall time, no 'pending'."""
        total = TokenUsage()
        parts = {}
        for part in PARTS:
            if part in self.meters:
                u = self.meters[part].usage
                total.add(u)
                parts[part] = PartTokens(u.prompt, u.completion, u.prompt_computed)
        counts = {k: v for k, v in total.as_dict().items() if k != "calls"}
        assert self.record.status != "pending", f"latent {self.latent} left pending"
        draft = {f.name: getattr(self.record, f.name) for f in fields(Draft)}
        return LatentRecord(
            **draft, tokens=Tokens(**counts, parts=parts), wall_s=round(self.wall, 3)
        )


def prepare(
    ecfg: ExamplesConfig,
    ctx_len: int,
    latent: int,
    i: int,
    *,
    csr: Any,
    token_ids: np.ndarray,
    negatives: tuple[CooccurrenceIndex | None, SimilarPool | None],
) -> LatentWork:
    """The latent's examples; too rare or unreadable latents get their final record here."""
    lo, hi = int(csr.offsets[i]), int(csr.offsets[i + 1])
    tok, val = csr.tok[lo:hi], csr.val[lo:hi]
    record = Draft(latent, n_active_tokens=int(len(tok)))
    record.max_act = float(np.max(val)) if len(val) else 0.0
    try:
        examples = build_examples(
            tok, val, token_ids, ctx_len, ecfg, latent,
            cooccurrence=negatives[0], similar=negatives[1],
        )  # fmt: skip
        record.negatives = examples.negative_kinds()
    except FATAL:
        raise
    except Exception as e:  # recorded, never dropped
        fail(record, e)
        return LatentWork(latent, None, record)
    record.n_active_contexts = examples.n_active_contexts
    if examples.status != "ok":
        record.status = examples.status
        record.error = getattr(examples, "reason", "") or (
            f"{examples.n_active_contexts} activating contexts < "
            f"interpret.examples.min_examples={ecfg.min_examples}"
        )
        if not len(tok):  # a selection can name latents that never fire
            record.error = f"dead: never fires in the collected tokens ({record.error})"
    return LatentWork(latent, examples, record)


# --------------------------------------------------------------------------- failures
def raw_text(e: BaseException) -> str | None:
    """The unusable response an LLM error carries (``raw``/``raw_text``), if any."""
    for attr in ("raw", "raw_text", "body"):
        value = getattr(e, attr, None)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str) and value:
            return value[:RAW_LIMIT]
    return None


def fail(record: Draft, e: BaseException, into: str | None = None) -> None:
    """Mark the record as an error with the traceback; the raw response also ``into``."""
    record.status = "error"
    record.error = error_summary(e)
    raw = raw_text(e)
    if raw is not None and into is not None:
        prev = getattr(record, into)
        setattr(record, into, raw if not prev else f"{prev}\n---\n{raw}")


def scorer_errors(errors: dict[str, BaseException]) -> str:
    return "\n".join(f"scorer {n} failed: {error_summary(e, 1500)}" for n, e in errors.items())


def error_summary(e: BaseException, limit: int = 4000) -> str:
    text = "".join(traceback.format_exception(e))
    raw = raw_text(e)
    if raw is not None and raw not in text:
        text += f"raw response: {raw}\n"
    return text if len(text) <= limit else "...\n" + text[-limit:]
