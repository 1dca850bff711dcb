"""The latent record: what the interpret stage writes for every latent, typed and versioned.

One JSON line per latent in ``interpret/<id>/records/rNNNNN.jsonl``. Writers (the
interpret pipeline) build a :class:`LatentRecord`; readers (gather's table, alignment,
reports, exports) read one back with :meth:`LatentRecord.from_json`, or read the flat
columns gather derives from it, named by :func:`score_column` / :func:`parse_score_column`.

Schema 1 (every record written so far) has no ``schema_version`` key: a record without
one is schema 1, and :meth:`LatentRecord.to_json` writes a schema-1 record exactly as
the stage always has (same keys, same order, ``json.dumps`` defaults), so record files,
their sha256 in the interpret manifests and the sweep table do not change. Older shapes
still read: records without ``negatives``, ``baseline``, ``tokens.parts`` or the usage
counters (their defaults), hand-written records holding only ``latent``/``status``/
``explanation``, and flat ``<scorer>_<metric>`` keys of the first tables.

Outcomes (``status``, a closed set): ``ok`` (explained and scored), ``too_rare`` /
``skipped`` (not enough activating contexts, or none readable; the reason in
``error``), ``explain_failed`` (no usable explanation; every raw reply kept),
``error`` (a traceback, and the raw reply when the LLM sent an unusable one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

SCHEMA_VERSION = 1
"""The newest record schema this code writes and reads."""

Status = Literal["ok", "too_rare", "skipped", "explain_failed", "error"]
STATUSES: tuple[str, ...] = get_args(Status)
NOT_ATTEMPTED = ("too_rare", "skipped")
"""Statuses of latents the pipeline never sent to the LLM."""

PARTS = ("explain", "score", "control", "baseline")
"""The LLM work of one latent, each metered on its own (``tokens.parts``)."""

Metrics = dict[str, Any]
"""One scorer's metrics (scalars, confidence intervals, per-quantile rows, failures)."""
Scores = dict[str, Metrics]
"""scorer -> metrics."""

SOURCES = ("scores", "control", "baseline")
"""Which explanation a score belongs to: the latent's own, the random-explanation control
(another latent's explanation), or the single-token baseline."""

PRIMARY_METRICS = ("balanced_accuracy", "auroc", "correlation", "ev_correlation", "score")
"""Per scorer, the first of these it reports is the one plots and rankings use."""

_OLD_METRICS = ("balanced_accuracy", "auroc", "f1", "precision", "recall", "n")
_NEW_COL = re.compile(r"^(scores|control|baseline)\.(?:scores\.)?([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)$")
_OLD_COL = re.compile(r"^([a-z0-9]+(?:_[a-z0-9]+)*?)_(" + "|".join(_OLD_METRICS) + r")$")
_NOT_SCORERS = {"prompt", "completion", "n_active", "max", "wall", "dead", "ce"}


class RecordError(ValueError):
    """A record that is not a latent record of a schema this code reads."""


# ----------------------------------------------------------------------------- parts


@dataclass(frozen=True)
class PartTokens:
    """Tokens of one part of a latent's LLM work (explain, score, control, baseline)."""

    prompt: int = 0
    completion: int = 0
    prompt_computed: int = 0  # prompt tokens actually run through the model (not cached)

    def to_dict(self) -> dict[str, int]:
        return {"prompt": self.prompt, "completion": self.completion,
                "prompt_computed": self.prompt_computed}  # fmt: skip


@dataclass(frozen=True)
class Tokens:
    """The latent's LLM tokens in the attempt that wrote it (cache hits count as cached).

    ``usage_tokenizer`` / ``usage_missing``: calls whose server sent no token counts,
    counted with ``llm.tokenizer`` / recorded as 0 (:mod:`interp.llm.usage`).
    """

    prompt: int = 0
    completion: int = 0
    prompt_computed: int = 0
    usage_tokenizer: int = 0
    usage_missing: int = 0
    parts: dict[str, PartTokens] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "completion": self.completion,
            "prompt_computed": self.prompt_computed,
            "usage_tokenizer": self.usage_tokenizer,
            "usage_missing": self.usage_missing,
            "parts": {name: p.to_dict() for name, p in self.parts.items()},
        }

    def totals(self) -> dict[str, int]:
        """The counters without ``parts`` (what a ``TokenUsage`` adds up)."""
        return {k: v for k, v in self.to_dict().items() if k != "parts"}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Tokens:
        d = d or {}
        parts = {name: PartTokens(**p) for name, p in (d.get("parts") or {}).items()}
        counts = {k: int(d.get(k) or 0) for k in _TOKEN_COUNTS}
        return cls(**counts, parts=parts)


_TOKEN_COUNTS = ("prompt", "completion", "prompt_computed", "usage_tokenizer", "usage_missing")


@dataclass(frozen=True)
class Alternative:
    """Another explanation scored with the latent's examples: the random-explanation
    control (another latent's explanation, ``source_latent``) or the single-token baseline.
    ``explanation`` is None when there was none to score (``error`` says why)."""

    explanation: str | None = None
    scores: Scores = field(default_factory=dict)
    error: str | None = None
    source_latent: int | None = None
    explained_for_control: bool = False  # the source was explained only for this control

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "explanation": self.explanation,
            "scores": self.scores,
            "error": self.error,
        }
        if self.source_latent is not None:
            out["source_latent"] = self.source_latent
        if self.explained_for_control:
            out["explained_for_control"] = True
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Alternative | None:
        if d is None:
            return None
        source = d.get("source_latent")
        return cls(
            d.get("explanation"),
            dict(d.get("scores") or {}),
            d.get("error"),
            None if source is None else int(source),
            bool(d.get("explained_for_control", False)),
        )


