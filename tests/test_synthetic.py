"""The synthetic Telco-like generator: schema, marginals, dependencies, churn, scenarios."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.compose import make_column_transformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from exporter.data.churn_relation import churn_probability
from exporter.data.synthetic import (
    _DONORS,
    NEW_PAYMENT_METHOD,
    NEW_PAYMENT_METHOD_SHARE,
    PRICE_INCREASE,
    generate_customers,
)
from exporter.domain import schema
from exporter.domain.scenarios import SCENARIOS

N = 20_000
FEATURES = list(schema.FEATURES)
INPUT_COLUMNS = [schema.ID_COLUMN, *FEATURES]

#: Shares in the public IBM export (7,043 rows).
REAL_SHARES = {
    ("gender", "Male"): 0.505,
    ("SeniorCitizen", 1): 0.162,
    ("Partner", "Yes"): 0.483,
    ("Dependents", "Yes"): 0.300,
    ("PhoneService", "Yes"): 0.903,
    ("MultipleLines", "Yes"): 0.422,
    ("InternetService", "DSL"): 0.344,
    ("InternetService", "Fiber optic"): 0.440,
    ("InternetService", "No"): 0.217,
    ("OnlineSecurity", "Yes"): 0.287,
    ("OnlineBackup", "Yes"): 0.345,
    ("DeviceProtection", "Yes"): 0.344,
    ("TechSupport", "Yes"): 0.290,
    ("StreamingTV", "Yes"): 0.384,
    ("StreamingMovies", "Yes"): 0.388,
    ("Contract", "Month-to-month"): 0.550,
    ("Contract", "One year"): 0.209,
    ("Contract", "Two year"): 0.241,
    ("PaperlessBilling", "Yes"): 0.592,
    ("PaymentMethod", "Electronic check"): 0.336,
    ("PaymentMethod", "Mailed check"): 0.229,
    ("PaymentMethod", "Bank transfer (automatic)"): 0.219,
    ("PaymentMethod", "Credit card (automatic)"): 0.216,
    ("Churn", "Yes"): 0.265,
}


@pytest.fixture(scope="module")
def none_df() -> pd.DataFrame:
    return generate_customers(N, seed=11)


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {s: generate_customers(N, seed=11, scenario=s) for s in SCENARIOS}


def _churn(df: pd.DataFrame) -> np.ndarray:
    return (df[schema.TARGET] == "Yes").to_numpy()


# ----------------------------------------------------------------- shape, dtypes


def test_columns_and_dtypes(none_df: pd.DataFrame) -> None:
    assert tuple(none_df.columns) == schema.ALL_COLUMNS
    assert len(none_df) == N
    assert none_df.index.equals(pd.RangeIndex(N))
    for column in ("SeniorCitizen", "tenure"):
        assert none_df[column].dtype == np.int64
    for column in ("MonthlyCharges", "TotalCharges"):
        assert none_df[column].dtype == np.float64
    for column in (*schema.CATEGORIES, schema.ID_COLUMN, schema.TARGET):
        assert pd.api.types.is_string_dtype(none_df[column].dtype), column


def test_empty_frame_has_columns_and_dtypes(none_df: pd.DataFrame) -> None:
    empty = generate_customers(0)
    assert empty.shape == (0, len(schema.ALL_COLUMNS))
    assert tuple(empty.columns) == schema.ALL_COLUMNS
    assert empty.dtypes.equals(none_df.dtypes)


def test_deterministic_by_seed() -> None:
    a = generate_customers(500, seed=3, scenario="gradual", progress=0.4)
    b = generate_customers(500, seed=3, scenario="gradual", progress=0.4)
    pd.testing.assert_frame_equal(a, b)
    c = generate_customers(500, seed=4, scenario="gradual", progress=0.4)
    assert not a[FEATURES].equals(c[FEATURES])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"unknown scenario 'nope'.*none, gradual, sudden"):
        generate_customers(10, scenario="nope")
    with pytest.raises(ValueError, match="valid scenarios"):
        churn_probability(generate_customers(3), scenario="nope")
    with pytest.raises(ValueError, match="progress"):
        generate_customers(10, scenario="gradual", progress=1.5)
    with pytest.raises(ValueError, match="non-negative"):
        generate_customers(-1)
    with pytest.raises(ValueError, match="tenure"):
        churn_probability(generate_customers(3).drop(columns="tenure"))


# --------------------------------------------------------------------------- IDs


def test_customer_ids_look_real_and_are_unique(none_df: pd.DataFrame) -> None:
    ids = none_df[schema.ID_COLUMN]
    assert ids.is_unique
    assert ids.map(lambda s: re.fullmatch(r"\d{4}-[A-Z]{5}", s) is not None).all()


def test_id_offset_batches_do_not_collide() -> None:
    first = generate_customers(1_000, seed=1, id_offset=0)
    second = generate_customers(1_000, seed=2, id_offset=1_000)
    assert not set(first[schema.ID_COLUMN]) & set(second[schema.ID_COLUMN])
    # The ID is a function of the global row index only.
    both = generate_customers(2_000, seed=9)[schema.ID_COLUMN].tolist()
    assert both == [*first[schema.ID_COLUMN], *second[schema.ID_COLUMN]]


# --------------------------------------------------------------- values, marginals


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "new_payment_method"])
def test_value_sets_are_the_schemas(frames: dict[str, pd.DataFrame], scenario: str) -> None:
    df = frames[scenario]
    for column, allowed in schema.CATEGORIES.items():
        assert set(df[column].unique()) == set(allowed), column
    assert set(df[schema.TARGET].unique()) == {"Yes", "No"}
    assert set(df["SeniorCitizen"].unique()) == {0, 1}
    assert df["tenure"].between(0, 72).all()
    assert df[FEATURES].drop(columns="TotalCharges").notna().all().all()


def test_numeric_ranges_without_drift(none_df: pd.DataFrame) -> None:
    low, high = schema.NUMERIC_RANGES["MonthlyCharges"]
    assert none_df["MonthlyCharges"].between(low, high).all()
    low, high = schema.NUMERIC_RANGES["TotalCharges"]
    assert none_df["TotalCharges"].dropna().between(low, high).all()


def test_marginals_close_to_the_real_data(none_df: pd.DataFrame) -> None:
    for (column, value), real in REAL_SHARES.items():
        share = (none_df[column] == value).mean()
        assert share == pytest.approx(real, abs=0.03), (column, value, share)
    tenure = none_df["tenure"]
    assert tenure.mean() == pytest.approx(32.4, abs=2.5)
    assert none_df["MonthlyCharges"].mean() == pytest.approx(64.8, abs=3.0)
    assert none_df["TotalCharges"].mean() == pytest.approx(2283, rel=0.1)


def test_tenure_is_bimodal_with_peaks_at_1_and_72(none_df: pd.DataFrame) -> None:
    counts = none_df["tenure"].value_counts()
    typical = counts.loc[10:60].median()
    assert counts[1] > 5 * typical
    assert counts[72] > 3 * typical
    assert counts[1] / N == pytest.approx(0.087, abs=0.02)
    assert counts[72] / N == pytest.approx(0.051, abs=0.015)
    assert 0 < counts.get(0, 0) < 0.01 * N


def test_charges_follow_services(none_df: pd.DataFrame) -> None:
    by_net = none_df.groupby("InternetService")["MonthlyCharges"]
    means = by_net.mean()
    assert means["No"] == pytest.approx(21, abs=3)
    assert 40 <= means["DSL"] <= 80
    assert 70 <= means["Fiber optic"] <= 115
    assert by_net.min()["Fiber optic"] > by_net.max()["No"]


# -------------------------------------------------------------------- dependencies


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_services_are_consistent(frames: dict[str, pd.DataFrame], scenario: str) -> None:
    df = frames[scenario]
    no_net = df["InternetService"] == "No"
    for addon in schema.INTERNET_ADDONS:
        assert ((df[addon] == schema.NO_INTERNET) == no_net).all(), addon
    no_phone = df["PhoneService"] == "No"
    assert ((df["MultipleLines"] == schema.NO_PHONE) == no_phone).all()
    assert (df.loc[no_phone, "InternetService"] == "DSL").all()


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "correlation"])
def test_total_charges_track_tenure_times_monthly(
    frames: dict[str, pd.DataFrame], scenario: str
) -> None:
    df = frames[scenario]
    assert (df["TotalCharges"].isna() == (df["tenure"] == 0)).all()
    billed = df[df["tenure"] > 0]
    ratio = billed["TotalCharges"] / (billed["tenure"] * billed["MonthlyCharges"])
    assert ratio.between(0.84, 1.16).all()
    assert ratio.mean() == pytest.approx(1.0, abs=0.01)
    one_month = df[df["tenure"] == 1]
    assert np.allclose(one_month["TotalCharges"], one_month["MonthlyCharges"])


def test_contracts_lengthen_with_tenure(none_df: pd.DataFrame) -> None:
    short = none_df[none_df["tenure"] <= 12]["Contract"].value_counts(normalize=True)
    long = none_df[none_df["tenure"] >= 60]["Contract"].value_counts(normalize=True)
    assert short["Month-to-month"] > 0.7
    assert long["Two year"] > 0.5
    assert long["Month-to-month"] < 0.2


# --------------------------------------------------------------------------- churn


def test_churn_rate(none_df: pd.DataFrame) -> None:
    assert _churn(none_df).mean() == pytest.approx(0.265, abs=0.02)


@pytest.mark.parametrize(
    ("column", "risky", "safe"),
    [
        ("Contract", "Month-to-month", "Two year"),
        ("Contract", "Month-to-month", "One year"),
        ("InternetService", "Fiber optic", "DSL"),
        ("PaymentMethod", "Electronic check", "Credit card (automatic)"),
        ("PaymentMethod", "Electronic check", "Mailed check"),
        ("OnlineSecurity", "No", "Yes"),
        ("TechSupport", "No", "Yes"),
        ("SeniorCitizen", 1, 0),
    ],
)
def test_churn_is_more_likely_for_risky_groups(
    none_df: pd.DataFrame, column: str, risky: object, safe: object
) -> None:
    rate = pd.Series(_churn(none_df)).groupby(none_df[column].to_numpy()).mean()
    assert rate[risky] > rate[safe] + 0.05


def test_churn_falls_with_tenure_and_rises_with_charges(none_df: pd.DataFrame) -> None:
    churn = pd.Series(_churn(none_df))
    assert churn[none_df["tenure"] <= 6].mean() > 2 * churn[none_df["tenure"] >= 48].mean()
    churners = none_df[_churn(none_df)]
    stayers = none_df[~_churn(none_df)]
    assert churners["MonthlyCharges"].mean() > stayers["MonthlyCharges"].mean() + 5


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_labels_are_drawn_from_churn_probability(
    frames: dict[str, pd.DataFrame], scenario: str
) -> None:
    """Calibration by decile: the published P(churn|x) is the one the labels follow."""
    df = frames[scenario]
    p = churn_probability(df, scenario)
    assert p.shape == (N,)
    assert ((p > 0) & (p < 1)).all()
    assert not (p.round() == _churn(df)).all()  # Bernoulli, not a deterministic rule
    deciles = pd.qcut(p, 10, labels=False, duplicates="drop")
    observed = pd.Series(_churn(df)).groupby(deciles).mean()
    expected = pd.Series(p).groupby(deciles).mean()
    assert np.abs(observed - expected).max() < 0.05


def test_churn_relation_is_the_same_under_covariate_shift(
    frames: dict[str, pd.DataFrame],
) -> None:
    for scenario in ("gradual", "sudden", "new_payment_method", "correlation", "mix"):
        x = frames[scenario][FEATURES]
        np.testing.assert_array_equal(churn_probability(x, scenario), churn_probability(x))
    concept = churn_probability(frames["none"], "concept")
    assert not np.allclose(concept, churn_probability(frames["none"]))


# ----------------------------------------------------------------------- scenarios


def test_gradual_interpolates_between_none_and_sudden(frames: dict[str, pd.DataFrame]) -> None:
    at_zero = generate_customers(N, seed=11, scenario="gradual", progress=0.0)
    at_one = generate_customers(N, seed=11, scenario="gradual", progress=1.0)
    pd.testing.assert_frame_equal(at_zero, frames["none"])
    pd.testing.assert_frame_equal(at_one, frames["sudden"])
    half = generate_customers(N, seed=11, scenario="gradual", progress=0.5)
    steps = [frames["none"], half, frames["sudden"]]
    charges = [d["MonthlyCharges"].mean() for d in steps]
    tenure = [d["tenure"].mean() for d in steps]
    m2m = [(d["Contract"] == "Month-to-month").mean() for d in steps]
    assert charges[0] < charges[1] < charges[2]
    assert tenure[0] > tenure[1] > tenure[2]
    assert m2m[0] < m2m[1] < m2m[2]


def test_sudden_shifts_charges_tenure_and_contracts(frames: dict[str, pd.DataFrame]) -> None:
    none, sudden = frames["none"], frames["sudden"]
    ratio = sudden["MonthlyCharges"].mean() / none["MonthlyCharges"].mean()
    # Prices rise by PRICE_INCREASE; the shorter-tenure mix buys fewer add-ons.
    assert 1.08 < ratio <= 1 + PRICE_INCREASE + 0.01
    assert sudden["tenure"].mean() < none["tenure"].mean() - 5
    m2m = (sudden["Contract"] == "Month-to-month").mean()
    assert m2m > (none["Contract"] == "Month-to-month").mean() + 0.1
    # Same relation, riskier population: more churn.
    assert _churn(sudden).mean() > _churn(none).mean() + 0.03


def test_new_payment_method_only_adds_an_unseen_value(frames: dict[str, pd.DataFrame]) -> None:
    none, new = frames["none"], frames["new_payment_method"]
    wallet = new["PaymentMethod"] == NEW_PAYMENT_METHOD
    assert NEW_PAYMENT_METHOD not in schema.CATEGORIES["PaymentMethod"]
    assert wallet.mean() == pytest.approx(NEW_PAYMENT_METHOD_SHARE, abs=0.015)
    assert set(new["PaymentMethod"].unique()) == {
        *schema.CATEGORIES["PaymentMethod"],
        NEW_PAYMENT_METHOD,
    }
    others = [c for c in INPUT_COLUMNS if c != "PaymentMethod"]
    pd.testing.assert_frame_equal(new[others], none[others])
    assert (new.loc[~wallet, "PaymentMethod"] == none.loc[~wallet, "PaymentMethod"]).all()


def test_concept_keeps_inputs_and_changes_labels(frames: dict[str, pd.DataFrame]) -> None:
    none, concept = frames["none"], frames["concept"]
    pd.testing.assert_frame_equal(concept[INPUT_COLUMNS], none[INPUT_COLUMNS])
    assert _churn(concept).mean() == pytest.approx(0.265, abs=0.03)
    assert (_churn(concept) != _churn(none)).mean() > 0.2
    rate = pd.Series(_churn(concept)).groupby(concept["Contract"].to_numpy()).mean()
    assert rate["Two year"] > rate["Month-to-month"]
    long = concept["tenure"] >= 48
    assert _churn(concept)[long].mean() > _churn(concept)[~long].mean()


# ------------------------------------------------------- joint drift, same marginals

#: The scenarios that move the joint distribution only, and the column each one
#: takes from an independent `none` donor.
JOINT = {"correlation": "TotalCharges", "mix": "PaymentMethod"}


def _frequency_p_value(a: pd.Series, b: pd.Series) -> float:
    """Chi-square test that two samples have the same category frequencies."""
    sample = np.repeat([0, 1], [len(a), len(b)])
    table = pd.crosstab(sample, pd.concat([a, b]).astype(str).to_numpy())
    return float(stats.chi2_contingency(table).pvalue)


def _charges_correlation(df: pd.DataFrame) -> float:
    """Pearson correlation of TotalCharges with tenure × MonthlyCharges (billed rows)."""
    billed = df.dropna(subset=["TotalCharges"])
    product = billed["tenure"] * billed["MonthlyCharges"]
    return float(np.corrcoef(billed["TotalCharges"], product)[0, 1])


def _cramers_v(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Cramér's V of two categorical columns and the independence test's p-value."""
    table = pd.crosstab(a.to_numpy(), b.to_numpy())
    result = stats.chi2_contingency(table, correction=False)
    v = np.sqrt(result.statistic / (table.to_numpy().sum() * (min(table.shape) - 1)))
    return float(v), float(result.pvalue)


