"""Drift statistics of two raw samples, for one-off use and tests.

Each function builds a throw-away reference profile and compares the current sample
with it, exactly as a monitored window is compared (same conventions, same results).
Missing values are dropped first; a statistic is None when either side then has no
value.
"""

from __future__ import annotations

from typing import Any, Literal

from exporter.stats.drift.categorical import categorical_stats, profile_categorical
from exporter.stats.drift.ecdf import cdf_merge, normalized_wasserstein
from exporter.stats.drift.inputs import finite_sorted
from exporter.stats.drift.ks import KSResult, ks_pvalue
from exporter.stats.drift.numeric import numeric_stats
from exporter.stats.drift.numeric_profile import profile_from_sorted, profile_numeric
from exporter.stats.drift.population_stability import DEFAULT_PSI_BINS


def ks_2samp(reference: Any, current: Any) -> KSResult | None:
    """Two-sided two-sample KS of two numeric samples, as ``scipy.stats.ks_2samp``."""
    ref, _ = finite_sorted(reference)
    cur, _ = finite_sorted(current)
    if ref.size == 0 or cur.size == 0:
        return None
    d, _w = cdf_merge(profile_from_sorted(ref, 0, 2), cur)
    return ks_pvalue(d, ref.size, cur.size)


def wasserstein(reference: Any, current: Any, *, normalize: bool = True) -> float | None:
    """Wasserstein-1 distance, divided by the reference population SD if ``normalize``.

    Without normalisation it equals ``scipy.stats.wasserstein_distance``. A reference
    SD of 0 leaves the distance unnormalised (:mod:`.ecdf`).
    """
    ref, _ = finite_sorted(reference)
    cur, _ = finite_sorted(current)
    if ref.size == 0 or cur.size == 0:
        return None
    profile = profile_from_sorted(ref, 0, 2)
    _d, w = cdf_merge(profile, cur)
    return normalized_wasserstein(w, profile.std) if normalize else w


def psi(
    reference: Any,
    current: Any,
    *,
    bins: int = DEFAULT_PSI_BINS,
    kind: Literal["numeric", "categorical"] = "numeric",
) -> float | None:
    """PSI of ``current`` against ``reference`` (numeric quantile bins or categories)."""
    if kind == "categorical":
        return categorical_stats(profile_categorical(reference), current).psi
    if kind != "numeric":
        raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    return numeric_stats(profile_numeric(reference, bins), current).psi


def jensen_shannon(reference: Any, current: Any) -> float | None:
    """Jensen-Shannon distance (base 2) of the category frequencies of two samples.

    The bins are the reference categories plus one for unseen values.
    """
    return categorical_stats(profile_categorical(reference), current).jensen_shannon
