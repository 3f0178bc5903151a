"""DeLong's test: do two models scored on the same rows have the same ROC AUC?

DeLong, DeLong & Clarke-Pearson (1988), computed with the midrank algorithm of Sun & Xu
(2014, "Fast implementation of DeLong's algorithm for comparing the areas under
correlated receiver operating characteristic curves", IEEE Signal Processing Letters
21(11)) in O(n log n) per model instead of the O(m·n) pairwise comparisons.

For one model with positive scores ``X_1..X_m`` and negative scores ``Y_1..Y_n``, and
``ψ(x, y) = 1 if x > y, 1/2 if x = y, 0 if x < y``, the structural components are
    V10_i = (1/n) Σ_j ψ(X_i, Y_j)    (share of negatives a positive outranks),
    V01_j = (1/m) Σ_i ψ(X_i, Y_j)    (share of positives that outrank a negative),
and AUC = mean(V10) = mean(V01), which is scikit-learn's ``roc_auc_score`` with ties
counted one half. Sun & Xu get them from midranks (ties share the mean of their ranks):
with ``Tx`` the midranks of the positives among themselves, ``Ty`` of the negatives
among themselves and ``Tz`` of all ``m + n`` scores together,
    V10_i = (Tz_i - Tx_i) / n,        V01_j = 1 - (Tz_{m+j} - Ty_j) / m.

For models ``a`` and ``b`` on the same rows, the difference ``D = AUC_b - AUC_a`` has
DeLong's variance
    Var(D) = s²(V10_b - V10_a) / m + s²(V01_b - V01_a) / n,
with ``s²`` the sample variance (denominator ``m - 1``, ``n - 1``); this is
``L S Lᵀ`` of the paper with ``L = (-1, 1)``, and each model's own variance is
``s²(V10) / m + s²(V01) / n``. The test statistic is ``z = D / sqrt(Var(D))``, with the
two-sided p-value ``2 (1 - Φ(|z|))`` (``scipy.stats.norm``). All are unitless; the AUCs
and the p-value are shares in [0, 1].

The component differences are taken in midrank units (multiples of 1/2, exact in
float64) before scaling, so two models that rank the rows alike give exactly equal
components, whatever their scores.

Edge cases:

* fewer than 2 positive or 2 negative rows (one class only included): ValueError,
  since the AUC is undefined with one class and the sample variances with one row of
  a class; the caller reports why (:func:`midrank_auc` still gives the AUC with one
  row of a class);
* zero variance: the component differences are constant over the positives and over
  the negatives, as for two models that rank every row alike. Then
  ``Var(D) = 0`` exactly. When ``D = 0`` as well (the identical-models case) the result
  is ``z = 0`` and p-value 1.0: no evidence of a difference, never NaN. When ``D ≠ 0``
  (e.g. a constant model against a perfect one) the difference is certain on these
  rows: ``z = ±inf`` and p-value 0.0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm, rankdata

from exporter.stats.paired._inputs import labels_array, paired_inputs, scores_array


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's test of ``auc_b == auc_a`` on the same rows (module notes).

    ``difference = auc_b - auc_a``; ``variance`` is its variance, ``variance_a`` and
    ``variance_b`` each AUC's own; ``pvalue`` is two-sided.
    """

    auc_a: float
    auc_b: float
    difference: float
    variance: float
    variance_a: float
    variance_b: float
    z: float
    pvalue: float
    n_positive: int
    n_negative: int


def _placements(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(``n·V10``, ``m·(1 - V01)``) by Sun & Xu's midranks: for each positive the number
    of negatives below it, for each negative the number of positives below it (ties
    one half). Half-integers, exact in float64."""
    m = len(positives)
    tz = rankdata(np.concatenate([positives, negatives]), method="average")
    tx = rankdata(positives, method="average")
    ty = rankdata(negatives, method="average")
    return tz[:m] - tx, tz[m:] - ty


def _class_counts(y: np.ndarray) -> tuple[int, int]:
    m = int(y.sum())
    return m, len(y) - m


def midrank_auc(labels: Any, scores: Any) -> float:
    """ROC AUC of ``scores`` against 0/1 ``labels`` by midranks (ties count one half).

    Equals scikit-learn's ``roc_auc_score``. Needs at least one row of each class,
    else ValueError.
    """
    y = labels_array(labels, "labels")
    s = scores_array(scores, "scores")
    if len(s) != len(y):
        raise ValueError(f"scores must have the same length as labels: {len(s)} != {len(y)}")
    m, n = _class_counts(y)
    if m == 0 or n == 0:
        raise ValueError("labels must hold both classes: ROC AUC is undefined with one class")
    p10, _ = _placements(s[y == 1], s[y == 0])
    return float(p10.sum() / (m * n))


def _sample_variance(values: np.ndarray) -> float:
    # Exactly 0 for constant values (np.var may leave rounding noise of ~1e-33).
    if np.ptp(values) == 0:
        return 0.0
    return float(np.var(values, ddof=1))


def delong_test(labels: Any, scores_a: Any, scores_b: Any) -> DeLongResult:
    """DeLong's test of the difference ``AUC_b - AUC_a`` (module notes).

    ``labels`` are 0/1, ``scores_a`` and ``scores_b`` the two models' finite scores on
    the same rows (:mod:`._inputs`). ValueError on invalid inputs and when either class
    has fewer than 2 rows.
    """
    y, a, b = paired_inputs(labels, scores_a, scores_b)
    m, n = _class_counts(y)
    if m == 0 or n == 0:
        raise ValueError("labels must hold both classes: ROC AUC is undefined with one class")
    if m < 2 or n < 2:
        raise ValueError(
            f"labels must hold at least 2 rows of each class for DeLong's variance, "
            f"got {m} positive and {n} negative"
        )
    pos = y == 1
    p10_a, p01_a = _placements(a[pos], a[~pos])
    p10_b, p01_b = _placements(b[pos], b[~pos])
    auc_a = float(p10_a.sum() / (m * n))
    auc_b = float(p10_b.sum() / (m * n))
    # V10 = p10 / n and V01 = 1 - p01 / m, so s²(V10) = s²(p10) / n², s²(V01) = s²(p01) / m².
    scale10, scale01 = 1.0 / (n * n * m), 1.0 / (m * m * n)
    variance_a = _sample_variance(p10_a) * scale10 + _sample_variance(p01_a) * scale01
    variance_b = _sample_variance(p10_b) * scale10 + _sample_variance(p01_b) * scale01
    variance = _sample_variance(p10_b - p10_a) * scale10 + _sample_variance(p01_b - p01_a) * scale01
    difference = float((p10_b.sum() - p10_a.sum()) / (m * n))
    if variance > 0:
        z = difference / math.sqrt(variance)
        pvalue = float(2.0 * norm.sf(abs(z)))
    elif difference == 0:
        z, pvalue = 0.0, 1.0
    else:
        z, pvalue = math.copysign(math.inf, difference), 0.0
    return DeLongResult(
        auc_a=auc_a,
        auc_b=auc_b,
        difference=difference,
        variance=variance,
        variance_a=variance_a,
        variance_b=variance_b,
        z=z,
        pvalue=pvalue,
        n_positive=m,
        n_negative=n,
    )
