"""Property tests of the drift statistics (hypothesis)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon as scipy_js

from exporter.stats import drift

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Values from a small pool make ties likely; the wide range covers heavy tails.
tied = st.sampled_from([-3.0, -1.0, 0.0, 0.5, 1.0, 2.0, 72.0])
wide = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
with_missing = st.one_of(tied, wide, st.sampled_from([np.nan, np.inf, -np.inf]))


def samples(
    elements: st.SearchStrategy[float], max_size: int = 60
) -> st.SearchStrategy[np.ndarray]:
    return st.lists(elements, min_size=1, max_size=max_size).map(lambda v: np.array(v, dtype=float))


mixed = st.one_of(samples(tied), samples(wide), samples(st.one_of(tied, wide)))


def finite(x: np.ndarray) -> np.ndarray:
    return x[np.isfinite(x)]


@SETTINGS
@given(a=mixed, b=mixed)
def test_ks_and_wasserstein_equal_scipy(a: np.ndarray, b: np.ndarray) -> None:
    ours = drift.ks_2samp(a, b)
    assert ours is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref = stats.ks_2samp(a, b)
    assert abs(ours.statistic - ref.statistic) <= 1e-12
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
    w = stats.wasserstein_distance(a, b)
    assert drift.wasserstein(a, b, normalize=False) == pytest.approx(w, rel=1e-9, abs=1e-300)


@SETTINGS
@given(a=samples(with_missing), b=samples(with_missing))
def test_missing_values_are_dropped_before_comparing(a: np.ndarray, b: np.ndarray) -> None:
    fa, fb = finite(a), finite(b)
    ours = drift.ks_2samp(a, b)
    if fa.size == 0 or fb.size == 0:
        assert ours is None
        assert drift.wasserstein(a, b) is None
        return
    assert ours == drift.ks_2samp(fa, fb)
    profile = drift.profile_numeric(a)
    s = drift.numeric_stats(profile, b)
    assert (s.n, s.n_nan) == (fb.size, b.size - fb.size)
    assert (profile.n, profile.n_nan) == (fa.size, a.size - fa.size)


@SETTINGS
@given(a=mixed, bins=st.integers(2, 20))
def test_identical_samples_show_no_drift(a: np.ndarray, bins: int) -> None:
    profile = drift.profile_numeric(a, bins)
    s = drift.numeric_stats(profile, np.random.default_rng(0).permutation(a))
    assert s.ks is not None
    assert s.ks.statistic == 0.0 and s.ks.pvalue == 1.0
    assert s.wasserstein == 0.0
    assert s.psi == 0.0
    assert np.array_equal(s.current_ratios, profile.bin_ratios)


@SETTINGS
@given(a=samples(tied, 40), b=samples(tied, 40))
def test_categorical_identical_and_bounded(a: np.ndarray, b: np.ndarray) -> None:
    profile = drift.profile_categorical(a)
    same = drift.categorical_stats(profile, a[::-1])
    assert same.psi == 0.0 and same.jensen_shannon == 0.0
    s = drift.categorical_stats(profile, b)
    assert s.psi is not None and s.psi >= 0.0
    assert s.jensen_shannon is not None and 0.0 <= s.jensen_shannon <= 1.0
    expected = scipy_js(np.append(profile.counts, 0), s.current_counts, base=2)
    assert s.jensen_shannon == pytest.approx(expected, abs=1e-12)


@SETTINGS
@given(a=samples(wide, 40), b=samples(wide, 40), k=st.floats(0.01, 100.0), c=st.floats(-100, 100))
def test_invariances(a: np.ndarray, b: np.ndarray, k: float, c: float) -> None:
    # KS depends only on the order of the pooled values.
    ks = drift.ks_2samp(a, b)
    moved = drift.ks_2samp(np.arctan(a / 1e5), np.arctan(b / 1e5))
    if (
        np.unique(np.arctan(np.concatenate([a, b]) / 1e5)).size
        == np.unique(np.concatenate([a, b])).size
    ):
        assert moved is not None and ks is not None
        assert moved.statistic == pytest.approx(ks.statistic, abs=1e-12)
    # The normalised Wasserstein distance is in reference SDs: affine-invariant.
    w = drift.wasserstein(a, b)
    w2 = drift.wasserstein(k * a + c, k * b + c)
    assert w is not None and w2 is not None
    if np.std(a) > 1e-6 * max(1.0, float(np.abs(a).max())):
        assert w2 == pytest.approx(w, rel=1e-6, abs=1e-9)


@SETTINGS
@given(p=st.lists(st.integers(0, 50), min_size=2, max_size=12))
def test_psi_is_symmetric_and_non_negative(p: list[int]) -> None:
    q = list(reversed(p))
    if sum(p) == 0:
        return
    assert drift.psi_from_counts(p, q) >= 0.0
    assert drift.psi_from_counts(p, q) == pytest.approx(drift.psi_from_counts(q, p))
    assert drift.psi_from_counts(p, p) == 0.0


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(1.0, 5.0))
def test_a_known_shift_is_detected(seed: int, shift: float) -> None:
    r = np.random.default_rng(seed)
    ref = r.normal(size=500)
    cur = r.normal(size=400) + shift
    profile = drift.profile_numeric(ref)
    s = drift.numeric_stats(profile, cur)
    assert s.ks is not None and s.ks.pvalue < 1e-6
    assert s.wasserstein == pytest.approx(shift, rel=0.2)
    assert s.psi is not None and s.psi > 0.5
