"""Scorer metrics: hand-computed cases, agreement with scikit-learn/scipy, bootstrap CIs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from interp.score.metrics import _auroc_stat, aggregate, auroc, classification_metrics

pytestmark = pytest.mark.unit


def test_hand_computed_case() -> None:
    labels = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    probs = np.array([0.9, 0.6, 0.4, 0.7, 0.2, 0.1])
    m = classification_metrics(labels, probs, np.array([0, 1, 2, -1, -1, -1]))
    # at p >= 0.5: tp=2 fn=1 fp=1 tn=2
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    # positive beats negative in 3 + 2 + 2 of the 9 pairs
    assert m["auroc"] == pytest.approx(7 / 9)
    assert (m["n"], m["n_active"], m["n_inactive"], m["n_failed"]) == (6, 3, 3, 0)
    rows = {r["quantile"]: r for r in m["per_quantile"]}
    assert [r["quantile"] for r in m["per_quantile"]] == [0, 1, 2, -1]
    assert rows[2]["accuracy"] == 0.0 and rows[0]["auroc"] == 1.0
    assert rows[-1]["accuracy"] == pytest.approx(2 / 3) and "auroc" not in rows[-1]


def test_ties_count_one_half() -> None:
    assert auroc(np.array([True, False]), np.array([0.5, 0.5])) == 0.5


def test_agrees_with_sklearn_and_scipy() -> None:
    rng = np.random.default_rng(3)
    labels = rng.random(200) < 0.4
    probs = np.round(np.clip(0.25 * labels + rng.random(200) * 0.75, 0, 1), 2)  # with ties
    m = classification_metrics(labels, probs, np.where(labels, 0, -1), n_resamples=0)
    pred = probs >= 0.5
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(labels, pred))
    assert m["f1"] == pytest.approx(f1_score(labels, pred))
    assert m["auroc"] == pytest.approx(roc_auc_score(labels, probs))
    u = mannwhitneyu(probs[labels], probs[~labels]).statistic
    assert m["auroc"] == pytest.approx(u / (labels.sum() * (~labels).sum()))
    # the vectorised bootstrap statistic is the same AUROC
    assert _auroc_stat(probs[labels], probs[~labels]) == pytest.approx(m["auroc"])
    batch = _auroc_stat(np.stack([probs[labels]] * 3), np.stack([probs[~labels]] * 3))
    assert batch.shape == (3,) and np.allclose(batch, m["auroc"])


def test_failures_are_counted_not_dropped_and_undefined_is_none() -> None:
    labels = np.array([1, 1, 0, 0], dtype=bool)
    probs = np.array([0.9, math.nan, 0.1, math.nan])
    m = classification_metrics(labels, probs, np.array([0, 0, -1, -1]))
    assert m["n"] == 2 and m["n_failed"] == 2
    assert [r["n_failed"] for r in m["per_quantile"]] == [1, 1]
    only_pos = classification_metrics(np.ones(3, bool), np.array([0.9, 0.2, 0.8]), np.zeros(3))
    assert only_pos["auroc"] is None and only_pos["balanced_accuracy"] is None
    assert only_pos["recall"] == pytest.approx(2 / 3)
    none_yes = classification_metrics(labels, np.full(4, 0.1), np.array([0, 0, -1, -1]))
    assert none_yes["precision"] is None  # no positive prediction: undefined, not 0
    all_failed = classification_metrics(labels, np.full(4, math.nan), np.zeros(4))
    assert all_failed["n"] == 0 and all_failed["n_failed"] == 4 and all_failed["auroc"] is None


def _noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    return labels, np.clip(0.3 * labels + 0.7 * rng.random(2 * n), 0, 1)


def test_per_latent_ci_contains_estimate_and_narrows_with_n() -> None:
    widths = []
    for n in (15, 300):
        labels, probs = _noisy(n, seed=n)
        m = classification_metrics(labels, probs, np.where(labels, 0, -1))
        for key in ("balanced_accuracy", "auroc"):
            lo, hi = m[f"{key}_ci"]
            assert lo <= m[key] <= hi
        widths.append(m["auroc_ci"][1] - m["auroc_ci"][0])
    assert widths[1] < widths[0] / 2
    few = classification_metrics(np.array([True, False]), np.array([0.7, 0.2]), np.zeros(2))
    assert few["auroc_ci"] == [None, None]  # one example per class: no interval


def test_aggregate_ci_contains_mean_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    small, big = aggregate(rng.random(20).tolist()), aggregate(rng.random(2000).tolist())
    for a in (small, big):
        assert a["ci_low"] <= a["mean"] <= a["ci_high"]
    assert big["ci_high"] - big["ci_low"] < (small["ci_high"] - small["ci_low"]) / 4
    assert big["n"] == 2000 and big["n_missing"] == 0


def test_aggregate_edge_cases() -> None:
    a = aggregate([0.5, None, float("nan"), 0.7])
    assert a["n"] == 2 and a["n_missing"] == 2 and a["mean"] == pytest.approx(0.6)
    assert aggregate([0.8, 0.8, 0.8])["ci_low"] == 0.8 == aggregate([0.8, 0.8])["ci_high"]
    one = aggregate([0.3])
    assert one["mean"] == 0.3 and one["ci_low"] is None
    assert aggregate([])["mean"] is None


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one entry per example"):
        classification_metrics(np.ones(3, bool), np.ones(2), np.zeros(3))
