"""Drift statistics: KS, PSI, Wasserstein-1 and Jensen-Shannon, over a reference profile.

Pure computation over numpy arrays: no I/O, nothing about Prometheus. The reference is
summarised once (:func:`build_profile`, :func:`profile_numeric`,
:func:`profile_categorical`) and every current window is compared with that profile
(:func:`numeric_stats`, :func:`categorical_stats`), so a window costs one sort of its
own values plus linear passes. A window kept incrementally
(:mod:`exporter.stats.streaming`) hands its sorted values or bin counts to
:func:`numeric_stats_from_sorted` and :func:`categorical_stats_from_counts`, the same
computation without the sort or the count. The sample-level functions (:func:`ks_2samp`,
:func:`wasserstein`, :func:`psi`, :func:`jensen_shannon`) build a throw-away profile
and compare; they exist for one-off use and for tests.

Where each idea lives (formulas, units and edge cases in each module's notes):

* :mod:`.inputs`: missing values and canonical category keys;
* :mod:`.numeric_profile`, :mod:`.numeric`: a numeric reference and a window against it;
* :mod:`.ecdf`: KS D and Wasserstein-1 (raw, and in reference standard deviations);
* :mod:`.ks`, :mod:`.smirnov`: the KS p-value, as scipy computes it;
* :mod:`.population_stability`: the PSI and the numeric reference-quantile bins;
* :mod:`.categorical`: a categorical reference, PSI and Jensen-Shannon of a window;
* :mod:`.reference`: the profiles of every monitored feature;
* :mod:`.samples`: the statistics of two raw samples.

Conventions shared by every statistic
--------------------------------------
Missing values
    Numeric: NaN, None, ``pd.NA``, ``+inf``/``-inf`` and strings that do not parse as
    numbers are *missing*: excluded from every statistic and counted in ``n_nan``.
    Categorical: None, NaN and ``pd.NA`` are missing; every other value is a category
    (compared by a canonical key, see :mod:`.inputs`).
Empty current window (no non-missing value)
    Every statistic is None; ``current_ratios`` are all 0.
Empty reference (no non-missing value)
    Every statistic is None; there are no bins.
"""

from exporter.stats.drift.categorical import (
    MAX_LABEL_CHARS,
    UNSEEN_LABEL,
    CategoricalProfile,
    CategoricalStats,
    categorical_stats,
    categorical_stats_from_counts,
    jensen_shannon_from_counts,
    profile_categorical,
)
from exporter.stats.drift.inputs import category_keys, to_float_array
from exporter.stats.drift.ks import KS_EXACT_MAX_N, KSResult
from exporter.stats.drift.numeric import NumericStats, numeric_stats, numeric_stats_from_sorted
from exporter.stats.drift.numeric_profile import NumericProfile, profile_numeric
from exporter.stats.drift.population_stability import (
    DEFAULT_PSI_BINS,
    PSI_EPSILON,
    numeric_bin_edges,
    psi_from_counts,
)
from exporter.stats.drift.reference import ReferenceProfile, build_profile
from exporter.stats.drift.samples import jensen_shannon, ks_2samp, psi, wasserstein

__all__ = [
    "DEFAULT_PSI_BINS",
    "KS_EXACT_MAX_N",
    "MAX_LABEL_CHARS",
    "PSI_EPSILON",
    "UNSEEN_LABEL",
    "CategoricalProfile",
    "CategoricalStats",
    "KSResult",
    "NumericProfile",
    "NumericStats",
    "ReferenceProfile",
    "build_profile",
    "categorical_stats",
    "categorical_stats_from_counts",
    "category_keys",
    "jensen_shannon",
    "jensen_shannon_from_counts",
    "ks_2samp",
    "numeric_bin_edges",
    "numeric_stats",
    "numeric_stats_from_sorted",
    "profile_categorical",
    "profile_numeric",
    "psi",
    "psi_from_counts",
    "to_float_array",
    "wasserstein",
]
