"""The profiles of every monitored feature of a reference frame."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pandas as pd

from exporter.stats.drift.categorical import CategoricalProfile, profile_categorical
from exporter.stats.drift.numeric_profile import NumericProfile, profile_numeric
from exporter.stats.drift.population_stability import DEFAULT_PSI_BINS


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """Profiles of every monitored feature of a reference frame of ``n_rows`` rows."""

    numeric: Mapping[str, NumericProfile]
    categorical: Mapping[str, CategoricalProfile]
    n_rows: int
    psi_bins: int = DEFAULT_PSI_BINS

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)


def build_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    psi_bins: int = DEFAULT_PSI_BINS,
) -> ReferenceProfile:
    """Profile every listed column of the reference ``frame``.

    Raises ValueError naming the columns that are missing from the frame or listed as
    both numeric and categorical.
    """
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"columns listed as both numeric and categorical: {both}")
    missing = [c for c in (*numeric, *categorical) if c not in frame.columns]
    if missing:
        raise ValueError(f"reference is missing columns: {missing}")
    return ReferenceProfile(
        numeric={c: profile_numeric(frame[c], psi_bins) for c in numeric},
        categorical={c: profile_categorical(frame[c]) for c in categorical},
        n_rows=len(frame),
        psi_bins=psi_bins,
    )
