"""A numeric feature of an incremental window: its values kept sorted, and its missing
count.

Missing values (NaN, None, ``pd.NA``, ``+inf``/``-inf``, unparsable strings; see
:mod:`exporter.stats.drift.inputs`) are counted, up and down, in ``n_nan``; the finite
ones are kept in a :class:`~.sorted_values.SortedValues`. On demand, the sorted values
and the missing count go to
:func:`~exporter.stats.drift.numeric.numeric_stats_from_sorted`, the function the full
computation uses after its own sort: KS statistic and p-value, Wasserstein-1 (raw and
in reference standard deviations), the PSI bin counts (one binary search per bin edge
in the sorted values) and the PSI are therefore those of a full recomputation on the
same rows, bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exporter.stats.drift.inputs import to_float_array
from exporter.stats.drift.numeric import NumericStats, numeric_stats_from_sorted
from exporter.stats.drift.numeric_profile import NumericProfile
from exporter.stats.streaming.sorted_values import SortedValues
from exporter.stats.streaming.window import fit_slots


class NumericFeature:
    """One numeric feature's share of a window, against its reference ``profile``."""

    def __init__(self, profile: NumericProfile) -> None:
        self.profile = profile
        self._values = np.empty(0)  # per slot, as given (missing ones not finite)
        self._sorted = SortedValues()
        self._n_nan = 0
        self._stats: NumericStats | None = None

    @staticmethod
    def encode(values: Any) -> np.ndarray:
        """The column ``values`` as float64, missing values not finite (no state change)."""
        return to_float_array(values)

    def add(self, slots: np.ndarray, values: np.ndarray) -> None:
        """Add the rows of ``slots``, their ``values`` from :meth:`encode`."""
        self._values = fit_slots(self._values, slots, np.nan)
        self._values[slots] = values
        self._count(values, +1)

    def remove(self, slots: np.ndarray) -> None:
        """Remove the rows of ``slots`` (added before)."""
        self._count(self._values[slots], -1)

    def _count(self, values: np.ndarray, sign: int) -> None:
        finite = np.isfinite(values)
        kept = values[finite]
        if sign > 0:
            self._sorted.add(kept)
        else:
            self._sorted.remove(kept)
        self._n_nan += sign * int(values.size - kept.size)
        self._stats = None

    def stats(self) -> NumericStats:
        """The window's statistics against the profile (computed once per change)."""
        if self._stats is None:
            self._stats = numeric_stats_from_sorted(self.profile, self._sorted.array(), self._n_nan)
        return self._stats
