"""Model-quality statistics: realized metrics, a label-free estimate, business value.

Pure functions over arrays; no I/O, no Prometheus.

Realized metrics (labels known), with ``ŷ = score >= threshold``:
    accuracy = (TP + TN) / n, precision = TP / (TP + FP), recall = TP / (TP + FN),
    f1 = 2TP / (2TP + FP + FN), roc_auc = P(score of a random positive > score of a
    random negative) (ties count one half). The first four come from the confusion
    counts (:class:`Confusion`, :func:`confusion_metrics`), each one correctly rounded
    division of exact integers, hence bit for bit scikit-learn's ``accuracy_score``,
    ``precision_score``, ``recall_score`` and ``f1_score``; ROC AUC is scikit-learn's
    ``roc_auc_score``. A window that keeps its confusion counts incrementally
    (:mod:`exporter.stats.streaming`) goes through the same functions.
Edge cases: no labelled rows or fewer than ``min_rows``: nothing is computed (the
result says why); one class only: ROC AUC is undefined and left out, and precision or
recall with a zero denominator is left out rather than reported as 0.

Label-free estimate (confidence-based performance estimation, CBPE): a calibrator
``c`` maps scores to P(churn) and is fitted on the reference (scores with their true
labels): logistic calibration on the score's logit, ``c(s) = σ(a·logit(s) + b)``
(Platt scaling). Two parameters keep its variance low on references of a few
thousand rows, where isotonic regression's steps made the estimate optimistic by
2-3 points in our measurements. On a window with calibrated probabilities ``p_i`` the
expected confusion-matrix counts are
    TP = Σ p_i [ŷ_i = 1], FP = Σ (1 - p_i) [ŷ_i = 1],
    FN = Σ p_i [ŷ_i = 0], TN = Σ (1 - p_i) [ŷ_i = 0],
and the metrics follow from them as above. The expected ROC AUC is the AUC with every
row counted as a positive with weight ``p_i`` and as a negative with weight ``1 - p_i``
(`roc_auc_score` with sample weights). What it sees: covariate shift, i.e. the window
moving into regions where the model is more or less sure; it assumes P(churn | score)
is unchanged. What it cannot see: concept drift, where the same inputs now lead to a
different outcome. Compare it with the realized metrics once labels arrive.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from exporter.domain.metrics import METRICS


@dataclass(frozen=True)
class MetricSet:
    """Values by metric name (a subset of METRICS), the rows used, and why any is missing."""

    values: Mapping[str, float]
    n_rows: int
    reason: str | None = None


def _finite_pairs(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    scores = np.asarray(scores, dtype=float)
    keep = np.isfinite(y) & np.isfinite(scores)
    return y[keep].astype(int), scores[keep]


@dataclass(frozen=True)
class Confusion:
    """Confusion counts of 0/1 labels against ``ŷ = score >= threshold``.

    ``tp``: label 1, ŷ 1; ``fp``: label 0, ŷ 1; ``fn``: label 1, ŷ 0; ``tn``: label
    0, ŷ 0. Non-negative integers.
    """

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def both_classes(self) -> bool:
        """Whether both labels occur (ROC AUC is defined)."""
        return self.tp + self.fn > 0 and self.fp + self.tn > 0

    def __add__(self, other: Confusion) -> Confusion:
        """The counts of both sets of rows together."""
        return Confusion(
            self.tp + other.tp, self.fp + other.fp, self.fn + other.fn, self.tn + other.tn
        )

    def __sub__(self, other: Confusion) -> Confusion:
        """The counts without ``other``'s rows (which must be among these)."""
        return Confusion(
            self.tp - other.tp, self.fp - other.fp, self.fn - other.fn, self.tn - other.tn
        )


def predicted_positive(scores: np.ndarray, threshold: float) -> np.ndarray:
    """The model's decisions ``ŷ = score >= threshold`` (boolean), the rule every metric
    of this module applies."""
    return np.asarray(scores, dtype=float) >= threshold


