"""The correlation matrix of the report's data analysis: association of every pair of
features, numeric and categorical alike, on one scale from 0 (none) to 1 (perfect).

Pure computation over a DataFrame; no I/O.

Per pair, on the rows where both values are present:

* numeric and numeric: ``|r|``, the absolute Pearson correlation;
* categorical and numeric: the correlation ratio
  ``eta = sqrt(sum_k n_k (mean_k - mean)^2 / sum_i (x_i - mean)^2)``, the share of the
  numeric feature's spread that its category means explain (square-rooted);
* categorical and categorical: Cramér's V, ``sqrt(chi2 / (n * (min(r, c) - 1)))`` of
  their contingency table (no continuity correction), as
  ``scipy.stats.contingency.association(method="cramer")``.

A pair is undefined (NaN) with fewer than 2 rows, when a numeric side is constant, or
when a categorical side has one category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Associations:
    """A symmetric matrix over ``features`` (1 on the diagonal)."""

    features: tuple[str, ...]
    values: np.ndarray


def pearson_abs(x: np.ndarray, y: np.ndarray) -> float:
    """``|r|`` of two float arrays of equal length; NaN when either is constant."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(abs(np.corrcoef(x, y)[0, 1]))


def correlation_ratio(categories: np.ndarray, values: np.ndarray) -> float:
    """eta of `values` (floats) grouped by `categories`; NaN when undefined."""
    total = float(((values - values.mean()) ** 2).sum()) if len(values) else 0.0
    if len(values) < 2 or total == 0.0:
        return float("nan")
    codes, counts = np.unique(categories, return_inverse=True, return_counts=True)[1:]
    if len(counts) < 2:
        return float("nan")
    means = np.bincount(codes, weights=values) / counts
    between = float((counts * (means - values.mean()) ** 2).sum())
    return float(np.sqrt(min(1.0, between / total)))


def cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    """Cramér's V of two categorical arrays; NaN when either has one category."""
    a_codes = np.unique(a, return_inverse=True)[1]
    b_codes = np.unique(b, return_inverse=True)[1]
    rows, cols = a_codes.max(initial=-1) + 1, b_codes.max(initial=-1) + 1
    if len(a) < 2 or min(rows, cols) < 2:
        return float("nan")
    table = np.zeros((rows, cols))
    np.add.at(table, (a_codes, b_codes), 1.0)
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / len(a)
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (len(a) * (min(rows, cols) - 1))))


def associations(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> Associations:
    """The association matrix of the `numeric` and `categorical` columns of `frame`
    (features absent from the frame are left out), in that order."""
    features = tuple(f for f in (*numeric, *categorical) if f in frame.columns)
    is_numeric = {f: f in numeric for f in features}
    matrix = np.eye(len(features))
    for i, first in enumerate(features):
        for j in range(i + 1, len(features)):
            second = features[j]
            pair = frame[[first, second]].dropna()
            x, y = pair[first].to_numpy(), pair[second].to_numpy()
            if is_numeric[first] and is_numeric[second]:
                value = pearson_abs(x.astype(float), y.astype(float))
            elif is_numeric[first]:
                value = correlation_ratio(y.astype(str), x.astype(float))
            elif is_numeric[second]:
                value = correlation_ratio(x.astype(str), y.astype(float))
            else:
                value = cramers_v(x.astype(str), y.astype(str))
            matrix[i, j] = matrix[j, i] = value
    return Associations(features, matrix)


def largest_changes(
    reference: Associations, current: Associations, count: int
) -> list[tuple[str, str, float, float]]:
    """The `count` feature pairs whose association changed most, as (first, second,
    reference value, current value), largest ``|current - reference|`` first; pairs
    undefined on either side are left out."""
    shared = [f for f in reference.features if f in current.features]
    ref_at = {f: i for i, f in enumerate(reference.features)}
    cur_at = {f: i for i, f in enumerate(current.features)}
    pairs = []
    for i, first in enumerate(shared):
        for second in shared[i + 1 :]:
            before = float(reference.values[ref_at[first], ref_at[second]])
            after = float(current.values[cur_at[first], cur_at[second]])
            if np.isfinite(before) and np.isfinite(after):
                pairs.append((first, second, before, after))
    pairs.sort(key=lambda p: abs(p[3] - p[2]), reverse=True)
    return pairs[:count]
