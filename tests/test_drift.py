"""The drift statistics against scipy, a plain numpy PSI and hand-computed cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon as scipy_js

from exporter.stats import drift
from exporter.stats.drift import ks

EPS = drift.PSI_EPSILON


def scipy_ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # scipy's exact -> asymp fallback
        res = stats.ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


def finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


def assert_ks_matches(a: np.ndarray, b: np.ndarray) -> drift.KSResult:
    ours = drift.ks_2samp(a, b)
    assert ours is not None
    d, p = scipy_ks(finite(a), finite(b))
    assert abs(ours.statistic - d) <= 1e-12
    assert ours.pvalue == pytest.approx(p, rel=1e-9, abs=1e-300)
    return ours


def assert_w_matches(a: np.ndarray, b: np.ndarray) -> None:
    ours = drift.wasserstein(a, b, normalize=False)
    ref = stats.wasserstein_distance(finite(a), finite(b))
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-300)
    std = float(np.std(finite(a)))
    normalized = drift.wasserstein(a, b)
    assert normalized == pytest.approx(ref / std if std > 0 else ref, rel=1e-9, abs=1e-300)


def numpy_psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """Straightforward PSI: np.quantile edges, np.histogram counts, the documented rules."""
    ref, cur = finite(ref), finite(cur)
    edges = np.unique(np.quantile(ref, np.arange(1, bins) / bins, method="inverted_cdf"))
    edges = edges[edges < ref.max()]
    if edges.size == 0:
        edges = np.array([np.nextafter(ref.max(), -np.inf), ref.max()])
    full = np.concatenate(([-np.inf], edges, [np.inf]))
    # np.histogram bins are [a, b); ours are (a, b]: histogram the negated values.
    ref_counts = np.histogram(-ref, bins=-full[::-1])[0][::-1]
    cur_counts = np.histogram(-cur, bins=-full[::-1])[0][::-1]
    p = (ref_counts / ref.size + EPS) / (1 + EPS * ref_counts.size)
    q = (cur_counts / cur.size + EPS) / (1 + EPS * cur_counts.size)
    return float(np.sum((q - p) * np.log(q / p)))


# ------------------------------------------------------------------ scipy parity

RNG = np.random.default_rng(20240601)


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    r = np.random.default_rng(7)
    ints = lambda lo, hi, n: r.integers(lo, hi, n).astype(float)  # noqa: E731
    return [
        ("normal", r.normal(size=300), r.normal(0.2, 1.1, size=250)),
        ("equal sizes", r.normal(size=400), r.normal(size=400)),
        ("ties", ints(0, 5, 200), ints(0, 6, 150)),
        ("ties equal sizes", ints(0, 73, 500), ints(0, 73, 500)),
        ("tenure-like many ties", ints(0, 73, 7000), ints(0, 73, 1000)),
        ("heavy tails", r.standard_cauchy(500), r.standard_cauchy(400)),
        ("lognormal", r.lognormal(0, 2, 300), r.lognormal(0.1, 2, 300)),
        ("one value each", np.array([1.0]), np.array([2.0])),
        ("one vs many", np.array([0.5]), r.normal(size=50)),
        ("two vs three", np.array([1.0, 2.0]), np.array([2.0, 2.0, 3.0])),
        ("disjoint", r.normal(size=100), r.normal(size=90) + 100),
        ("identical", np.arange(50.0), np.arange(50.0)),
        ("constant vs constant", np.full(30, 3.0), np.full(20, 3.0)),
        ("constant vs other", np.full(30, 3.0), np.full(20, 4.0)),
        ("nan inside", np.append(r.normal(size=100), [np.nan] * 5), r.normal(size=80)),
        ("inf inside", np.append(r.normal(size=100), [np.inf, -np.inf]), r.normal(size=80)),
        ("large offset", 1e6 + r.normal(size=200), 1e6 + r.normal(size=200)),
        ("exact regime, unequal", r.normal(size=3000), r.normal(0.05, 1, size=2000)),
        ("exact regime at 10000", r.normal(size=10000), r.normal(0.03, 1, size=10000)),
        ("asymptotic", r.normal(size=20000), r.normal(0.02, 1, size=3000)),
        ("asymptotic, equal", r.normal(size=15000), r.normal(0.01, 1, size=15000)),
    ]


@pytest.mark.parametrize(("name", "a", "b"), _cases(), ids=[c[0] for c in _cases()])
def test_ks_and_wasserstein_match_scipy(name: str, a: np.ndarray, b: np.ndarray) -> None:
    assert_ks_matches(a, b)
    assert_ks_matches(b, a)
    assert_w_matches(a, b)
    assert_w_matches(b, a)


def test_ks_uses_scipys_regimes() -> None:
    r = np.random.default_rng(3)
    small = drift.ks_2samp(r.normal(size=500), r.normal(size=400))
    assert small is not None and small.method == "exact"
    big = drift.ks_2samp(r.normal(size=10001), r.normal(size=400))
    assert big is not None and big.method == "asymp"


def test_without_scipys_private_exact_helper(monkeypatch: pytest.MonkeyPatch) -> None:
    r = np.random.default_rng(4)
    a, b = r.normal(size=300), r.normal(0.3, 1, size=200)
    exact = drift.ks_2samp(a, b)
    monkeypatch.setattr(ks, "_scipy_attempt_exact", None)
    fallback = drift.ks_2samp(a, b)
    assert exact is not None and fallback is not None
    assert fallback.method == "asymp" and fallback.statistic == exact.statistic
    assert fallback.pvalue == pytest.approx(exact.pvalue, rel=0.5)


@pytest.mark.parametrize(
    ("n", "nxsq"), [(4000, 2.2), (5000, 3.0), (8000, 10.0), (12000, 40.0), (20000, 150.0)]
)
def test_fast_smirnov_branch_matches_kstwo(n: int, nxsq: float) -> None:
    x = math.sqrt(nxsq / n)
    assert ks.kstwo_sf(x, n) == pytest.approx(stats.kstwo.sf(x, n), rel=1e-11)


def test_ks_pvalue_in_smirnov_branch_matches_scipy() -> None:
    # 12000 x 12000: asymptotic, en = 6000, and D in the 2.2 <= n D^2 < 370 band.
    r = np.random.default_rng(11)
    a, b = r.normal(size=12000), r.normal(0.06, 1, size=12000)
    ours = assert_ks_matches(a, b)
    assert ours.method == "asymp" and 1e-100 < ours.pvalue < 0.02


def test_random_inputs_match_scipy() -> None:
    r = np.random.default_rng(5)
    for _ in range(300):
        n1, n2 = (int(v) for v in r.integers(1, 80, size=2))
        pools = [r.normal(size=20), np.arange(5.0), r.standard_cauchy(40)]
        values = pools[int(r.integers(3))]
        a = r.choice(values, n1) if r.random() < 0.5 else r.normal(size=n1)
        b = r.choice(values, n2) + (r.random() < 0.3) * r.normal()
        assert_ks_matches(a, b)
        assert_w_matches(a, b)


# ------------------------------------------------------------------------- PSI


@pytest.mark.parametrize(("name", "a", "b"), _cases(), ids=[c[0] for c in _cases()])
@pytest.mark.parametrize("bins", [2, 10, 20])
def test_numeric_psi_matches_numpy(name: str, a: np.ndarray, b: np.ndarray, bins: int) -> None:
    assert drift.psi(a, b, bins=bins) == pytest.approx(numpy_psi(a, b, bins), rel=1e-12, abs=1e-15)


def test_psi_hand_computed() -> None:
    # Median of [1, 2, 3, 4] (inverted CDF) is 2: bins (-inf, 2] and (2, +inf).
    ref = np.array([1.0, 2.0, 3.0, 4.0])
    cur = np.array([1.0, 1.0, 1.0, 3.0])
    k = 2
    p = [(0.5 + EPS) / (1 + k * EPS)] * 2
    q = [(0.75 + EPS) / (1 + k * EPS), (0.25 + EPS) / (1 + k * EPS)]
    expected = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert drift.psi(ref, cur, bins=2) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.25 * math.log(3), rel=1e-3)

    profile = drift.profile_numeric(ref, psi_bins=2)
    assert profile.bin_labels == ("1 (-inf, 2]", "2 (2, +inf)")
    assert profile.bin_ratios.tolist() == [0.5, 0.5]


def test_psi_formula_and_smoothing() -> None:
    # An empty current bin: the term is finite, bounded by about ln(1 / eps).
    value = drift.psi_from_counts([50, 50], [100, 0])
    p = (0.5 + EPS) / (1 + 2 * EPS)
    q1, q2 = (1 + EPS) / (1 + 2 * EPS), EPS / (1 + 2 * EPS)
    assert value == pytest.approx((q1 - p) * math.log(q1 / p) + (q2 - p) * math.log(q2 / p))
    assert drift.psi_from_counts([3, 1], [3, 1]) == 0.0
    # Symmetric rule: swapping the distributions gives the same PSI.
    assert drift.psi_from_counts([1, 9], [9, 1]) == pytest.approx(
        drift.psi_from_counts([9, 1], [1, 9])
    )
    with pytest.raises(ValueError):
        drift.psi_from_counts([0, 0], [1, 1])


def test_bins_with_ties_are_never_empty_in_the_reference() -> None:
    r = np.random.default_rng(1)
    tenure = np.concatenate(
        [np.zeros(100), np.ones(2000), r.integers(2, 72, 5000), np.full(900, 72)]
    )
    for bins in (2, 5, 10, 50):
        profile = drift.profile_numeric(tenure, bins)
        assert (profile.bin_counts > 0).all()
        assert profile.n_bins <= bins
        assert len(set(profile.bin_labels)) == profile.n_bins
        assert profile.bin_counts.sum() == tenure.size


def test_constant_reference_gets_three_bins() -> None:
    profile = drift.profile_numeric(np.full(50, 5.0))
    assert profile.bin_labels == ("1 (-inf, 5)", "2 [5, 5]", "3 (5, +inf)")
    assert profile.bin_ratios.tolist() == [0.0, 1.0, 0.0]
    assert drift.numeric_stats(profile, [5.0] * 10).psi == 0.0
    below = drift.numeric_stats(profile, [4.0] * 10).psi
    above = drift.numeric_stats(profile, [6.0] * 10).psi
    assert below == pytest.approx(above) and 15 < below < 20
    # Mostly the maximum: bins below, at and above the maximum.
    mostly_top = drift.profile_numeric(np.append(np.full(95, 9.0), np.arange(5.0)))
    assert mostly_top.bin_labels == ("1 (-inf, 9)", "2 [9, 9]", "3 (9, +inf)")
    assert mostly_top.bin_ratios.tolist() == [0.05, 0.95, 0.0]


def test_numeric_labels_are_short_and_distinct() -> None:
    values = np.array([1.0000001, 1.0000002, 1.0000003, 1.0000004, 2.0])
    profile = drift.profile_numeric(values, psi_bins=5)
    assert len(set(profile.bin_labels)) == profile.n_bins
    assert all(len(label) < 60 for label in profile.bin_labels)
    labels = drift.profile_numeric(np.arange(100.0)).bin_labels
    assert labels[0] == "01 (-inf, 9]" and labels[-1] == "10 (89, +inf)"
    assert sorted(labels) == list(labels)  # text order is bin order


# ----------------------------------------------------------------- categorical


def test_categorical_profile_and_psi_hand_computed() -> None:
    ref = pd.Series(["a"] * 6 + ["b"] * 3 + ["c"] + [None, np.nan])
    profile = drift.profile_categorical(ref)
    assert profile.categories == ("a", "b", "c")
    assert profile.bin_labels == ("a", "b", "c", drift.UNSEEN_LABEL)
    assert profile.n == 10 and profile.n_nan == 2
    assert profile.bin_ratios.tolist() == [0.6, 0.3, 0.1, 0.0]

    cur = pd.Series(["a"] * 5 + ["c"] * 3 + ["z"] * 2 + [None])
    s = drift.categorical_stats(profile, cur)
    assert (s.n, s.n_nan, s.n_unseen) == (10, 1, 2)
    assert s.current_ratios.tolist() == [0.5, 0.0, 0.3, 0.2]
    k = 4
    p = [(v + EPS) / (1 + k * EPS) for v in (0.6, 0.3, 0.1, 0.0)]
    q = [(v + EPS) / (1 + k * EPS) for v in (0.5, 0.0, 0.3, 0.2)]
    expected = sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True))
    assert s.psi == pytest.approx(expected, rel=1e-12)
    assert s.jensen_shannon == pytest.approx(
        scipy_js([0.6, 0.3, 0.1, 0.0], [0.5, 0.0, 0.3, 0.2], base=2), rel=1e-12
    )


@pytest.mark.parametrize("seed", range(20))
def test_jensen_shannon_matches_scipy(seed: int) -> None:
    r = np.random.default_rng(seed)
    levels = np.array(["x", "y", "z", "w", "v"])
    ref = r.choice(levels[: r.integers(1, 5)], size=int(r.integers(1, 300)))
    cur = r.choice(levels, size=int(r.integers(1, 300)), p=r.dirichlet(np.ones(5)))
    profile = drift.profile_categorical(ref)
    s = drift.categorical_stats(profile, cur)
    ref_counts = np.append(profile.counts, 0)
    assert s.jensen_shannon == pytest.approx(
        scipy_js(ref_counts, s.current_counts, base=2), abs=1e-12
    )
    assert 0.0 <= s.jensen_shannon <= 1.0
    assert drift.jensen_shannon(ref, cur) == s.jensen_shannon


def test_categories_compare_across_int_float_and_string() -> None:
    profile = drift.profile_categorical(pd.Series([0, 1, 1, 0, 0], dtype="int64"))
    assert profile.categories == ("0", "1")
    as_float = pd.Series([0.0, 1.0, np.nan, 1.0, 0.0, 0.0])  # an int column after a NaN
    as_text = pd.Series(["0", "1", "1", "0", "0"])
    for cur in (as_float, as_text, np.array([0, 1, 1, 0, 0], dtype=np.int8)):
        s = drift.categorical_stats(profile, cur)
        assert s.n_unseen == 0
        assert s.current_ratios[-1] == 0.0
    s = drift.categorical_stats(profile, pd.Series([0.5, 2, "Yes"], dtype=object))
    assert s.n_unseen == 3
    assert drift.category_keys([True, 1.5, 3.0, None]) == {"True": 1, "1.5": 1, "3": 1}
    assert drift.category_keys(pd.Series(["a", "b", "a", None], dtype="category")) == {
        "a": 2,
        "b": 1,
    }
    assert drift.category_keys(pd.Series([1, 2, None], dtype="Int64")) == {"1": 1, "2": 1}
    assert drift.category_keys(pd.Series([True, False, True])) == {"True": 2, "False": 1}


def test_long_category_labels_are_shortened_and_unique() -> None:
    long_a, long_b = "x" * 60 + "a", "x" * 60 + "b"
    profile = drift.profile_categorical([long_a, long_a, long_b, drift.UNSEEN_LABEL])
    assert len(set(profile.bin_labels)) == profile.n_bins == 4
    assert all(len(label) <= drift.MAX_LABEL_CHARS + 3 for label in profile.bin_labels)
    assert profile.categories[0] == long_a  # matching still uses the full value
    at = profile.categories.index(long_b)
    assert drift.categorical_stats(profile, [long_b]).current_ratios[at] == 1.0
    # A reference category spelled like the unseen label still gets its own bin.
    assert profile.bin_labels[-1] == drift.UNSEEN_LABEL
    assert drift.categorical_stats(profile, [drift.UNSEEN_LABEL]).n_unseen == 0


# ---------------------------------------------------------------- edge cases


def test_empty_current_window() -> None:
    profile = drift.profile_numeric(np.arange(10.0))
    for empty in ([], [np.nan, np.nan], [np.inf]):
        s = drift.numeric_stats(profile, np.array(empty, dtype=float))
        assert (s.ks, s.psi, s.wasserstein) == (None, None, None)
        assert s.n == 0 and s.n_nan == len(empty)
        assert s.current_ratios.tolist() == [0.0] * profile.n_bins
    cat = drift.profile_categorical(["a", "b"])
    s = drift.categorical_stats(cat, pd.Series([], dtype=object))
    assert (s.psi, s.jensen_shannon, s.n) == (None, None, 0)
    assert drift.ks_2samp([1.0], []) is None
    assert drift.wasserstein([], [1.0]) is None


def test_empty_reference() -> None:
    profile = drift.profile_numeric([np.nan, np.nan])
    assert profile.n == 0 and profile.n_nan == 2 and profile.std is None
    assert profile.bin_labels == ()
    s = drift.numeric_stats(profile, [1.0, 2.0])
    assert (s.ks, s.psi, s.wasserstein) == (None, None, None) and s.n == 2
    cat = drift.profile_categorical([None])
    assert drift.categorical_stats(cat, ["a"]).psi is None


def test_missing_values_are_excluded_and_counted() -> None:
    raw = pd.Series([1.0, np.nan, 2.0, np.inf, -np.inf, 3.0])
    profile = drift.profile_numeric(raw)
    assert (profile.n, profile.n_nan) == (3, 3)
    assert profile.sorted_values.tolist() == [1.0, 2.0, 3.0]
    # Telco's blank TotalCharges and other unparsable strings count as missing.
    text = pd.Series(["29.85", " ", "1889.5", None, "abc"], dtype=object)
    s = drift.numeric_stats(profile, text)
    assert (s.n, s.n_nan) == (2, 3)
    nullable = pd.Series([1, None, 3], dtype="Int64")
    assert drift.numeric_stats(profile, nullable).n == 2
    assert drift.numeric_stats(profile, pd.Series([True, False])).n == 2


def test_single_value_reference() -> None:
    profile = drift.profile_numeric([4.0])
    assert profile.std == 0.0 and profile.n == 1
    same = drift.numeric_stats(profile, [4.0, 4.0, 4.0])
    assert same.wasserstein == 0.0 and same.psi == 0.0
    assert same.ks is not None and same.ks.statistic == 0.0 and same.ks.pvalue == 1.0
    moved = drift.numeric_stats(profile, [4.0, 6.0])
    # Reference SD 0: the raw distance, in the feature's units (documented rule).
    assert moved.wasserstein == moved.wasserstein_raw == pytest.approx(1.0)
    assert math.isfinite(moved.psi)
    d, p = scipy_ks(np.array([4.0]), np.array([4.0, 6.0]))
    assert moved.ks.statistic == pytest.approx(d) and moved.ks.pvalue == pytest.approx(p)


def test_profile_is_reusable_and_read_only() -> None:
    r = np.random.default_rng(9)
    ref = r.normal(size=2000)
    profile = drift.profile_numeric(ref)
    with pytest.raises(ValueError):
        profile.sorted_values[0] = 1.0
    for shift in (0.0, 0.1, 1.0):
        cur = r.normal(shift, 1, size=700)
        s = drift.numeric_stats(profile, cur)
        d, p = scipy_ks(ref, cur)
        assert s.ks.statistic == pytest.approx(d, abs=1e-12)
        assert s.ks.pvalue == pytest.approx(p, rel=1e-9)
        w = stats.wasserstein_distance(ref, cur)
        assert s.wasserstein == pytest.approx(w / np.std(ref), rel=1e-9)
        assert s.psi == pytest.approx(numpy_psi(ref, cur), rel=1e-12)
        assert s.current_counts.sum() == cur.size


def test_build_profile() -> None:
    frame = pd.DataFrame(
        {"x": [1.0, 2.0, np.nan, 4.0], "c": ["a", "b", "a", None], "i": [0, 1, 0, 1]}
    )
    profile = drift.build_profile(frame, numeric=["x"], categorical=["c", "i"], psi_bins=3)
    assert profile.n_rows == 4 and profile.psi_bins == 3
    assert profile.features == ("x", "c", "i")
    assert profile.numeric["x"].n_nan == 1
    assert profile.categorical["i"].categories == ("0", "1")
    with pytest.raises(ValueError, match="missing columns"):
        drift.build_profile(frame, numeric=["nope"], categorical=[])
    with pytest.raises(ValueError, match="both"):
        drift.build_profile(frame, numeric=["x"], categorical=["x"])
    with pytest.raises(ValueError, match="at least 2"):
        drift.profile_numeric([1.0, 2.0], psi_bins=1)