def confusion(y_true: np.ndarray, predicted: np.ndarray) -> Confusion:
    """The confusion counts of 0/1 ``y_true`` against 0/1 (or boolean) ``predicted``.

    Raises ValueError for a label other than 0 and 1.
    """
    labels = np.asarray(y_true)
    if np.count_nonzero((labels != 0) & (labels != 1)):
        raise ValueError("labels must be 0 or 1")
    y = labels.astype(bool)
    pred = np.asarray(predicted).astype(bool)
    tp = int(np.count_nonzero(y & pred))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(y)) - tp
    return Confusion(tp=tp, fp=fp, fn=fn, tn=int(y.size) - tp - fp - fn)


def confusion_metrics(counts: Confusion, auc: Callable[[], float]) -> dict[str, float]:
    """The metric contract of :func:`classification_metrics` from confusion counts.

    Accuracy, precision, recall and F1 by the formulas of the module notes, undefined
    ones left out (precision when ``tp + fp = 0``, recall when ``tp + fn = 0``, F1 when
    ``tp + fp + fn = 0``); ``auc()`` (the rows' ROC AUC) is called, and its value
    reported, only when both classes occur. Empty counts give an empty result.
    """
    c = counts
    if c.n == 0:
        return {}
    values: dict[str, float] = {"accuracy": (c.tp + c.tn) / c.n}
    if c.tp + c.fp:
        values["precision"] = c.tp / (c.tp + c.fp)
    if c.tp + c.fn:
        values["recall"] = c.tp / (c.tp + c.fn)
    if c.tp + c.fp + c.fn:
        values["f1"] = 2 * c.tp / (2 * c.tp + c.fp + c.fn)
    if c.both_classes:
        values["roc_auc"] = auc()
    return {m: values[m] for m in METRICS if m in values}


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` against 0/1 labels: scikit-learn's ``roc_auc_score``.

    Both classes must occur (:attr:`Confusion.both_classes`); a share in [0, 1].
    """
    return float(roc_auc_score(y_true, scores))


def classification_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float
) -> dict[str, float]:
    """Accuracy, precision, recall and F1 of ``scores >= threshold``, and ROC AUC of the
    scores, against 0/1 labels; shares in [0, 1].

    The one implementation of the metric contract (:mod:`exporter.domain.metrics`):
    training's baseline and the exporter's realized values both come from here, through
    :func:`confusion_metrics`. Undefined values are left out of the result, never
    reported as 0: precision with no predicted positive, recall with no actual positive,
    F1 with neither, ROC AUC with one class only. Empty input gives an empty result.
    """
    y = np.asarray(y_true).astype(int)
    s = np.asarray(scores, dtype=float)
    counts = confusion(y, predicted_positive(s, threshold))
    return confusion_metrics(counts, lambda: roc_auc(y, s))


def realized_from_confusion(
    counts: Confusion, auc: Callable[[], float], min_rows: int = 1
) -> MetricSet:
    """The realized metrics of a window's labelled rows given as confusion counts.

    ``auc()`` gives the ROC AUC of those rows; it is called only when the metric is
    defined. No labelled rows, or fewer than ``min_rows``: nothing is computed, and the
    result says why (as it does when ROC AUC is undefined).
    """
    n = counts.n
    if n == 0:
        return MetricSet({}, 0, "no labelled rows")
    if n < min_rows:
        return MetricSet({}, n, f"{n} labelled rows, fewer than the minimum {min_rows}")
    values = confusion_metrics(counts, auc)
    reason = None if "roc_auc" in values else "one class only: ROC AUC is undefined"
    return MetricSet(values, n, reason)


def realized_metrics(
    y_true: np.ndarray, scores: np.ndarray, threshold: float, min_rows: int = 1
) -> MetricSet:
    """:func:`classification_metrics` on the labelled rows of a window.

    Rows whose label or score is NaN are dropped. Below `min_rows` rows nothing is
    computed; the result says why any metric is missing (:func:`realized_from_confusion`).
    """
    y, s = _finite_pairs(y_true, scores)
    counts = confusion(y, predicted_positive(s, threshold))
    return realized_from_confusion(counts, lambda: roc_auc(y, s), min_rows)


#: Scores are clipped to [ε, 1 − ε] before the logit, so 0 and 1 stay finite.
LOGIT_EPS = 1e-6


def _logit(scores: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(scores, dtype=float), LOGIT_EPS, 1.0 - LOGIT_EPS)
    return np.log(p / (1.0 - p)).reshape(-1, 1)


@dataclass(frozen=True)
class Calibrator:
    """Logistic map from model score to P(churn), fitted on the reference."""

    model: LogisticRegression

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return self.model.predict_proba(_logit(scores))[:, 1]


def fit_calibrator(reference_scores: np.ndarray, reference_labels: np.ndarray) -> Calibrator:
    """Fit the score→probability calibration on labelled reference rows (NaN dropped).

    Raises ValueError when the reference has no labelled rows or only one class: no
    calibration is possible then.
    """
    y, s = _finite_pairs(reference_labels, reference_scores)
    if len(np.unique(y)) < 2:
        raise ValueError("calibration needs reference rows of both classes")
    # A very weak penalty: the fit is the maximum-likelihood Platt scaling.
    return Calibrator(LogisticRegression(C=1e6).fit(_logit(s), y))


def estimated_metrics(
    scores: np.ndarray,
    threshold: float,
    calibrator: Callable[[np.ndarray], np.ndarray],
    min_rows: int = 1,
) -> MetricSet:
    """The CBPE estimate of the five metrics on an unlabelled window (module docstring)."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    n = len(s)
    if n == 0:
        return MetricSet({}, 0, "empty window")
    if n < min_rows:
        return MetricSet({}, n, f"{n} rows, fewer than the minimum {min_rows}")
    p = calibrator(s)
    positive = predicted_positive(s, threshold)
    tp = float(p[positive].sum())
    fp = float((1.0 - p[positive]).sum())
    fn = float(p[~positive].sum())
    tn = float((1.0 - p[~positive]).sum())
    values: dict[str, float] = {"accuracy": (tp + tn) / n}
    if tp + fp > 0:
        values["precision"] = tp / (tp + fp)
    if tp + fn > 0:
        values["recall"] = tp / (tp + fn)
    if 2 * tp + fp + fn > 0:
        values["f1"] = 2 * tp / (2 * tp + fp + fn)
    reason = None
    if p.sum() > 0 and (1.0 - p).sum() > 0:
        labels = np.r_[np.ones(n), np.zeros(n)]
        values["roc_auc"] = float(
            roc_auc_score(labels, np.r_[s, s], sample_weight=np.r_[p, 1.0 - p])
        )
    else:
        reason = "calibrated probabilities are all 0 or all 1: ROC AUC is undefined"
    return MetricSet(values, n, reason)


def positive_ratio(scores: np.ndarray, threshold: float) -> float | None:
    """Share of finite scores at or above `threshold`; None for an empty window."""
    s = np.asarray(scores, dtype=float)
    s = s[np.isfinite(s)]
    return float(predicted_positive(s, threshold).mean()) if len(s) else None


def revenue_at_risk(monthly_charges: np.ndarray, scores: np.ndarray) -> float:
    """Expected monthly revenue lost to churn: Σ MonthlyCharges_i × P(churn)_i.

    In the currency of MonthlyCharges per month; rows with a NaN in either are skipped;
    an empty window gives 0.
    """
    m = np.asarray(monthly_charges, dtype=float)
    s = np.asarray(scores, dtype=float)
    keep = np.isfinite(m) & np.isfinite(s)
    return float(np.dot(m[keep], s[keep]))


def degradation(baseline: Mapping[str, float], realized: Mapping[str, float]) -> dict[str, float]:
    """Baseline minus realized value per metric present in both (positive = worse)."""
    return {k: baseline[k] - realized[k] for k in METRICS if k in baseline and k in realized}
