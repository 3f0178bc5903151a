"""A categorical feature: its reference profile, and a window's PSI and Jensen-Shannon.

Bins are the reference categories (canonical keys, :mod:`.inputs`) plus one last bin,
labelled :data:`UNSEEN_LABEL`, for values the reference never had (its reference share
is 0, which the PSI smoothing keeps finite).

Jensen-Shannon
    ``sqrt((KL(p || m) + KL(q || m)) / 2)`` with ``m = (p + q) / 2``, logarithms in base
    2, over the raw (unsmoothed) shares of the bins; equal to
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``, in [0, 1].

When either side has no value, PSI and Jensen-Shannon are None and the current bin
shares are all 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import rel_entr

from exporter.stats.drift.inputs import as_series, category_keys, count_shares
from exporter.stats.drift.population_stability import psi_from_counts

#: Label of the categorical bin that collects values absent from the reference.
UNSEEN_LABEL = "<unseen>"
#: Categorical bin labels longer than this are shortened (the full value still matches).
MAX_LABEL_CHARS = 40


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """A categorical feature's reference: category keys, counts and shares.

    ``categories`` are the canonical keys (see :func:`~.inputs.category_keys`) ordered
    by decreasing count, then by key. The PSI and Jensen-Shannon bins are these
    categories plus the unseen bin. ``bin_labels`` are the categories, shortened to
    :data:`MAX_LABEL_CHARS` characters and made unique, then the unseen label.
    """

    categories: tuple[str, ...]
    counts: np.ndarray
    ratios: np.ndarray
    bin_labels: tuple[str, ...]
    n: int
    n_nan: int

    @property
    def n_bins(self) -> int:
        return len(self.bin_labels)

    @property
    def bin_ratios(self) -> np.ndarray:
        """Reference shares of every bin, the unseen bin (0) last."""
        return np.append(self.ratios, 0.0)


@dataclass(frozen=True, eq=False)
class CategoricalStats:
    """A categorical window against its reference profile.

    ``current_counts``/``current_ratios`` follow the profile's bins (categories, then
    unseen); ``n_unseen`` values were not reference categories. ``psi`` and
    ``jensen_shannon`` are None when either side has no values.
    """

    n: int
    n_nan: int
    n_unseen: int
    psi: float | None
    jensen_shannon: float | None
    current_counts: np.ndarray
    current_ratios: np.ndarray


def _short_labels(categories: Sequence[str]) -> tuple[str, ...]:
    labels: list[str] = []
    seen: set[str] = set()
    for cat in categories:
        label = cat if len(cat) <= MAX_LABEL_CHARS else cat[: MAX_LABEL_CHARS - 1] + "…"
        base, k = label, 2
        while label in seen or label == UNSEEN_LABEL:
            label = f"{base}#{k}"
            k += 1
        seen.add(label)
        labels.append(label)
    return (*labels, UNSEEN_LABEL)


def profile_categorical(values: Any) -> CategoricalProfile:
    """Profile one categorical reference column (see :class:`CategoricalProfile`)."""
    series = as_series(values)
    keyed = category_keys(series)
    order = sorted(keyed.items(), key=lambda kv: (-kv[1], kv[0]))
    categories = tuple(k for k, _ in order)
    counts = np.array([c for _, c in order], dtype=np.int64)
    n = int(counts.sum())
    ratios = (counts / n if n else np.zeros(0)).astype(np.float64)
    counts.setflags(write=False)
    ratios.setflags(write=False)
    return CategoricalProfile(
        categories=categories,
        counts=counts,
        ratios=ratios,
        bin_labels=_short_labels(categories),
        n=n,
        n_nan=int(len(series) - n),
    )


def jensen_shannon_from_counts(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count vectors over the same bins.

    ``sqrt((sum rel_entr(p, m) + sum rel_entr(q, m)) / (2 ln 2))`` with ``p``, ``q`` the
    normalised vectors and ``m = (p + q) / 2``, as ``scipy.spatial.distance.jensenshannon``.
    """
    p, q = count_shares(reference, current, "jensen_shannon")
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    js /= np.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


def categorical_stats(profile: CategoricalProfile, values: Any) -> CategoricalStats:
    """PSI and Jensen-Shannon distance of ``values`` against ``profile``.

    Counts the values per bin, then :func:`categorical_stats_from_counts`.
    """
    series = as_series(values)
    keyed = category_keys(series)
    n2 = sum(keyed.values())
    known = np.array([keyed.get(c, 0) for c in profile.categories], dtype=np.int64)
    counts = np.append(known, n2 - known.sum())
    return categorical_stats_from_counts(profile, counts, int(len(series) - n2))


def categorical_stats_from_counts(
    profile: CategoricalProfile, counts: np.ndarray, n_nan: int
) -> CategoricalStats:
    """PSI and Jensen-Shannon distance of a window given as counts per bin.

    ``counts`` (int64, ``profile.n_bins`` of them) count the window's values per
    reference category, then unseen values last; ``n_nan`` values were missing. What
    :func:`categorical_stats` counts from raw values, and what an incremental window
    keeps (:mod:`exporter.stats.streaming`).
    """
    n2 = int(counts.sum())
    unseen = int(counts[-1])
    ratios = counts / n2 if n2 else np.zeros(counts.size)
    if n2 == 0 or profile.n == 0:
        return CategoricalStats(n2, n_nan, unseen, None, None, counts, ratios)
    ref = np.append(profile.counts, 0)
    return CategoricalStats(
        n=n2,
        n_nan=n_nan,
        n_unseen=unseen,
        psi=psi_from_counts(ref, counts),
        jensen_shannon=jensen_shannon_from_counts(ref, counts),
        current_counts=counts,
        current_ratios=ratios,
    )
