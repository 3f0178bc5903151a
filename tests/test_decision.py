"""Per-feature decisions, the dataset drift score and the default rules' error rates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from exporter.config import FeatureRule
from exporter.data import synthetic
from exporter.domain import schema
from exporter.domain.drift_rules import DriftRule
from exporter.stats import decision, drift
from exporter.stats.decision import DEFAULT_MIN_WINDOW_ROWS, DEFAULT_RULES, assess

WINDOWS = 200
WINDOW_ROWS = 1000
#: References for the error-rate tests have more than 10,000 rows, which puts the KS
#: p-value in scipy's asymptotic regime and keeps the 200-window loops fast; the exact
#: regime (e.g. a 7,043-row reference) gives the same rates (module notes of
#: exporter.stats.decision) and is checked against scipy in test_drift.py.
RATE_REFERENCE_ROWS = 12_000


def _frame(n: int, seed: int, *, shift_sd: float = 0.0) -> pd.DataFrame:
    """Telco-like columns of our own: tenure with heavy ties, continuous charges,
    TotalCharges ~ tenure x charges (NaN at tenure 0), categoricals of 2-4 levels."""
    r = np.random.default_rng(seed)
    tenure = np.where(r.random(n) < 0.3, r.geometric(0.3, n), r.integers(0, 73, n)).clip(0, 72)
    fiber = r.random(n) < 0.44
    charges = np.clip(np.where(fiber, r.normal(90, 12, n), r.normal(50, 18, n)), 18.25, 118.75)
    charges = charges + shift_sd * 30.0
    total = np.where(tenure == 0, np.nan, tenure * charges * r.normal(1, 0.03, n))
    return pd.DataFrame(
        {
            "tenure": tenure,
            "MonthlyCharges": charges,
            "TotalCharges": total,
            "SeniorCitizen": (r.random(n) < 0.16).astype(int),
            "Contract": r.choice(
                ["Month-to-month", "One year", "Two year"], n, p=[0.55, 0.21, 0.24]
            ),
            "PaymentMethod": r.choice(["a", "b", "c", "d"], n, p=[0.34, 0.23, 0.22, 0.21]),
            "gender": r.choice(["Female", "Male"], n),
        }
    )


OWN_NUMERIC = ("tenure", "MonthlyCharges", "TotalCharges")
OWN_CATEGORICAL = ("SeniorCitizen", "Contract", "PaymentMethod", "gender")


def test_public_api_shape() -> None:
    fields = [f.name for f in dataclasses.fields(decision.FeatureDrift)]
    assert fields == [
        "feature", "kind", "n_current", "n_nan", "ks_statistic", "ks_pvalue", "psi",
        "wasserstein", "jensen_shannon", "method", "threshold", "statistic", "drifted",
        "reason", "bins", "reference_ratios", "current_ratios", "n_unseen",
    ]  # fmt: skip
    fields = [f.name for f in dataclasses.fields(decision.DatasetDrift)]
    assert fields == [
        "features", "score", "threshold", "drifted", "n_current", "n_reference", "decided",
        "reason",
    ]  # fmt: skip
    assert DEFAULT_RULES["numeric"] == DriftRule(method="ks", threshold=0.001)
    assert DEFAULT_RULES["categorical"] == DriftRule(method="jensenshannon", threshold=0.1)


@pytest.fixture(scope="module")
def own_profile() -> drift.ReferenceProfile:
    return drift.build_profile(_frame(RATE_REFERENCE_ROWS, seed=1), OWN_NUMERIC, OWN_CATEGORICAL)


def test_assess_reports_every_feature(own_profile: drift.ReferenceProfile) -> None:
    window = _frame(1000, seed=2)
    result = assess(own_profile, window, drift_threshold=0.25, min_window_rows=300)
    assert [f.feature for f in result.features] == [*OWN_NUMERIC, *OWN_CATEGORICAL]
    assert result.decided and result.reason is None
    assert (result.n_current, result.n_reference) == (1000, RATE_REFERENCE_ROWS)
    for f in result.features:
        assert f.n_current + f.n_nan == 1000
        assert len(f.bins) == len(f.reference_ratios) == len(f.current_ratios)
        assert sum(f.current_ratios) == pytest.approx(1.0)
        if f.kind == "numeric":
            assert None not in (f.ks_statistic, f.ks_pvalue, f.psi, f.wasserstein)
            assert f.jensen_shannon is None and f.method == "ks"
            assert f.statistic == f.ks_pvalue
        else:
            assert f.ks_statistic is None and f.wasserstein is None
            assert f.psi is not None and f.jensen_shannon is not None
            assert f.method == "jensenshannon" and f.statistic == f.jensen_shannon
            assert f.bins[-1] == drift.UNSEEN_LABEL
    total = result.feature("TotalCharges")
    assert total.n_nan == int(window["TotalCharges"].isna().sum()) > 0
    with pytest.raises(KeyError):
        result.feature("nope")


def test_small_window_is_not_decided_but_measured(own_profile: drift.ReferenceProfile) -> None:
    result = assess(own_profile, _frame(120, seed=3), drift_threshold=0.25, min_window_rows=300)
    assert not result.decided
    assert result.score is None and result.drifted is None
    assert result.reason == "the window has 120 rows, fewer than min_window_rows=300"
    for f in result.features:
        assert f.drifted is None and f.reason == result.reason
        assert f.psi is not None
    assert result.n_decided == 0 and result.drifted_features == ()


def test_empty_window(own_profile: drift.ReferenceProfile) -> None:
    empty = _frame(10, seed=3).iloc[:0]
    result = assess(own_profile, empty, drift_threshold=0.25, min_window_rows=1)
    assert not result.decided and result.reason.startswith("the window has 0 rows")
    for f in result.features:
        assert f.n_current == 0 and f.drifted is None
        assert (f.psi, f.ks_statistic, f.jensen_shannon) == (None, None, None)
        assert set(f.current_ratios) == {0.0}
    all_missing = pd.DataFrame({c: [None] * 5 for c in own_profile.features}, dtype=object)
    result = assess(own_profile, all_missing, drift_threshold=0.25, min_window_rows=1)
    assert not result.decided and result.reason == "no feature could be decided"
    assert all(f.n_nan == 5 and f.n_current == 0 for f in result.features)


def test_feature_gates(own_profile: drift.ReferenceProfile) -> None:
    window = _frame(400, seed=4).drop(columns=["gender"])
    window.loc[: len(window) // 2, "MonthlyCharges"] = np.nan
    result = assess(own_profile, window, drift_threshold=0.25, min_window_rows=300)
    charges = result.feature("MonthlyCharges")
    assert charges.drifted is None and "non-missing current values" in charges.reason
    assert charges.ks_pvalue is not None  # still measured
    gender = result.feature("gender")
    assert gender.drifted is None and gender.reason == "column missing from the current window"
    assert gender.n_nan == 400
    assert result.decided and result.n_decided == len(result.features) - 2


def test_score_is_the_share_of_decided_features_that_drifted(
    own_profile: drift.ReferenceProfile,
) -> None:
    window = _frame(1000, seed=5)
    window["MonthlyCharges"] += 30.0
    window["Contract"] = "Two year"
    result = assess(own_profile, window, drift_threshold=0.25, min_window_rows=300)
    assert set(result.drifted_features) == {"MonthlyCharges", "Contract"}
    assert result.score == pytest.approx(2 / 7)
    assert result.drifted is True
    exactly = assess(own_profile, window, drift_threshold=2 / 7, min_window_rows=300)
    assert exactly.drifted is False  # score > threshold, strictly


def test_rules_override_and_semantics(own_profile: drift.ReferenceProfile) -> None:
    window = _frame(1000, seed=6)
    rules = {
        "tenure": FeatureRule(method="psi", threshold=1e-9),
        "MonthlyCharges": FeatureRule(method="wasserstein", threshold=10.0),
        "TotalCharges": FeatureRule(method="ks", threshold=0.999999),
        "Contract": FeatureRule(method="psi", threshold=5.0),
    }
    result = assess(own_profile, window, rules=rules, drift_threshold=0.5, min_window_rows=300)
    tenure = result.feature("tenure")
    assert (tenure.method, tenure.statistic, tenure.drifted) == ("psi", tenure.psi, True)
    charges = result.feature("MonthlyCharges")
    assert (charges.statistic, charges.drifted) == (charges.wasserstein, False)
    total = result.feature("TotalCharges")  # p-value below the threshold: drifted
    assert total.drifted is (total.ks_pvalue < 0.999999)
    assert result.feature("Contract").threshold == 5.0
    assert decision.decide("ks", 0.05, 0.01) is True
    assert decision.decide("ks", 0.05, 0.05) is False
    assert decision.decide("psi", 0.2, 0.2) is False
    assert decision.decide("jensenshannon", 0.1, 0.3) is True
    assert decision.decide("psi", 0.2, None) is None


@pytest.mark.parametrize(
    ("feature", "method"),
    [("Contract", "ks"), ("gender", "wasserstein"), ("tenure", "jensenshannon")],
)
def test_rules_that_do_not_apply_are_rejected(
    own_profile: drift.ReferenceProfile, feature: str, method: str
) -> None:
    rules = {feature: FeatureRule(method=method, threshold=0.1)}
    with pytest.raises(ValueError, match=f"feature '{feature}': method '{method}'"):
        assess(own_profile, _frame(10, 1), rules=rules, drift_threshold=0.2, min_window_rows=1)
    with pytest.raises(ValueError, match="not a monitored feature"):
        decision.check_rules(["a"], ["b"], {"c": FeatureRule(method="psi", threshold=0.1)})


def test_compare_numeric_for_prediction_scores() -> None:
    r = np.random.default_rng(8)
    scores = drift.profile_numeric(r.beta(2, 5, 5000))
    same = decision.compare_numeric(scores, r.beta(2, 5, 800))
    assert same.feature == "value" and same.drifted is False and same.psi < 0.1
    moved = decision.compare_numeric(scores, r.beta(5, 2, 800), feature="score")
    assert moved.drifted is True and moved.ks_statistic > 0.5
    few = decision.compare_numeric(scores, [0.1, 0.2], min_rows=10)
    assert few.drifted is None and few.ks_pvalue is not None


# ------------------------------------------------------- false alarms and power


def _rates(profile: drift.ReferenceProfile, windows: list[pd.DataFrame]) -> dict[str, float]:
    flagged: dict[str, int] = dict.fromkeys(profile.features, 0)
    for window in windows:
        result = assess(
            profile, window, drift_threshold=0.25, min_window_rows=DEFAULT_MIN_WINDOW_ROWS
        )
        assert result.decided
        for f in result.features:
            flagged[f.feature] += bool(f.drifted)
    return {k: v / len(windows) for k, v in flagged.items()}


def _detection(profile: drift.NumericProfile, windows: list[pd.Series]) -> float:
    hits = [
        decision.compare_numeric(profile, w, min_rows=DEFAULT_MIN_WINDOW_ROWS).drifted
        for w in windows
    ]
    return sum(bool(h) for h in hits) / len(hits)


def test_false_alarms_and_detection_on_own_arrays(own_profile: drift.ReferenceProfile) -> None:
    big = _frame(WINDOWS * WINDOW_ROWS, seed=100)
    windows = [big.iloc[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS] for i in range(WINDOWS)]
    rates = _rates(own_profile, windows)
    assert max(rates.values()) <= 0.02, rates
    shifted = [
        w["MonthlyCharges"] + 0.5 * own_profile.numeric["MonthlyCharges"].std for w in windows
    ]
    assert _detection(own_profile.numeric["MonthlyCharges"], shifted) >= 0.95


@pytest.fixture(scope="module")
def telco() -> tuple[drift.ReferenceProfile, pd.DataFrame]:
    reference = synthetic.generate_customers(RATE_REFERENCE_ROWS, seed=2024)
    profile = drift.build_profile(reference, schema.NUMERIC_FEATURES, schema.CATEGORICAL_FEATURES)
    stream = synthetic.generate_customers(WINDOWS * WINDOW_ROWS, seed=2025, scenario="none")
    return profile, stream


def test_false_alarm_rate_on_the_generator(
    telco: tuple[drift.ReferenceProfile, pd.DataFrame],
) -> None:
    profile, stream = telco
    windows = [stream.iloc[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS] for i in range(WINDOWS)]
    rates = _rates(profile, windows)
    assert len(rates) == len(schema.FEATURES)
    assert max(rates.values()) <= 0.02, {k: v for k, v in rates.items() if v}


def test_false_alarm_rate_at_the_minimum_window(
    telco: tuple[drift.ReferenceProfile, pd.DataFrame],
) -> None:
    profile, stream = telco
    n = DEFAULT_MIN_WINDOW_ROWS
    windows = [stream.iloc[i * n : (i + 1) * n] for i in range(WINDOWS)]
    rates = _rates(profile, windows)
    assert max(rates.values()) <= 0.02, {k: v for k, v in rates.items() if v}


def test_half_sd_shift_of_monthly_charges_is_detected(
    telco: tuple[drift.ReferenceProfile, pd.DataFrame],
) -> None:
    profile, stream = telco
    charges = profile.numeric["MonthlyCharges"]
    shifted = [
        stream["MonthlyCharges"].iloc[i * WINDOW_ROWS : (i + 1) * WINDOW_ROWS] + 0.5 * charges.std
        for i in range(WINDOWS)
    ]
    assert _detection(charges, shifted) >= 0.95


def test_new_category_and_sudden_drift_are_flagged(
    telco: tuple[drift.ReferenceProfile, pd.DataFrame],
) -> None:
    profile, _ = telco
    window = synthetic.generate_customers(1000, seed=7, scenario="new_payment_method")
    result = assess(profile, window, drift_threshold=0.25, min_window_rows=DEFAULT_MIN_WINDOW_ROWS)
    payment = result.feature("PaymentMethod")
    assert payment.drifted and payment.n_unseen > 100
    assert payment.current_ratios[-1] == pytest.approx(payment.n_unseen / 1000)
    window = synthetic.generate_customers(1000, seed=7, scenario="sudden")
    result = assess(profile, window, drift_threshold=0.25, min_window_rows=DEFAULT_MIN_WINDOW_ROWS)
    assert {"tenure", "MonthlyCharges", "TotalCharges", "Contract"} <= set(result.drifted_features)
