"""A numeric window against its reference profile: KS, normalised Wasserstein-1, PSI.

Missing current values are counted and left out (:mod:`.inputs`). When either side has
no value every statistic is None and the current bin shares are all 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.stats.drift.ecdf import cdf_merge, normalized_wasserstein
from exporter.stats.drift.inputs import finite_sorted
from exporter.stats.drift.ks import KSResult, ks_pvalue
from exporter.stats.drift.numeric_profile import NumericProfile
from exporter.stats.drift.population_stability import bin_counts, psi_from_counts


@dataclass(frozen=True, eq=False)
class NumericStats:
    """A numeric window against its reference profile.

    ``n`` non-missing current values were compared, ``n_nan`` were missing. ``ks`` is
    None, and so are ``wasserstein`` (normalised, see :mod:`.ecdf`), ``wasserstein_raw``
    and ``psi``, when either side has no values. ``current_counts`` and
    ``current_ratios`` are per PSI bin of the profile.
    """

    n: int
    n_nan: int
    ks: KSResult | None
    wasserstein: float | None
    wasserstein_raw: float | None
    psi: float | None
    current_counts: np.ndarray
    current_ratios: np.ndarray


def numeric_stats(profile: NumericProfile, values: Any) -> NumericStats:
    """KS, PSI and normalised Wasserstein of ``values`` against ``profile``.

    Cost: one sort of the window, then :func:`numeric_stats_from_sorted`.
    """
    cur, n_nan = finite_sorted(values)
    return numeric_stats_from_sorted(profile, cur, n_nan)


def numeric_stats_from_sorted(profile: NumericProfile, cur: np.ndarray, n_nan: int) -> NumericStats:
    """KS, PSI and normalised Wasserstein of ``cur`` against ``profile``.

    ``cur`` holds the window's finite values in ascending order (float64) and ``n_nan``
    values were missing: what :func:`numeric_stats` computes from raw values, and what
    an incremental window keeps (:mod:`exporter.stats.streaming`). Cost: the linear
    merge of :func:`.ecdf.cdf_merge` and one binary search per PSI edge.
    """
    n2 = int(cur.size)
    counts = bin_counts(cur, profile.bin_edges)
    ratios = counts / n2 if n2 else np.zeros(counts.size)
    if n2 == 0 or profile.n == 0:
        return NumericStats(n2, n_nan, None, None, None, None, counts, ratios)
    d, w_raw = cdf_merge(profile, cur)
    ks = ks_pvalue(d, profile.n, n2)
    w = normalized_wasserstein(w_raw, profile.std)
    p = psi_from_counts(profile.bin_counts, counts)
    return NumericStats(n2, n_nan, ks, w, w_raw, p, counts, ratios)
