"""Detection quality of the multivariate decision on the Telco-like generator, with the
shipped defaults: it sees the joint-only scenarios that the per-feature score cannot,
stays quiet on no-drift windows of every size, and agrees with the per-feature score on
the `sudden` shift.

Every window is a fresh draw of the generator (its own seed), compared with one
reference of the size training writes from the 5,000-row bootstrap (its held-out 40 %).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from exporter.config import MonitoringConfig
from exporter.data.synthetic import generate_customers
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.multivariate import (
    MultivariateDrift,
    MultivariateProfile,
    assess_multivariate,
    fit_multivariate,
)

pytestmark = pytest.mark.slow

CONFIG = MonitoringConfig()
DRIFT = CONFIG.data_drift_monitoring
MV = DRIFT.multivariate
REFERENCE_ROWS = 2000
#: Window sizes from the smallest decided window to 100,000 rows, and how many windows
#: of each are drawn: at most 2 % may be flagged, so none of fewer than 50 windows.
NO_DRIFT_WINDOWS = {300: 100, 1000: 50, 10_000: 25, 100_000: 10}


@pytest.fixture(scope="module")
def profiles() -> tuple[drift.ReferenceProfile, MultivariateProfile]:
    reference = generate_customers(REFERENCE_ROWS, seed=0)
    features = CONFIG.features
    univariate = drift.build_profile(
        reference, features.numeric, features.categorical, psi_bins=DRIFT.psi_bins
    )
    joint = fit_multivariate(
        reference,
        features.numeric,
        features.categorical,
        variance_share=MV.variance_share,
        unusual_rate=MV.unusual_rate,
    )
    return univariate, joint


def _windows(scenario: str, rows: int, count: int) -> Iterator[tuple[int, object]]:
    for i in range(count):
        seed = 1000 + i
        yield seed, generate_customers(rows, seed=seed, scenario=scenario, id_offset=10**7)


def _multivariate(profile: MultivariateProfile, window) -> MultivariateDrift:  # type: ignore[no-untyped-def]
    return assess_multivariate(
        profile,
        window,
        min_window_rows=DRIFT.min_window_rows,
        false_alarm_rate=MV.false_alarm_rate,
        max_rows=MV.domain_classifier_max_rows,
    )


def _dataset_drifted(profile: drift.ReferenceProfile, window) -> bool | None:  # type: ignore[no-untyped-def]
    return assess(
        profile,
        window,
        drift_threshold=DRIFT.drift_threshold,
        min_window_rows=DRIFT.min_window_rows,
    ).drifted


@pytest.mark.parametrize("scenario", ["correlation", "mix"])
def test_joint_only_drift_is_flagged_by_the_multivariate_decision_alone(
    profiles: tuple[drift.ReferenceProfile, MultivariateProfile], scenario: str
) -> None:
    univariate, joint = profiles
    count, flagged = 20, 0
    for seed, window in _windows(scenario, 1000, count):
        assert _dataset_drifted(univariate, window) is False, f"seed {seed}: per-feature"
        result = _multivariate(joint, window)
        assert result.drifted is not None
        flagged += result.drifted
    assert flagged >= 0.95 * count, f"{scenario}: {flagged} of {count} windows flagged"


@pytest.mark.parametrize(("rows", "count"), NO_DRIFT_WINDOWS.items())
def test_no_drift_windows_rarely_alarm_at_any_size(
    profiles: tuple[drift.ReferenceProfile, MultivariateProfile], rows: int, count: int
) -> None:
    _, joint = profiles
    drifted = unusual = 0
    for _seed, window in _windows("none", rows, count):
        result = _multivariate(joint, window)
        assert result.drifted is not None and result.unusual_drifted is not None
        drifted += result.drifted
        unusual += result.unusual_drifted
    assert drifted <= 0.02 * count, f"{rows} rows: {drifted} of {count} windows flagged"
    assert unusual <= 0.02 * count, f"{rows} rows: {unusual} of {count} too unusual"


def test_sudden_shift_is_flagged_by_both_decisions(
    profiles: tuple[drift.ReferenceProfile, MultivariateProfile],
) -> None:
    univariate, joint = profiles
    for seed, window in _windows("sudden", 1000, 10):
        assert _dataset_drifted(univariate, window) is True, f"seed {seed}"
        assert _multivariate(joint, window).drifted is True, f"seed {seed}"
