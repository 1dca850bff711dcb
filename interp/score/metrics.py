"""Per-latent classification metrics of a scorer's predictions.

Inputs per example: the true label (activating or not), the scorer's probability that
it is activating (NaN = the scorer produced nothing usable; counted in ``n_failed``,
never silently dropped, unlike delphi's always-zero ``failed_count``), and the
activation quantile (-1 for non-activating examples). Undefined values (e.g. precision
with no positive predictions) are None, which JSON keeps.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import mannwhitneyu


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den else None


def auroc(labels: np.ndarray, probs: np.ndarray) -> float | None:
    """Area under the ROC curve = Mann-Whitney U / (n1 * n0), ties counting one half."""
    pos, neg = probs[labels], probs[~labels]
    if not len(pos) or not len(neg):
        return None
    u = mannwhitneyu(pos, neg, alternative="two-sided", method="asymptotic").statistic
    return float(u / (len(pos) * len(neg)))


def classification_metrics(
    labels: np.ndarray, probs: np.ndarray, quantiles: np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """Balanced accuracy, precision, recall, F1 (at p >= threshold), AUROC, per quantile."""
    labels = np.asarray(labels, dtype=bool)
    probs = np.asarray(probs, dtype=np.float64)
    quantiles = np.asarray(quantiles, dtype=np.int64)
    ok = ~np.isnan(probs)
    y, p, q = labels[ok], probs[ok], quantiles[ok]
    pred = p >= threshold
    tp, fp = int(np.sum(pred & y)), int(np.sum(pred & ~y))
    fn, tn = int(np.sum(~pred & y)), int(np.sum(~pred & ~y))
    recall, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    balanced = None if recall is None or specificity is None else (recall + specificity) / 2
    return {
        "balanced_accuracy": balanced,
        "precision": _ratio(tp, tp + fp),
        "recall": recall,
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "auroc": auroc(y, p),
        "n": int(len(y)),
        "n_failed": int(np.sum(~ok)),
        "per_quantile": per_quantile_accuracy(y, pred, q),
    }


def per_quantile_accuracy(
    labels: np.ndarray, pred: np.ndarray, quantiles: np.ndarray
) -> list[dict[str, Any]]:
    """Accuracy within each quantile (-1 = non-activating), strongest quantile first."""
    keys = sorted(set(quantiles.tolist()), key=lambda k: (k < 0, k))
    return [
        {
            "quantile": k,
            "n": int(np.sum(quantiles == k)),
            "accuracy": float(np.mean(pred[quantiles == k] == labels[quantiles == k])),
        }
        for k in keys
    ]
