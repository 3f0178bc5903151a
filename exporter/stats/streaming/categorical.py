"""A categorical feature of an incremental window: counts per bin, kept by addition and
subtraction.

Each row's value is mapped once, when the row arrives, to its bin of the reference
profile by its canonical key (:func:`~exporter.stats.drift.inputs.category_codes`): a
reference category, the unseen bin (a category the reference never had, last), or
missing (None, NaN, ``pd.NA``: counted in ``n_nan``). Adding a row adds 1 to its bin,
evicting it subtracts 1, so the counts are exact integers. On demand they go to
:func:`~exporter.stats.drift.categorical.categorical_stats_from_counts`, the function
the full computation uses after counting: PSI, Jensen-Shannon distance, unseen and
missing counts and the bin shares equal a full recomputation on the same rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exporter.stats.drift.categorical import (
    CategoricalProfile,
    CategoricalStats,
    categorical_stats_from_counts,
)
from exporter.stats.drift.inputs import category_codes
from exporter.stats.streaming.window import fit_slots


class CategoricalFeature:
    """One categorical feature's share of a window, against its reference ``profile``."""

    def __init__(self, profile: CategoricalProfile) -> None:
        self.profile = profile
        self._bins = np.empty(0, dtype=np.int64)  # per slot: bin index, -1 if missing
        self._counts = np.zeros(profile.n_bins, dtype=np.int64)
        self._n_nan = 0

    def encode(self, values: Any) -> np.ndarray:
        """Each value's bin index (int64; the unseen bin last, -1 for a missing value);
        no state change."""
        unseen = len(self.profile.categories)
        return category_codes(values, self.profile.categories, unlisted=unseen)

    def add(self, slots: np.ndarray, bins: np.ndarray) -> None:
        """Add the rows of ``slots``, their ``bins`` from :meth:`encode`."""
        self._bins = fit_slots(self._bins, slots, -1)
        self._bins[slots] = bins
        self._count(bins, +1)

    def remove(self, slots: np.ndarray) -> None:
        """Remove the rows of ``slots`` (added before)."""
        self._count(self._bins[slots], -1)

    def _count(self, bins: np.ndarray, sign: int) -> None:
        present = bins[bins >= 0]
        self._counts += sign * np.bincount(present, minlength=self._counts.size)
        self._n_nan += sign * int(bins.size - present.size)

    def stats(self) -> CategoricalStats:
        """The window's statistics against the profile."""
        return categorical_stats_from_counts(self.profile, self._counts.copy(), self._n_nan)
