"""Per-latent and aggregate metrics of the scorers, with bootstrap confidence intervals.

Inputs per example: the true label (activating or not), the scorer's probability that
it is activating (NaN = the scorer produced nothing usable: counted in ``n_failed``,
never silently dropped, unlike delphi's always-zero ``failed_count``), and the
activation quantile (-1 for non-activating examples). Undefined values (precision with
no positive prediction, AUROC with one class) are None, which JSON keeps.

Point estimates come from scikit-learn; confidence intervals from
``scipy.stats.bootstrap``. A latent's interval resamples its activating and its
non-activating examples separately (a stratified bootstrap: every resample keeps both
classes, so balanced accuracy and AUROC stay defined). ``aggregate`` is what the gather
stage calls for a score over many latents.

Legend: ``n`` examples, ``R`` bootstrap resamples (a leading batch axis).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy.stats import bootstrap, rankdata

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95


def _none(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def auroc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Area under the ROC curve of ``probs`` for ``labels`` (ties count one half)."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels, dtype=bool)
    if labels.all() or not labels.any():
        return None
    return float(roc_auc_score(labels, np.asarray(probs, dtype=np.float64)))


def _auroc_stat(pos_R_n: np.ndarray, neg_R_m: np.ndarray, axis: int = -1) -> np.ndarray:
    """AUROC per resample from rank sums (Mann-Whitney U / (n m)); vectorised for bootstrap."""
    pos, neg = np.moveaxis(pos_R_n, axis, -1), np.moveaxis(neg_R_m, axis, -1)
    n, m = pos.shape[-1], neg.shape[-1]
    ranks = rankdata(np.concatenate([pos, neg], axis=-1), axis=-1)
    u = ranks[..., :n].sum(-1) - n * (n + 1) / 2
    return u / (n * m)


def _balanced_stat(threshold: float):  # noqa: ANN202 - a statistic for scipy.stats.bootstrap
    def stat(pos_R_n: np.ndarray, neg_R_m: np.ndarray, axis: int = -1) -> np.ndarray:
        tpr = np.mean(pos_R_n >= threshold, axis=axis)
        tnr = np.mean(neg_R_m < threshold, axis=axis)
        return (tpr + tnr) / 2

    return stat


def stratified_ci(
    pos: np.ndarray,
    neg: np.ndarray,
    statistic: Any,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Percentile bootstrap interval of ``statistic(pos, neg)``, each class resampled alone."""
    if n_resamples <= 0 or len(pos) < 2 or len(neg) < 2:
        return None, None
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # degenerate (constant) resamples warn; the CI is still valid
        res = bootstrap(
            (np.asarray(pos, np.float64), np.asarray(neg, np.float64)),
            statistic,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=True,
            rng=np.random.default_rng(seed),
        )
    return _none(res.confidence_interval.low), _none(res.confidence_interval.high)


def classification_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    quantiles: np.ndarray,
    threshold: float = 0.5,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Balanced accuracy, precision, recall, F1 (at p >= threshold), AUROC, per quantile.

    ``labels`` [n] bool, ``probs`` [n] float (NaN = failed), ``quantiles`` [n] int.
    ``*_ci`` are [low, high] bootstrap intervals (None when too few examples).
    """
    from sklearn.metrics import balanced_accuracy_score, precision_recall_fscore_support

    labels = np.asarray(labels, dtype=bool)
    probs = np.asarray(probs, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.int64)
    if not labels.shape == probs.shape == quantiles.shape:
        raise ValueError(
            f"labels {labels.shape}, probs {probs.shape}, quantiles {quantiles.shape} "
            "must have one entry per example"
        )
    ok = ~np.isnan(probs)
    y, p = labels[ok], probs[ok]
    pred = p >= threshold
    out: dict[str, Any] = {
        "balanced_accuracy": None,
        "precision": None,
        "recall": None,
        "f1": None,
        "auroc": auroc(y, p),
    }
    if len(y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # one class present: sklearn warns, we report None
            prec, rec, f1, _ = precision_recall_fscore_support(
                y, pred, average="binary", zero_division=np.nan
            )
            both = y.any() and not y.all()
            bal = balanced_accuracy_score(y, pred) if both else math.nan
        out.update(balanced_accuracy=_none(bal), precision=_none(prec), recall=_none(rec))
        out["f1"] = _none(f1)
    pos, neg = p[y], p[~y]
    kw = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    out["balanced_accuracy_ci"] = list(stratified_ci(pos, neg, _balanced_stat(threshold), **kw))
    out["auroc_ci"] = list(stratified_ci(pos, neg, _auroc_stat, **kw))
    out.update(
        n=int(len(y)),
        n_active=int(y.sum()),
        n_inactive=int((~y).sum()),
        n_failed=int(np.sum(~ok)),
        per_quantile=per_quantile(labels, probs, quantiles, threshold),
    )
    return out


def per_quantile(
    labels: np.ndarray, probs: np.ndarray, quantiles: np.ndarray, threshold: float = 0.5
) -> list[dict[str, Any]]:
    """Per quantile (strongest first, -1 = non-activating last): accuracy, mean p, failures.

    An activating quantile also gets its AUROC against all non-activating examples (how
    well the explanation separates that band from silence).
    """
    ok = ~np.isnan(probs)
    neg = probs[ok & ~labels]
    rows = []
    for k in sorted(set(quantiles.tolist()), key=lambda k: (k < 0, k)):
        here = quantiles == k
        good = here & ok
        p, y = probs[good], labels[good]
        row: dict[str, Any] = {
            "quantile": int(k),
            "n": int(good.sum()),
            "n_failed": int((here & ~ok).sum()),
            "accuracy": float(np.mean((p >= threshold) == y)) if len(p) else None,
            "mean_prob": float(np.mean(p)) if len(p) else None,
        }
        if k >= 0:
            row["auroc"] = auroc(
                np.r_[np.ones(len(p), bool), np.zeros(len(neg), bool)], np.r_[p, neg]
            )
        rows.append(row)
    return rows


def aggregate(
    scores: Sequence[float | None],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean of a score over latents with a bootstrap confidence interval.

    None/NaN entries (a latent whose score is undefined or failed) are counted in
    ``n_missing``, not averaged. Returns {mean, ci_low, ci_high, n, n_missing}; the
    interval is None with fewer than 2 values.
    """
    values = np.array([math.nan if s is None else float(s) for s in scores], dtype=np.float64)
    good = values[np.isfinite(values)]
    out: dict[str, Any] = {
        "mean": float(good.mean()) if len(good) else None,
        "ci_low": None,
        "ci_high": None,
        "n": int(len(good)),
        "n_missing": int(len(values) - len(good)),
    }
    if len(good) >= 2 and n_resamples > 0:
        if np.all(good == good[0]):  # no spread: every resample has the same mean
            out["ci_low"] = out["ci_high"] = float(good[0])
            return out
        res = bootstrap(
            (good,),
            np.mean,
            n_resamples=n_resamples,
            confidence_level=confidence,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
        out["ci_low"] = _none(res.confidence_interval.low)
        out["ci_high"] = _none(res.confidence_interval.high)
    return out
