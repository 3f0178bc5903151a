"""Model-quality statistics against scikit-learn, hand-computed cases and CBPE behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from exporter.domain.metrics import METRICS
from exporter.stats.performance import (
    classification_metrics,
    degradation,
    estimated_metrics,
    fit_calibrator,
    positive_ratio,
    realized_metrics,
    revenue_at_risk,
)


def test_realized_equals_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = np.clip(0.3 * y + rng.uniform(0, 0.7, 500), 0, 1)
    result = realized_metrics(y, s, threshold=0.5)
    pred = (s >= 0.5).astype(int)
    assert result.n_rows == 500 and result.reason is None
    assert result.values["accuracy"] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert result.values["precision"] == pytest.approx(skm.precision_score(y, pred), abs=1e-15)
    assert result.values["recall"] == pytest.approx(skm.recall_score(y, pred), abs=1e-15)
    assert result.values["f1"] == pytest.approx(skm.f1_score(y, pred), abs=1e-15)
    assert result.values["roc_auc"] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-15)


def test_realized_by_hand() -> None:
    # threshold 0.5: predictions 1, 1, 0, 0, 1 against labels 1, 0, 0, 1, 1
    y = np.array([1, 0, 0, 1, 1])
    s = np.array([0.9, 0.6, 0.2, 0.4, 0.5])
    v = realized_metrics(y, s, threshold=0.5).values
    # TP=2 (0.9, 0.5), FP=1 (0.6), TN=1 (0.2), FN=1 (0.4)
    assert v["accuracy"] == pytest.approx(3 / 5)
    assert v["precision"] == pytest.approx(2 / 3)
    assert v["recall"] == pytest.approx(2 / 3)
    assert v["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))
    # positives {0.9, 0.4, 0.5} vs negatives {0.6, 0.2}: pairs won 1+1, 0+1, 0+1 = 4 of 6
    assert v["roc_auc"] == pytest.approx(4 / 6)


def test_realized_edge_cases() -> None:
    empty = realized_metrics(np.array([]), np.array([]), 0.5)
    assert empty.values == {} and empty.n_rows == 0 and "no labelled" in (empty.reason or "")

    few = realized_metrics(np.array([1, 0]), np.array([0.7, 0.1]), 0.5, min_rows=10)
    assert few.values == {} and few.n_rows == 2 and "fewer than the minimum 10" in few.reason

    one_class = realized_metrics(np.array([0, 0, 0]), np.array([0.7, 0.1, 0.2]), 0.5)
    assert "roc_auc" not in one_class.values and "one class" in one_class.reason
    assert "recall" not in one_class.values  # no actual positive
    assert one_class.values["accuracy"] == pytest.approx(2 / 3)
    assert one_class.values["precision"] == 0.0

    nan_rows = realized_metrics(np.array([1, np.nan, 0]), np.array([0.9, 0.8, np.nan]), 0.5)
    assert nan_rows.n_rows == 1


@pytest.mark.parametrize(
    ("labels", "scores", "absent"),
    [
        # one class only: ROC AUC is undefined (every row churned)
        ([1, 1, 1, 1], [0.9, 0.2, 0.6, 0.4], {"roc_auc"}),
        # nothing predicted positive: precision is undefined, recall and F1 are a true 0
        ([1, 0, 1, 0], [0.1, 0.2, 0.3, 0.4], {"precision"}),
        # neither a predicted nor an actual positive: only accuracy is defined
        ([0, 0, 0], [0.1, 0.2, 0.3], {"precision", "recall", "f1", "roc_auc"}),
    ],
    ids=["one-class", "no-predicted-positive", "no-positive-at-all"],
)
def test_realized_leaves_undefined_metrics_out(
    labels: list[int], scores: list[float], absent: set[str]
) -> None:
    """The domain's convention (exporter.domain.metrics) on the realized path: an
    undefined metric is absent, never 0 or NaN; every defined one is a finite share."""
    y, s = np.array(labels), np.array(scores)
    direct = classification_metrics(y, s, threshold=0.5)
    realized = realized_metrics(y, s, threshold=0.5)
    for values in (direct, realized.values):
        assert set(values) == set(METRICS) - absent
        assert list(values) == [m for m in METRICS if m in values]
        assert all(np.isfinite(v) and 0.0 <= v <= 1.0 for v in values.values())
    assert realized.n_rows == len(labels)
    assert ("one class" in (realized.reason or "")) == ("roc_auc" in absent)
    if "precision" in absent:  # scikit-learn would report 0 here; the contract leaves it out
        pred = (s >= 0.5).astype(int)
        assert skm.precision_score(y, pred, zero_division=0) == 0.0


def _population(n: int, shift: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A covariate x, the true P(y|x) = sigmoid(2x - 1), and labels drawn from it."""
    x = rng.normal(shift, 1.0, n)
    p = 1.0 / (1.0 + np.exp(-(2.0 * x - 1.0)))
    return p, (rng.uniform(size=n) < p).astype(int)