@pytest.fixture(scope="module")
def other_none() -> pd.DataFrame:
    """A `none` sample sharing no draws with seed 11 (the `frames` seed, whose main
    stream the joint scenarios share with `none`)."""
    return generate_customers(N, seed=12)


@pytest.mark.parametrize("scenario", JOINT)
def test_joint_scenarios_keep_every_marginal(
    frames: dict[str, pd.DataFrame], other_none: pd.DataFrame, scenario: str
) -> None:
    df = frames[scenario]
    for column in FEATURES:
        if column in schema.NUMERIC_FEATURES:
            p = stats.ks_2samp(df[column].dropna(), other_none[column].dropna()).pvalue
        else:
            p = _frequency_p_value(df[column], other_none[column])
        assert p > 0.001, (column, p)
    # The blank TotalCharges is part of the marginal too.
    p = _frequency_p_value(df["TotalCharges"].isna(), other_none["TotalCharges"].isna())
    assert p > 0.001, p


@pytest.mark.parametrize(("scenario", "donor_column"), JOINT.items())
def test_joint_scenarios_replace_only_the_donor_column(
    frames: dict[str, pd.DataFrame], scenario: str, donor_column: str
) -> None:
    none, df = frames["none"], frames[scenario]
    others = [c for c in INPUT_COLUMNS if c != donor_column]
    pd.testing.assert_frame_equal(df[others], none[others])
    changed = (df[donor_column] != none[donor_column]).mean()
    assert changed > (0.99 if donor_column == "TotalCharges" else 0.6), changed


