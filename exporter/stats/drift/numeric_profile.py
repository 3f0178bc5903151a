"""The reference side of a numeric feature, summarised once for every window.

Building a profile sorts the reference once; a window is then compared with it in
``O(m log m)`` for ``m`` current values (:mod:`.numeric`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from exporter.stats.drift.inputs import finite_sorted
from exporter.stats.drift.population_stability import (
    DEFAULT_PSI_BINS,
    bin_counts,
    numeric_bin_edges,
    numeric_bin_labels,
)


def readonly(a: np.ndarray) -> np.ndarray:
    """``a``, made read-only (profiles are shared between threads and windows)."""
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """What a numeric feature's reference contributes to every comparison.

    ``sorted_values`` are the finite reference values in ascending order (``n`` of them;
    ``n_nan`` values were missing). ``unique_values`` are their distinct values and
    ``cum_counts[k]`` how many reference values are ``<= unique_values[k]``. PSI bins are
    right-closed: ``(-inf, e_1], (e_1, e_2], ..., (e_m, +inf)`` for ``bin_edges`` ``e``
    (see :func:`.population_stability.numeric_bin_edges`); ``bin_labels`` name them and
    ``bin_ratios`` are the reference shares. ``std`` is the population standard
    deviation (None when ``n == 0``). Arrays are read-only.
    """

    sorted_values: np.ndarray
    unique_values: np.ndarray
    cum_counts: np.ndarray
    bin_edges: np.ndarray
    bin_labels: tuple[str, ...]
    bin_counts: np.ndarray
    bin_ratios: np.ndarray
    std: float | None
    mean: float | None
    n: int
    n_nan: int
    #: ``unique_values`` followed by +inf, and 0 followed by ``cum_counts`` (sentinels for
    #: the window comparison; ``unique_values`` and ``cum_counts`` are views of them).
    _u_pad: np.ndarray = field(repr=False)
    _cum_pad: np.ndarray = field(repr=False)

    @property
    def n_bins(self) -> int:
        return len(self.bin_labels)


def profile_numeric(values: Any, psi_bins: int = DEFAULT_PSI_BINS) -> NumericProfile:
    """Profile one numeric reference column (see :class:`NumericProfile`).

    Missing values (NaN, None, +-inf, unparsable) are excluded and counted. Cost: one
    sort of the column.
    """
    s, n_nan = finite_sorted(values)
    return profile_from_sorted(s, n_nan, psi_bins)


def mean_std(sorted_values: np.ndarray) -> tuple[float | None, float | None]:
    """Mean and population standard deviation (ddof=0) of sorted finite values.

    When the plain computation overflows (squares of values beyond ~1e154), it is redone
    on the values divided by their largest magnitude and scaled back. None for an empty
    array.
    """
    if sorted_values.size == 0:
        return None, None
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(np.mean(sorted_values)), float(np.std(sorted_values))
    if math.isfinite(mean) and math.isfinite(std):
        return mean, std
    scale = max(abs(float(sorted_values[0])), abs(float(sorted_values[-1])))
    scaled = sorted_values / scale
    return scale * float(np.mean(scaled)), scale * float(np.std(scaled))


def profile_from_sorted(s: np.ndarray, n_nan: int, psi_bins: int) -> NumericProfile:
    """The profile of sorted finite values ``s`` (``n_nan`` more were missing)."""
    n = int(s.size)
    last = np.empty(n, dtype=bool)
    np.not_equal(s[1:], s[:-1], out=last[:-1])
    if n:
        last[-1] = True
    nu = int(np.count_nonzero(last))
    u_pad = np.empty(nu + 1)
    u_pad[:nu] = s[last]
    u_pad[nu] = np.inf
    if nu == n:  # no ties: the sorted values are the distinct values; share the memory
        s = u_pad[:n]
    cum_pad = np.zeros(nu + 1, dtype=np.int64)
    cum_pad[1:] = np.flatnonzero(last) + 1
    mean, std = mean_std(s)
    edges = numeric_bin_edges(s, psi_bins)
    counts = bin_counts(s, edges)
    ratios = counts / n if n else np.zeros(counts.size)
    return NumericProfile(
        sorted_values=readonly(s),
        unique_values=readonly(u_pad[:nu]),
        cum_counts=readonly(cum_pad[1:]),
        bin_edges=readonly(edges),
        bin_labels=numeric_bin_labels(edges),
        bin_counts=readonly(counts),
        bin_ratios=readonly(ratios.astype(np.float64)),
        std=std,
        mean=mean,
        n=n,
        n_nan=int(n_nan),
        _u_pad=readonly(u_pad),
        _cum_pad=readonly(cum_pad),
    )
