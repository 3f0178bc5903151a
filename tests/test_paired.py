"""Paired champion-challenger statistics (exporter.stats.paired): DeLong's test against
scikit-learn, a hand-computed case, the O(m·n) definition and a paired bootstrap;
McNemar's test against statsmodels used directly; validation and edge cases."""

from __future__ import annotations

import math
from dataclasses import astuple

import numpy as np
import pytest
from scipy.stats import norm, rankdata
from sklearn.metrics import accuracy_score, roc_auc_score
from statsmodels.stats.contingency_tables import mcnemar

from exporter.stats.paired import (
    EXACT_BELOW,
    agreement_ratio,
    compare_paired,
    delong_test,
    mcnemar_test,
    midrank_auc,
)


def _correlated(
    seed: int, n: int, gain_a: float, gain_b: float, decimals: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two models' scores sharing a common noise term (correlation ≈ 0.77),
    rounded to ``decimals`` so that many scores tie."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    common = rng.normal(size=n)
    a = gain_a * y + common + 0.6 * rng.normal(size=n)
    b = gain_b * y + common + 0.6 * rng.normal(size=n)
    return y, np.round(a, decimals), np.round(b, decimals)


def _components(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong's V10 and V01 by their O(m·n) definition (ψ = 1, 1/2, 0)."""
    x, z = s[y == 1][:, None], s[y == 0][None, :]
    psi = (x > z) + 0.5 * (x == z)
    return psi.mean(axis=1), psi.mean(axis=0)


# ------------------------------------------------------------------------- DeLong


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aucs_equal_sklearn_with_ties(seed: int) -> None:
    y, a, b = _correlated(seed, 300, 0.8, 1.0, decimals=0)  # a few distinct values only
    assert len(np.unique(a)) < 15
    result = delong_test(y, a, b)
    assert result.auc_a == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert result.auc_b == pytest.approx(roc_auc_score(y, b), abs=1e-12)
    assert result.difference == pytest.approx(result.auc_b - result.auc_a, abs=1e-12)
    assert midrank_auc(y, a) == pytest.approx(roc_auc_score(y, a), abs=1e-12)
    assert (result.n_positive, result.n_negative) == (int(y.sum()), int((1 - y).sum()))


def test_variance_equals_the_pairwise_definition() -> None:
    # Sun & Xu's midranks against DeLong's O(m·n) structural components, with ties.
    y, a, b = _correlated(7, 120, 0.8, 1.2, decimals=0)
    v10_a, v01_a = _components(y, a)
    v10_b, v01_b = _components(y, b)
    m, n = len(v10_a), len(v01_a)
    expected = np.var(v10_b - v10_a, ddof=1) / m + np.var(v01_b - v01_a, ddof=1) / n
    result = delong_test(y, a, b)
    assert result.variance == pytest.approx(expected, rel=1e-12)
    assert result.variance_a == pytest.approx(
        np.var(v10_a, ddof=1) / m + np.var(v01_a, ddof=1) / n, rel=1e-12
    )
    z = (v10_b.mean() - v10_a.mean()) / math.sqrt(expected)
    assert result.z == pytest.approx(z, rel=1e-12)
    assert result.pvalue == pytest.approx(2 * norm.sf(abs(z)), rel=1e-12)


def test_delong_by_hand() -> None:
    # Positives first (rows 0-2), then negatives (rows 3-4).
    y = np.array([1, 1, 1, 0, 0])
    a = np.array([0.8, 0.6, 0.3, 0.6, 0.2])  # a positive ties a negative at 0.6
    b = np.array([0.7, 0.4, 0.9, 0.5, 0.1])
    # V10 (share of the 2 negatives each positive outranks, ties 1/2):
    #   a: 0.8 -> 2/2 = 1, 0.6 -> (1 + 1/2)/2 = 0.75, 0.3 -> 1/2 = 0.5; AUC_a = 0.75
    #   b: 0.7 -> 1, 0.4 -> 0.5, 0.9 -> 1;                            AUC_b = 5/6
    # V01 (share of the 3 positives that outrank each negative):
    #   a: 0.6 -> (1 + 1/2)/3 = 0.5, 0.2 -> 1;   b: 0.5 -> 2/3, 0.1 -> 1
    # D = 5/6 - 3/4 = 1/12.
    # V10_b - V10_a = (0, -1/4, 1/2): mean 1/12, deviations (-1/12, -4/12, 5/12),
    #   s² = (1 + 16 + 25)/144 / 2 = 7/48.
    # V01_b - V01_a = (1/6, 0): mean 1/12, s² = 2 (1/12)² / 1 = 1/72.
    # Var(D) = (7/48)/3 + (1/72)/2 = 7/144 + 1/144 = 1/18.
    # Var(AUC_a) = s²(1, 0.75, 0.5)/3 + s²(0.5, 1)/2 = (1/16)/3 + (1/8)/2 = 1/12.
    # Var(AUC_b) = s²(1, 0.5, 1)/3 + s²(2/3, 1)/2 = (1/12)/3 + (1/18)/2 = 1/18.
    result = delong_test(y, a, b)
    assert result.auc_a == pytest.approx(0.75, abs=1e-15)
    assert result.auc_b == pytest.approx(5 / 6, abs=1e-15)
    assert result.difference == pytest.approx(1 / 12, abs=1e-15)
    assert result.variance == pytest.approx(1 / 18, rel=1e-14)
    assert result.variance_a == pytest.approx(1 / 12, rel=1e-14)
    assert result.variance_b == pytest.approx(1 / 18, rel=1e-14)
    z = (1 / 12) / math.sqrt(1 / 18)  # = sqrt(18)/12 ≈ 0.354
    assert result.z == pytest.approx(z, rel=1e-14)
    assert result.pvalue == pytest.approx(2 * norm.sf(z), rel=1e-12)
    # Row order does not matter.
    order = np.array([4, 0, 3, 2, 1])
    shuffled = delong_test(y[order], a[order], b[order])
    assert astuple(shuffled) == pytest.approx(astuple(result), rel=1e-12)


def test_delong_agrees_with_a_paired_bootstrap() -> None:
    """DeLong's variance of D = AUC_b - AUC_a is within 10 % (relative) of the variance
    of D over 2000 paired bootstrap resamples of the 600 rows (fixed seed), and DeLong's
    p-value within 0.01 (absolute) of the bootstrap's normal-approximation p-value
    2·(1 - Φ(|D| / sd_bootstrap)).

    The Monte Carlo error of a 2000-resample variance is about sqrt(2/1999) ≈ 3 %; the
    data give p ≈ 0.04, where 3 % in the variance moves p by about 0.003.
    """
    y, a, b = _correlated(1, 600, 0.8, 0.92)
    assert np.corrcoef(a, b)[0, 1] > 0.7
    result = delong_test(y, a, b)
    rng = np.random.default_rng(1)
    rows = rng.integers(0, len(y), (2000, len(y)))  # each resample keeps the pairs
    labels = y[rows]
    m = labels.sum(axis=1)

    def bootstrap_auc(scores: np.ndarray) -> np.ndarray:
        ranks = rankdata(scores[rows], axis=1)  # midranks, ties one half
        return ((ranks * labels).sum(axis=1) - m * (m + 1) / 2) / (m * (len(y) - m))

    differences = bootstrap_auc(b) - bootstrap_auc(a)
    variance = np.var(differences, ddof=1)
    pvalue = 2 * norm.sf(abs(result.difference) / math.sqrt(variance))
    assert 0.01 < result.pvalue < 0.2  # a p-value where the comparison means something
    assert result.variance == pytest.approx(variance, rel=0.10)
    assert result.pvalue == pytest.approx(pvalue, abs=0.01)


def test_identical_models_give_no_difference() -> None:
    y, a, _ = _correlated(3, 200, 1.0, 1.0)
    for b in (a, 3 * a + 1):  # the same scores, or the same ranking on another scale
        result = delong_test(y, a, b)
        assert result.difference == 0.0
        assert result.variance == 0.0
        assert result.z == 0.0
        assert result.pvalue == 1.0
    comparison = compare_paired(y, a, a.copy(), 0.5, 0.5)
    assert comparison.auc_difference == 0.0
    assert comparison.auc_difference_variance == 0.0
    assert comparison.auc_pvalue == 1.0
    assert comparison.accuracy_difference == 0.0
    assert comparison.mcnemar_pvalue == 1.0
    assert comparison.agreement_ratio == 1.0
    assert comparison.reason is None


def test_zero_variance_with_a_difference_is_certain() -> None:
    # A constant model (AUC 1/2, every component 1/2) against a perfect one (every
    # component 1): constant component differences, so Var(D) = 0 while D = 1/2.
    y = np.array([0, 0, 0, 1, 1, 1])
    result = delong_test(y, np.zeros(6), y.astype(float))
    assert result.difference == 0.5 and result.variance == 0.0
    assert result.z == math.inf and result.pvalue == 0.0


def test_clearly_better_model_is_significant() -> None:
    y, a, b = _correlated(11, 2000, 0.6, 1.2)
    result = delong_test(y, a, b)
    assert result.difference > 0.05
    assert result.pvalue < 0.01
    comparison = compare_paired(y, a, b, 0.5, 0.5)
    assert comparison.auc_difference == result.difference
    assert comparison.auc_pvalue == result.pvalue
    assert comparison.auc_pvalue is not None and comparison.auc_pvalue < 0.01
    # Swapping the models flips the difference and keeps the p-value.
    swapped = delong_test(y, b, a)
    assert swapped.difference == -result.difference
    assert swapped.pvalue == pytest.approx(result.pvalue, rel=1e-12)


@pytest.mark.parametrize(
    ("labels", "message"),
    [([1, 1, 1, 1], "both classes"), ([0, 0, 0], "both classes"), ([1, 0, 0, 0], "at least 2")],
)
def test_delong_needs_two_rows_of_each_class(labels: list[int], message: str) -> None:
    scores = np.linspace(0, 1, len(labels))
    with pytest.raises(ValueError, match=message):
        delong_test(labels, scores, scores[::-1])


# ------------------------------------------------------------------------- McNemar


def _rows_for_table(
    n11: int, n10: int, n01: int, n00: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels (both classes, shuffled) and scores whose decisions at 0.5 are right or
    wrong as the table says: a correct model scores a row at its label, a wrong one at
    the other label."""
    correct_a = np.repeat([True, True, False, False], [n11, n10, n01, n00])
    correct_b = np.repeat([True, False, True, False], [n11, n10, n01, n00])
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, len(correct_a))
    a = np.where(correct_a, y, 1 - y).astype(float)
    b = np.where(correct_b, y, 1 - y).astype(float)
    return y, a, b


@pytest.mark.parametrize(
    ("table", "exact"),
    [
        ((40, 3, 9, 8), True),
        ((40, 12, 12, 8), True),  # 24 discordant rows: still exact
        ((40, 10, 15, 8), False),  # 25: chi-square with continuity correction
        ((300, 20, 45, 35), False),
    ],
)
def test_mcnemar_equals_statsmodels(table: tuple[int, int, int, int], exact: bool) -> None:
    n11, n10, n01, n00 = table
    y, a, b = _rows_for_table(*table)
    result = mcnemar_test(y, a, b, 0.5, 0.5)
    assert result.table == ((n11, n10), (n01, n00))
    assert result.discordant == n10 + n01 and result.n_rows == sum(table)
    assert result.exact is exact and (result.discordant < EXACT_BELOW) is exact
    expected = mcnemar([[n11, n10], [n01, n00]], exact=exact, correction=True)
    assert result.statistic == pytest.approx(float(expected.statistic), rel=1e-12)
    assert result.pvalue == pytest.approx(float(expected.pvalue), rel=1e-12)
    if not exact:  # the corrected statistic by hand
        assert result.statistic == pytest.approx((abs(n10 - n01) - 1) ** 2 / (n10 + n01))


def test_mcnemar_by_hand_and_own_thresholds() -> None:
    # Labels 1 1 0 0 1; a decides at 0.5, b at 0.3.
    y = np.array([1, 1, 0, 0, 1])
    a = np.array(
        [0.9, 0.4, 0.2, 0.6, 0.35]
    )  # decisions 1 0 0 1 0: right, wrong, right, wrong, wrong
    b = np.array([0.8, 0.4, 0.1, 0.2, 0.35])  # decisions 1 1 0 0 1: all right
    result = mcnemar_test(y, a, b, 0.5, 0.3)
    assert result.table == ((2, 0), (3, 0))
    # Exact: 2·P(Bin(3, 1/2) <= 0) = 2/8.
    assert result.exact and result.statistic == 0.0
    assert result.pvalue == pytest.approx(0.25, abs=1e-15)


def test_mcnemar_without_discordant_rows_is_one() -> None:
    y, a, b = _rows_for_table(30, 0, 0, 10)
    result = mcnemar_test(y, a, b, 0.5, 0.5)
    assert result.discordant == 0 and result.statistic == 0.0 and result.pvalue == 1.0
    empty = mcnemar_test([], [], [], 0.5, 0.5)
    assert empty.n_rows == 0 and empty.pvalue == 1.0


# ------------------------------------------------------------------------- comparison


def test_comparison_matches_its_parts() -> None:
    y, a, b = _correlated(5, 400, 0.8, 1.0)
    c = compare_paired(y, a, b, champion_threshold=0.4, challenger_threshold=0.6)
    delong = delong_test(y, a, b)
    pred_a, pred_b = (a >= 0.4).astype(int), (b >= 0.6).astype(int)
    assert c.n_paired == 400 and c.reason is None
    assert (c.auc_champion, c.auc_challenger) == (delong.auc_a, delong.auc_b)
    assert c.auc_difference == delong.difference
    assert c.auc_difference_variance == delong.variance
    assert c.auc_pvalue == delong.pvalue
    assert c.accuracy_champion == pytest.approx(accuracy_score(y, pred_a), abs=1e-15)
    assert c.accuracy_challenger == pytest.approx(accuracy_score(y, pred_b), abs=1e-15)
    assert c.accuracy_difference == pytest.approx(
        accuracy_score(y, pred_b) - accuracy_score(y, pred_a), abs=1e-15
    )
    assert c.mcnemar_pvalue == mcnemar_test(y, a, b, 0.4, 0.6).pvalue
    assert c.agreement_ratio == pytest.approx(np.mean(pred_a == pred_b), abs=1e-15)
    assert c.agreement_ratio == agreement_ratio(a, b, 0.4, 0.6)


def test_agreement_ratio_by_hand() -> None:
    # Decisions: champion at 0.5 -> 1 0 1 0; challenger at 0.7 -> 1 0 0 1: agree on 2 of 4.
    champion = [0.9, 0.1, 0.6, 0.4]
    challenger = [0.8, 0.2, 0.65, 0.7]
    assert agreement_ratio(champion, challenger, 0.5, 0.7) == 0.5
    assert agreement_ratio([], [], 0.5, 0.5) is None


def test_one_class_leaves_auc_out() -> None:
    y = np.ones(6, dtype=int)
    a = np.array([0.9, 0.8, 0.3, 0.7, 0.2, 0.6])
    b = np.array([0.9, 0.4, 0.6, 0.7, 0.2, 0.6])
    c = compare_paired(y, a, b, 0.5, 0.5)
    assert c.reason is not None and "one class" in c.reason
    assert c.auc_champion is None and c.auc_challenger is None
    assert c.auc_difference is None and c.auc_difference_variance is None
    assert c.auc_pvalue is None
    # Accuracy, McNemar and agreement need no second class.
    assert c.n_paired == 6
    assert c.accuracy_champion == pytest.approx(4 / 6) and c.accuracy_challenger == pytest.approx(
        4 / 6
    )
    assert c.accuracy_difference == 0.0
    assert c.mcnemar_pvalue == 1.0  # one row each way: 2·P(Bin(2, 1/2) <= 1) capped at 1
    assert c.agreement_ratio == pytest.approx(4 / 6)


def test_too_few_rows_and_no_rows() -> None:
    y, a, b = _correlated(2, 50, 0.8, 1.0)
    c = compare_paired(y, a, b, 0.5, 0.5, min_rows=100)
    assert c.reason is not None and "fewer than the minimum 100" in c.reason
    assert c.auc_champion is None and c.auc_pvalue is None
    assert c.accuracy_champion is not None and c.mcnemar_pvalue is not None
    assert c.agreement_ratio is not None
    empty = compare_paired([], [], [], 0.5, 0.5)
    assert empty.n_paired == 0 and empty.reason == "no paired labelled rows"
    assert empty.accuracy_champion is None and empty.agreement_ratio is None
    assert empty.mcnemar_pvalue is None and empty.auc_champion is None


def test_single_row_of_a_class_gives_auc_without_variance() -> None:
    y = np.array([1, 0, 0, 0])
    a = np.array([0.9, 0.1, 0.95, 0.3])
    b = np.array([0.9, 0.1, 0.2, 0.3])
    c = compare_paired(y, a, b, 0.5, 0.5)
    assert c.auc_champion == pytest.approx(roc_auc_score(y, a))
    assert c.auc_challenger == pytest.approx(roc_auc_score(y, b))
    assert c.auc_difference == pytest.approx(1 - 2 / 3)
    assert c.auc_difference_variance is None and c.auc_pvalue is None
    assert c.reason is not None and "at least 2 of each class" in c.reason


# ------------------------------------------------------------------------- validation


GOOD = {
    "labels": [0, 1, 1, 0],
    "champion_scores": [0.1, 0.7, 0.6, 0.2],
    "challenger_scores": [0.3, 0.8, 0.4, 0.1],
    "champion_threshold": 0.5,
    "challenger_threshold": 0.5,
}


@pytest.mark.parametrize(
    ("argument", "value", "pattern"),
    [
        ("labels", [0, 1, 2, 0], r"^labels must be 0 or 1"),
        ("labels", [0, 1, float("nan"), 0], r"^labels must be 0 or 1"),
        ("labels", [[0, 1], [1, 0]], r"^labels must be 1-D"),
        ("labels", ["no", "yes", "yes", "no"], r"^labels must be numeric"),
        ("labels", [0, 1, 1], r"^champion_scores must have the same length as labels: 4 != 3"),
        ("champion_scores", [0.1, float("nan"), 0.6, 0.2], r"^champion_scores must be finite"),
        ("champion_scores", [0.1, 0.7, 0.6], r"^challenger_scores must have .* as champion_scores"),
        ("challenger_scores", [0.3, float("inf"), 0.4, 0.1], r"^challenger_scores must be finite"),
        ("challenger_scores", [0.3, 0.8, 0.4], r"^challenger_scores must have the same length"),
        ("champion_threshold", float("nan"), r"^champion_threshold must be finite"),
        ("challenger_threshold", "high", r"^challenger_threshold must be a number"),
    ],
)
def test_validation_names_the_argument(argument: str, value: object, pattern: str) -> None:
    # A length mismatch names both arrays compared.
    with pytest.raises(ValueError, match=pattern):
        compare_paired(**{**GOOD, argument: value})  # type: ignore[arg-type]


def test_validation_of_the_other_entry_points() -> None:
    with pytest.raises(ValueError, match=r"^scores_b must be finite"):
        delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, None, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"^threshold_b must be finite"):
        mcnemar_test([0, 1], [0.1, 0.9], [0.2, 0.8], 0.5, float("inf"))
    with pytest.raises(ValueError, match=r"^challenger_scores must have the same length"):
        agreement_ratio([0.1, 0.9], [0.2], 0.5, 0.5)
    with pytest.raises(ValueError, match=r"^labels must be 0 or 1"):
        midrank_auc([0, 1, -1], [0.1, 0.2, 0.3])
    # Booleans are valid labels and scores.
    assert delong_test([False, True, False, True], [0, 1, 0, 1], [1, 0, 0, 1]).auc_a == 1.0