def test_cbpe_tracks_realized_under_covariate_shift() -> None:
    rng = np.random.default_rng(11)
    ref_p, ref_y = _population(20_000, 0.0, rng)
    score = lambda p: p**0.5  # noqa: E731 - a monotone, miscalibrated model score
    calibrator = fit_calibrator(score(ref_p), ref_y)
    for shift in (0.0, -0.7, 0.8):
        cur_p, cur_y = _population(2_000, shift, rng)
        s = score(cur_p)
        est = estimated_metrics(s, 0.7, calibrator).values
        real = realized_metrics(cur_y, s, 0.7).values
        for metric in ("accuracy", "roc_auc"):
            assert est[metric] == pytest.approx(real[metric], abs=0.03), (shift, metric)


def test_cbpe_cannot_see_concept_drift() -> None:
    rng = np.random.default_rng(5)
    ref_p, ref_y = _population(20_000, 0.0, rng)
    calibrator = fit_calibrator(ref_p, ref_y)
    cur_p, _ = _population(2_000, 0.0, rng)
    flipped = (rng.uniform(size=2_000) < 1.0 - cur_p).astype(int)  # the relation inverted
    est = estimated_metrics(cur_p, 0.5, calibrator).values
    real = realized_metrics(flipped, cur_p, 0.5).values
    assert real["accuracy"] < est["accuracy"] - 0.2


def test_cbpe_expected_counts_by_hand() -> None:
    # Identity calibration, probabilities 0.9, 0.6, 0.3, 0.2 at threshold 0.5:
    # TP = 0.9 + 0.6, FP = 0.1 + 0.4, FN = 0.3 + 0.2, TN = 0.7 + 0.8.
    p = np.array([0.9, 0.6, 0.3, 0.2])
    est = estimated_metrics(p, 0.5, lambda s: s).values
    assert est["accuracy"] == pytest.approx(3.0 / 4.0)
    assert est["precision"] == pytest.approx(1.5 / 2.0)
    assert est["recall"] == pytest.approx(1.5 / 2.0)
    assert est["f1"] == pytest.approx(3.0 / 4.0)
    # Σ p_i (1 - p_j) over pairs with s_i > s_j, ties (a row against itself) count half:
    # 0.9·1.9 + 0.6·1.5 + 0.3·0.8 + ½(0.09 + 0.24 + 0.21 + 0.16) = 3.2, over Σp·Σ(1-p) = 4.
    assert est["roc_auc"] == pytest.approx(0.8)


def test_cbpe_of_a_separable_reference_is_near_perfect() -> None:
    s_ref = np.array([0.9, 0.8, 0.2, 0.1])
    calibrator = fit_calibrator(s_ref, np.array([1, 1, 0, 0]))
    est = estimated_metrics(s_ref, 0.5, calibrator)
    assert est.values == pytest.approx(
        {"accuracy": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0, "roc_auc": 1.0}, abs=1e-3
    )


def test_estimate_edge_cases() -> None:
    calibrator = fit_calibrator(np.array([0.1, 0.9]), np.array([0, 1]))
    assert estimated_metrics(np.array([]), 0.5, calibrator).reason == "empty window"
    small = estimated_metrics(np.array([0.2]), 0.5, calibrator, min_rows=5)
    assert small.values == {} and small.n_rows == 1
    with pytest.raises(ValueError, match="both classes"):
        fit_calibrator(np.array([0.1, 0.2]), np.array([0, 0]))


def test_business_and_helpers() -> None:
    assert revenue_at_risk(np.array([50.0, 100.0, np.nan]), np.array([0.2, 0.5, 0.9])) == 60.0
    assert revenue_at_risk(np.array([]), np.array([])) == 0.0
    assert positive_ratio(np.array([0.2, 0.6, 0.7, np.nan]), 0.5) == pytest.approx(2 / 3)
    assert positive_ratio(np.array([]), 0.5) is None
    assert degradation({"accuracy": 0.85, "f1": 0.6}, {"accuracy": 0.79}) == pytest.approx(
        {"accuracy": 0.06}
    )