def test_correlation_decouples_total_charges_from_tenure_and_monthly(
    frames: dict[str, pd.DataFrame],
) -> None:
    none, df = frames["none"], frames["correlation"]
    assert _charges_correlation(none) > 0.95
    assert abs(_charges_correlation(df)) < 0.05
    billed = df.dropna(subset=["TotalCharges"])
    for column in ("tenure", "MonthlyCharges"):
        assert abs(np.corrcoef(billed["TotalCharges"], billed[column])[0, 1]) < 0.05, column
    # The blank no longer marks the first month: it is the donor's.
    assert ((df["TotalCharges"].isna()) != (df["tenure"] == 0)).sum() > 10
    # TotalCharges is not an input of the churn relation: the labels are none's.
    np.testing.assert_array_equal(_churn(df), _churn(none))


def test_mix_breaks_the_contract_payment_method_link(frames: dict[str, pd.DataFrame]) -> None:
    none, df = frames["none"], frames["mix"]
    v_none, p_none = _cramers_v(none["Contract"], none["PaymentMethod"])
    v_mix, _ = _cramers_v(df["Contract"], df["PaymentMethod"])
    assert p_none < 1e-100  # measured V about 0.28 at 20,000 rows
    assert v_none > 0.2
    assert v_mix < 0.05
    v_paperless, _ = _cramers_v(df["PaperlessBilling"], df["PaymentMethod"])
    assert v_paperless < 0.05  # 0.25 under none
    # Paying automatically no longer goes with a long tenure.
    automatic = df["PaymentMethod"].str.contains("automatic").to_numpy()
    assert abs(df["tenure"][automatic].mean() - df["tenure"][~automatic].mean()) < 2
    automatic = none["PaymentMethod"].str.contains("automatic").to_numpy()
    assert none["tenure"][automatic].mean() > none["tenure"][~automatic].mean() + 15