# ----------------------------------------------------------------------------- record


@dataclass(frozen=True)
class LatentRecord:
    """One latent's outcome: its examples' stats, explanation, scores, controls and costs.

    ``negatives``: where its non-activating examples came from, per use
    ({"explain"|"score": {kind: count}}; None when no examples were built).
    ``retries``: the explainer's re-asks after unusable replies (transport retries are
    per task, in the interpret summary). ``error``: the reason, traceback or scorer
    failures behind a status other than ``ok``.
    """

    latent: int
    status: Status
    n_active_tokens: int = 0
    n_active_contexts: int = 0
    max_act: float = 0.0
    explanation: str | None = None
    raw_explanation: str | None = None
    negatives: dict[str, dict[str, int]] | None = None
    scores: Scores = field(default_factory=dict)
    control: Alternative | None = None
    baseline: Alternative | None = None
    tokens: Tokens = field(default_factory=Tokens)
    retries: int = 0
    wall_s: float = 0.0
    error: str | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise RecordError(
                f"latent {self.latent}: status {self.status!r} is not one of {list(STATUSES)}"
            )

    @property
    def attempted(self) -> bool:
        """Whether the latent went to the LLM (not too rare, not skipped)."""
        return self.status not in NOT_ATTEMPTED

    def source(self, kind: str) -> Scores:
        """Scores of ``kind`` (one of :data:`SOURCES`); {} when there are none."""
        if kind == "scores":
            return self.scores
        alt = self.control if kind == "control" else self.baseline
        return alt.scores if alt is not None else {}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record, keys in the order the stage always wrote them."""
        out: dict[str, Any] = {
            "latent": self.latent,
            "status": self.status,
            "n_active_tokens": self.n_active_tokens,
            "n_active_contexts": self.n_active_contexts,
            "max_act": self.max_act,
            "explanation": self.explanation,
            "raw_explanation": self.raw_explanation,
            "negatives": self.negatives,
            "scores": self.scores,
            "control": None if self.control is None else self.control.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "tokens": self.tokens.to_dict(),
            "retries": self.retries,
            "wall_s": self.wall_s,
            "error": self.error,
        }
        if self.schema_version != 1:  # schema 1 never wrote its version
            out["schema_version"] = self.schema_version
        return out

    def to_json(self) -> str:
        """One line of a record file (no newline)."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatentRecord:
        """A record of any schema this code reads (see the module docstring)."""
        version = d.get("schema_version", 1)
        if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
            raise RecordError(
                f"record schema_version={version!r} is newer than this code reads "
                f"({SCHEMA_VERSION}): update interp, or regather with the version that wrote it"
            )
        if "latent" not in d or "status" not in d:
            raise RecordError(f"a record needs 'latent' and 'status'; got keys {sorted(d)}")
        return cls(
            latent=int(d["latent"]),
            status=d["status"],
            n_active_tokens=int(d.get("n_active_tokens", 0)),
            n_active_contexts=int(d.get("n_active_contexts", 0)),
            max_act=d.get("max_act", 0.0),
            explanation=d.get("explanation"),
            raw_explanation=d.get("raw_explanation"),
            negatives=d.get("negatives"),
            scores=dict(d["scores"]) if d.get("scores") is not None else _flat_scores(d),
            control=Alternative.from_dict(d.get("control")),
            baseline=Alternative.from_dict(d.get("baseline")),
            tokens=Tokens.from_dict(d.get("tokens")),
            retries=int(d.get("retries", 0)),
            wall_s=d.get("wall_s", 0.0),
            error=d.get("error"),
            schema_version=version,
        )

    @classmethod
    def from_json(cls, line: str | bytes) -> LatentRecord:
        return cls.from_dict(json.loads(line))


def _flat_scores(d: Mapping[str, Any]) -> Scores:
    """Scores of a record without ``scores``, from flat ``<scorer>_<metric>`` keys."""
    out: Scores = {}
    for key, value in d.items():
        parsed = parse_score_column(key)
        if parsed is not None and parsed[0] == "scores":
            out.setdefault(parsed[1], {})[parsed[2]] = value
    return out


# ----------------------------------------------------------------------------- files


def read_records(path: Path) -> Iterator[LatentRecord]:
    """The records of one record file, in file order; errors name the file and line."""
    with open(path, "rb") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield LatentRecord.from_json(line)
            except (ValueError, TypeError) as err:  # JSONDecodeError and RecordError too
                raise RecordError(
                    f"{path}:{i}: not a latent record ({err}); delete the file and its "
                    "interpret manifest, then rerun the range"
                ) from err


def records_bytes(records: Sequence[LatentRecord]) -> bytes:
    """A record file's contents: one JSON line per record."""
    return "".join(r.to_json() + "\n" for r in records).encode()


# ----------------------------------------------------------------------------- columns


def score_column(source: str, scorer: str, metric: str) -> str:
    """The sweep table's column of one metric (``scores.detection.auroc``)."""
    return f"{source}.{scorer}.{metric}"


def parse_score_column(name: str) -> tuple[str, str, str] | None:
    """(source, scorer, metric) of a score column name, None for other columns.

    Reads today's ``<source>.<scorer>.<metric>`` (and ``<source>.scores.<scorer>.<metric>``)
    and the first tables' flat ``<scorer>_<metric>`` names.
    """
    m = _NEW_COL.match(name)
    if m:
        return m.group(1), m.group(2), m.group(3)
    m = _OLD_COL.match(name)
    if m and m.group(1) not in _NOT_SCORERS:
        return "scores", m.group(1), m.group(2)
    return None
