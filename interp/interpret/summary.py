"""A range's interpret manifest summary, from its records and its LLM client's counters."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from interp.llm import TokenUsage
from interp.records import LatentRecord


def client_stats(client: Any) -> dict[str, Any]:
    """Counters of the client chain: response-cache hits/misses and the backend's
    ``stats`` (retries, failovers, timeouts, ... of the HTTP backend)."""
    out: dict[str, Any] = {}
    for _ in range(8):  # wrappers expose the wrapped client as ``inner``
        if client is None:
            break
        for name in ("hits", "misses"):
            if isinstance(getattr(client, name, None), int):
                out[f"cache_{name}"] = getattr(client, name)
        stats = getattr(client, "stats", None)
        if isinstance(stats, dict):
            out.update({k: v for k, v in stats.items() if isinstance(v, int | float)})
        client = getattr(client, "inner", None)
    return out


def check_not_all_errors(records: list[LatentRecord], index: int) -> None:
    """Every attempted latent raising means a broken setup: fail, so a rerun redoes it."""
    tried = [r for r in records if r.attempted]
    if len(tried) >= 2 and all(r.status == "error" for r in tried):
        raise RuntimeError(
            f"interpret range {index}: all {len(tried)} latents failed; first error:\n"
            + (tried[0].error or "")
        )


def status_counts(records: list[LatentRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status] = counts.get(r.status, 0) + 1
    return counts


def summarize(
    records: list[LatentRecord], wall: float, llm_stats: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The manifest's summary: counts by outcome, tokens, real vs control score means."""
    total = TokenUsage()
    for r in records:
        total.add(TokenUsage(**r.tokens.totals()))
    tokens = total.as_dict()
    tokens.pop("calls")
    counts = status_counts(records)
    return {
        "n_latents": len(records),
        "n_ok": counts.get("ok", 0),
        "n_scored": sum(bool(r.scores) for r in records),
        "n_failed": counts.get("explain_failed", 0) + counts.get("error", 0),
        "n_retried": sum(r.retries > 0 for r in records),
        "n_skipped": counts.get("too_rare", 0) + counts.get("skipped", 0),
        "n_control_failed": sum(bool(r.control and r.control.error) for r in records),
        "status_counts": counts,
        "scorer_failed_examples": scorer_failures(records),
        "scores": score_means(records),
        "tokens": tokens,
        "llm": llm_stats or {},
        "wall_s": round(wall, 3),
    }


def scorer_failures(records: list[LatentRecord]) -> dict[str, dict[str, int]]:
    """scorer -> {real, control}: examples a scorer got no usable answer for (``n_failed``:
    unparsed or wrong-length answer lists, missing log-probs), summed over the range."""
    out: dict[str, dict[str, int]] = {}
    for r in records:
        for kind, scores in (("real", r.scores), ("control", r.source("control"))):
            for scorer, metrics in scores.items():
                n = metrics.get("n_failed")
                if isinstance(n, int):
                    entry = out.setdefault(scorer, {"real": 0, "control": 0})
                    entry[kind] += n
    return out


def score_means(records: list[LatentRecord]) -> dict[str, dict[str, dict[str, Any]]]:
    """scorer -> metric -> {real, control[, baseline]: mean, n_*: count} over the range.

    Only scalar metrics; an undefined value (None/NaN) is left out of its mean. The
    real mean is over ``ok`` latents, the control's over those with a control score.
    """
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    for r in records:
        for kind, source in (("real", "scores"), ("control", "control"), ("baseline", "baseline")):
            if kind == "real" and r.status != "ok":
                continue
            for scorer, metrics in r.source(source).items():
                for metric, v in metrics.items():
                    if isinstance(v, bool) or not isinstance(v, int | float):
                        continue
                    if metric == "n" or metric.startswith("n_") or math.isnan(v):
                        continue
                    values.setdefault(scorer, {}).setdefault(metric, {}).setdefault(
                        kind, []
                    ).append(float(v))
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for scorer, metrics in values.items():
        for metric, by_kind in metrics.items():
            entry: dict[str, Any] = {}
            for kind, vs in by_kind.items():
                entry[kind] = float(np.mean(vs))
                entry[f"n_{kind}"] = len(vs)
            out.setdefault(scorer, {})[metric] = entry
    return out


def headline(scores: dict[str, dict[str, dict[str, Any]]]) -> str:
    """One log line: each scorer's headline metric, real vs control."""
    parts = []
    for scorer, metrics in scores.items():
        names = ("auroc", "balanced_accuracy", "correlation", "score", "accuracy")
        metric = next((m for m in names if m in metrics), None)
        if metric is None:
            continue
        e = metrics[metric]
        real, ctrl = e.get("real"), e.get("control")
        parts.append(
            f"{scorer} {metric} {real if real is None else round(real, 3)} vs "
            f"{ctrl if ctrl is None else round(ctrl, 3)}"
        )
    return ", ".join(parts) or "no scores"