@pytest.mark.parametrize("scenario", JOINT)
def test_joint_scenarios_are_deterministic_and_work_row_by_row(
    none_df: pd.DataFrame, scenario: str
) -> None:
    column = JOINT[scenario]
    a = generate_customers(300, seed=5, scenario=scenario)
    pd.testing.assert_frame_equal(a, generate_customers(300, seed=5, scenario=scenario))
    b = generate_customers(300, seed=6, scenario=scenario)
    assert not a[column].equals(b[column])
    one = generate_customers(1, seed=5, scenario=scenario, id_offset=7)
    assert tuple(one.columns) == schema.ALL_COLUMNS and len(one) == 1
    assert one.dtypes.equals(none_df.dtypes)
    pd.testing.assert_frame_equal(
        one, generate_customers(1, seed=5, scenario=scenario, id_offset=7)
    )
    empty = generate_customers(0, seed=5, scenario=scenario)
    assert empty.dtypes.equals(none_df.dtypes) and len(empty) == 0


def _one_row_batches(scenario: str, count: int = 300) -> pd.DataFrame:
    """`count` customers generated one per call, as the simulator does at low rates."""
    batches = [generate_customers(1, seed=s, scenario=scenario, id_offset=s) for s in range(count)]
    return pd.concat(batches, ignore_index=True)


