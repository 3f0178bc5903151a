"""Multivariate drift and unusual rows (exporter.stats.multivariate): small cases checked
by hand and against scikit-learn used directly."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm, rankdata
from sklearn.decomposition import PCA
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from exporter.stats.multivariate import (
    assess_multivariate,
    domain_auc,
    fit_encoder,
    fit_multivariate,
    fit_reconstruction,
    thresholds,
)
from exporter.stats.multivariate.domain_classifier import CLASSIFIER_PARAMS

# ------------------------------------------------------------------------- encoding


def test_encoding_by_hand() -> None:
    reference = pd.DataFrame(
        {"x": [1.0, 3.0, np.nan, 5.0], "c": ["a", "b", "a", None], "k": [7, 7, 7, 7]}
    )
    enc = fit_encoder(reference, ["x", "k"], ["c"])
    assert enc.columns == ("x", "k", "c=a", "c=b")
    # mean 3, population sd sqrt(8/3) over the finite values; constant k has scale 1
    assert enc.means.tolist() == [3.0, 7.0]
    assert enc.scales.tolist() == pytest.approx([math.sqrt(8 / 3), 1.0])
    current = pd.DataFrame(
        {"x": [3.0, None, "oops", 3.0 + math.sqrt(8 / 3)], "c": ["b", "z", None, "a"], "k": 9}
    )
    got = enc.encode(current)
    expected = np.array(
        [
            [0.0, 2.0, 0.0, 1.0],  # k differs from the constant by its raw difference
            [0.0, 2.0, 0.0, 0.0],  # missing x is the mean; unseen "z" sets no column
            [0.0, 2.0, 0.0, 0.0],  # an unparsable string is missing; missing c likewise
            [1.0, 2.0, 1.0, 0.0],
        ]
    )
    np.testing.assert_allclose(got, expected)


def test_encoding_matches_categories_by_canonical_key_and_absent_columns_are_missing() -> None:
    enc = fit_encoder(pd.DataFrame({"n": [1.0, 2.0], "c": [1, 2]}), ["n"], ["c"])
    got = enc.encode(pd.DataFrame({"c": ["1", 2.0]}))  # n absent; "1" and 2.0 are known
    np.testing.assert_array_equal(got, [[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def test_encoder_names_missing_reference_columns() -> None:
    with pytest.raises(ValueError, match=r"reference is missing columns: \['b'\]"):
        fit_encoder(pd.DataFrame({"a": [1.0]}), ["a", "b"], [])


# ------------------------------------------------------------------- reconstruction


def test_reconstruction_errors_equal_sklearn_pca_inverse_transform() -> None:
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, 2))
    x = np.c_[base, base @ [[1.0], [0.5]] + 0.1 * rng.standard_normal((500, 1)), rng.random(500)]
    model = fit_reconstruction(x, 0.65)
    pca = PCA(n_components=0.65, svd_solver="full").fit(x)
    new = rng.standard_normal((50, 4))
    direct = np.linalg.norm(new - pca.inverse_transform(pca.transform(new)), axis=1)
    np.testing.assert_allclose(model.errors(new), direct, rtol=1e-10, atol=1e-12)
    assert model.components.shape[0] == pca.n_components_
    assert model.explained_variance_share == pytest.approx(pca.explained_variance_ratio_.sum())


def test_reconstruction_by_hand_on_a_line() -> None:
    # points on y = x around (0.5, 0.5): one component keeps all the variance, and
    # (1.5, -0.5) is (1, -1) from the mean, sqrt(2) off the line
    x = np.array([[-1.0, -1.0], [0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
    model = fit_reconstruction(x, 0.65)
    assert model.components.shape == (1, 2)
    errors = model.errors(np.array([[5.0, 5.0], [1.5, -0.5]]))
    np.testing.assert_allclose(errors, [0, 2**0.5], atol=1e-12)


def test_reconstruction_of_a_constant_matrix_is_the_distance_to_its_mean() -> None:
    model = fit_reconstruction(np.ones((5, 2)), 0.65)
    assert model.components.shape == (0, 2)
    np.testing.assert_allclose(model.errors(np.array([[1.0, 1.0], [4.0, 5.0]])), [0.0, 5.0])


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, 1.5])
def test_reconstruction_rejects_a_variance_share_outside_the_open_unit_interval(
    share: float,
) -> None:
    with pytest.raises(ValueError, match="variance_share"):
        fit_reconstruction(np.eye(3), share)


# ------------------------------------------------------------------ domain classifier


def _two_groups(shift: float, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    return rng.standard_normal((n, 3)), rng.standard_normal((n, 3)) + shift


def test_domain_auc_equals_the_same_halves_and_classifier_used_directly() -> None:
    reference, window = _two_groups(0.5)
    auc, n1, n2 = domain_auc(reference, window, seed=4)
    x = np.vstack([reference, window])
    y = np.r_[np.zeros(400), np.ones(400)]
    aucs = []
    for fit, test in StratifiedKFold(2, shuffle=True, random_state=4).split(x, y):
        clf = HistGradientBoostingClassifier(random_state=4, **CLASSIFIER_PARAMS)
        clf.fit(x[fit], y[fit])
        aucs.append(roc_auc_score(y[test], clf.predict_proba(x[test])[:, 1]))
    assert auc == pytest.approx(np.mean(aucs))
    assert (n1, n2) == (200, 200)
    assert 0.6 < auc < 0.95


def test_domain_auc_separates_disjoint_groups_and_subsamples_to_the_cap() -> None:
    reference, window = _two_groups(10.0, n=1000)
    auc, n1, n2 = domain_auc(reference, window, max_rows=300)
    assert auc is not None and auc > 0.99
    assert (n1, n2) == (150, 150)  # 300 of each side, in two halves


def test_domain_auc_needs_a_few_rows_on_each_side() -> None:
    reference, window = _two_groups(0.0)
    assert domain_auc(reference, window[:3]) == (None, 0, 0)


# ------------------------------------------------------------------------ thresholds


def test_threshold_formulas_by_hand() -> None:
    z = norm.isf(0.025)  # 1.959964
    assert thresholds.mean_upper_bound(1.0, 2.0, 100, 400, 0.025) == pytest.approx(
        1.0 + z * 2.0 * math.sqrt(1 / 100 + 1 / 400)
    )
    assert thresholds.proportion_upper_bound(0.01, 1000, 5000, 0.025) == pytest.approx(
        0.01 + z * math.sqrt(0.01 * 0.99 * (1 / 1000 + 1 / 5000))
    )
    assert thresholds.auc_upper_bound(30, 50, 0.025) == pytest.approx(
        0.5 + z * math.sqrt(81 / (12 * 30 * 50))
    )
    assert thresholds.proportion_upper_bound(0.5, 1, 1, 0.001) == 1.0
    with pytest.raises(ValueError, match="false-alarm rate"):
        thresholds.auc_upper_bound(10, 10, 0.0)


def test_auc_bound_holds_its_rate_for_scores_unrelated_to_the_labels() -> None:
    """Mann-Whitney null: random scores exceed the 5 % bound in about 5 % of draws."""
    rng = np.random.default_rng(2)
    n1, n2 = 60, 90
    scores = rng.random((20_000, n1 + n2))
    # AUC = U / (n1 n2), U = rank sum of the positives minus n2 (n2 + 1) / 2
    ranks = rankdata(scores, axis=1)
    aucs = (ranks[:, n1:].sum(axis=1) - n2 * (n2 + 1) / 2) / (n1 * n2)
    y = np.r_[np.zeros(n1), np.ones(n2)]
    assert aucs[0] == pytest.approx(roc_auc_score(y, scores[0]))
    rate = np.mean(aucs > thresholds.auc_upper_bound(n1, n2, 0.05))
    assert 0.045 < rate < 0.055


# --------------------------------------------------------------- profile, assessment


def _butterfly(n: int, seed: int, sign: float) -> pd.DataFrame:
    """NannyML's butterfly: x2 follows +x1 (reference) or -x1 (drifted); the marginals
    are the same standard normals either way."""
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal(n)
    x2 = sign * x1 * math.sqrt(0.9) + math.sqrt(0.1) * rng.standard_normal(n)
    return pd.DataFrame({"x1": x1, "x2": x2})


@pytest.fixture(scope="module")
def butterfly_profile():  # type: ignore[no-untyped-def]
    return fit_multivariate(_butterfly(2000, 0, 1.0), ["x1", "x2"], [])


def test_butterfly_moves_no_marginal_but_both_methods_flag_it(butterfly_profile) -> None:  # type: ignore[no-untyped-def]
    from scipy.stats import ks_2samp

    reference, drifted = _butterfly(2000, 0, 1.0), _butterfly(1000, 1, -1.0)
    for column in ("x1", "x2"):
        assert ks_2samp(reference[column], drifted[column]).pvalue > 0.01
    result = assess_multivariate(butterfly_profile, drifted, min_window_rows=300)
    assert result.reconstruction_error > result.reconstruction_threshold
    assert result.domain_auc > result.domain_auc_threshold
    assert result.drifted is True
    assert result.unusual_ratio > 0.5 and result.unusual_drifted is True
    calm = assess_multivariate(butterfly_profile, _butterfly(1000, 2, 1.0), min_window_rows=300)
    assert calm.drifted is False and calm.unusual_drifted is False


def test_unusual_cutoff_flags_the_configured_share_of_reference_like_rows(
    butterfly_profile,  # type: ignore[no-untyped-def]
) -> None:
    scores = butterfly_profile.row_scores(_butterfly(50_000, 3, 1.0))
    assert scores.unusual.mean() == pytest.approx(0.01, abs=0.003)
    np.testing.assert_array_equal(scores.unusual, scores.score > butterfly_profile.unusual_cutoff)
    off = butterfly_profile.row_scores(pd.DataFrame({"x1": [2.0], "x2": [-2.0]}))
    assert off.unusual.tolist() == [True]


def test_small_windows_get_statistics_but_no_decision(butterfly_profile) -> None:  # type: ignore[no-untyped-def]
    result = assess_multivariate(butterfly_profile, _butterfly(50, 4, -1.0), min_window_rows=300)
    assert result.drifted is None and result.unusual_drifted is None
    assert result.reason == "the window has 50 rows, fewer than min_window_rows=300"
    assert result.reconstruction_error is not None and result.domain_auc is not None


def test_an_empty_window_has_no_statistic(butterfly_profile) -> None:  # type: ignore[no-untyped-def]
    result = assess_multivariate(butterfly_profile, _butterfly(0, 4, 1.0), min_window_rows=1)
    assert result.reconstruction_error is None and result.domain_auc is None
    assert result.drifted is None and result.reason == "the window is empty"


def test_a_bad_false_alarm_rate_fails_before_any_work(butterfly_profile) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="false-alarm rate"):
        assess_multivariate(
            butterfly_profile, _butterfly(10, 4, 1.0), min_window_rows=1, false_alarm_rate=1.0
        )


def test_profile_rejects_a_tiny_reference_and_a_bad_rate() -> None:
    with pytest.raises(ValueError, match="at least 10 rows"):
        fit_multivariate(_butterfly(9, 0, 1.0), ["x1", "x2"], [])
    with pytest.raises(ValueError, match="unusual_rate"):
        fit_multivariate(_butterfly(100, 0, 1.0), ["x1", "x2"], [], unusual_rate=0.0)


def test_the_same_window_always_gets_the_same_answer(butterfly_profile) -> None:  # type: ignore[no-untyped-def]
    window = _butterfly(500, 5, 1.0)
    first = assess_multivariate(butterfly_profile, window, min_window_rows=300)
    again = assess_multivariate(butterfly_profile, window.copy(), min_window_rows=300)
    assert first == again


def test_cross_fitted_errors_describe_new_rows(butterfly_profile) -> None:  # type: ignore[no-untyped-def]
    """The out-of-fold reference errors match the errors of fresh rows: their mean is
    within 3 standard errors of the mean over 20,000 new rows."""
    fresh = butterfly_profile.row_scores(_butterfly(20_000, 6, 1.0)).score
    standard_error = butterfly_profile.error_sd * math.sqrt(1 / 20_000 + 1 / 2000)
    assert abs(fresh.mean() - butterfly_profile.error_mean) < 3 * standard_error