def test_one_row_batches_of_correlation_are_decoupled() -> None:
    assert _charges_correlation(_one_row_batches("none")) > 0.95
    assert abs(_charges_correlation(_one_row_batches("correlation"))) < 0.2


def test_one_row_batches_of_mix_are_independent() -> None:
    none, mix = _one_row_batches("none"), _one_row_batches("mix")
    assert _cramers_v(none["Contract"], none["PaymentMethod"])[1] < 0.001
    assert _cramers_v(mix["Contract"], mix["PaymentMethod"])[1] > 0.001


@pytest.mark.parametrize("scenario", JOINT)
def test_donor_stream_is_not_another_seeds_stream(scenario: str) -> None:
    """The donor comes from ``SeedSequence(seed, spawn_key=(key,))``: not the seed's
    own main stream, nor a nearby seed's (``seed + 1``), nor the entropy list
    ``[seed, key]``, which is the main stream of the plain seed ``seed + key * 2**32``."""
    column, key = _DONORS[scenario]
    seed = 5
    donor = generate_customers(200, seed=seed, scenario=scenario)[column]
    candidates = [*range(0, 12), seed + key * 2**32, seed + 2**32]
    for other in candidates:
        assert not donor.equals(generate_customers(200, seed=other)[column]), other


# ------------------------------------------------------------------ model quality


def _model():
    numeric = list(schema.MODEL_NUMERIC_FEATURES)
    categorical = [c for c in FEATURES if c not in numeric]
    return make_pipeline(
        make_column_transformer(
            (OneHotEncoder(handle_unknown="ignore"), categorical),
            (StandardScaler(), numeric),
        ),
        LogisticRegression(max_iter=1_000),
    )


def _xy(df: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    return df[FEATURES].fillna({"TotalCharges": 0.0}), _churn(df).astype(int)


def test_logistic_regression_is_realistic_and_concept_drift_hurts_it() -> None:
    x, y = _xy(generate_customers(5_000, seed=21))
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    model = _model().fit(x_train, y_train)
    auc = roc_auc_score(y_test, model.predict_proba(x_test)[:, 1])
    assert 0.78 <= auc <= 0.88

    x_none, y_none = _xy(generate_customers(5_000, seed=22, id_offset=5_000))
    x_concept, y_concept = _xy(
        generate_customers(5_000, seed=22, scenario="concept", id_offset=5_000)
    )
    pd.testing.assert_frame_equal(x_none, x_concept)
    accuracy_none = accuracy_score(y_none, model.predict(x_none))
    accuracy_concept = accuracy_score(y_concept, model.predict(x_concept))
    assert accuracy_none - accuracy_concept > 0.05
