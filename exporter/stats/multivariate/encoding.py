"""Rows as vectors for the multivariate methods: standardised numbers, one-hot categories.

Fitted on the reference (:func:`fit_encoder`) and applied to any frame
(:meth:`RowEncoder.encode`), giving one float64 row of ``n_columns`` values per row:

numeric feature ``x``
    ``(x - mean) / sd``, with the reference's mean and population standard deviation
    over its finite values. A missing value (NaN, None, ``inf``, an unparsable string:
    :mod:`exporter.stats.drift.inputs`) becomes 0, the reference mean. A constant
    reference column (sd 0) is scaled by 1, so every reference row gets 0 and a current
    value counts by its raw difference. A column with no reference value has mean 0
    and scale 1.
categorical feature
    One 0/1 column per reference category, compared by canonical key
    (:func:`~exporter.stats.drift.inputs.category_codes`). A missing value, or a
    category the reference never had, sets none of them: the row is all zeros for that
    feature, a point no reference row occupies, so an unseen category raises the row's
    reconstruction error (:mod:`.reconstruction`).
absent column
    A feature missing from the frame is encoded as all missing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from exporter.stats.drift.inputs import category_codes, category_keys, to_float_array


@dataclass(frozen=True, eq=False)
class RowEncoder:
    """The reference's means, scales and categories; ``columns`` names the output."""

    numeric: tuple[str, ...]
    means: np.ndarray
    scales: np.ndarray
    categorical: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]

    @property
    def columns(self) -> tuple[str, ...]:
        """``feature`` for a numeric column, ``feature=category`` for a one-hot one."""
        one_hot = (
            f"{feature}={c}"
            for feature, cats in zip(self.categorical, self.categories, strict=True)
            for c in cats
        )
        return (*self.numeric, *one_hot)

    @property
    def n_columns(self) -> int:
        return len(self.numeric) + sum(len(c) for c in self.categories)

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """The ``len(frame) x n_columns`` float64 matrix of the module notes."""
        n = len(frame)
        out = np.zeros((n, self.n_columns), dtype=np.float64)
        for j, feature in enumerate(self.numeric):
            if feature in frame.columns:
                x = (to_float_array(frame[feature]) - self.means[j]) / self.scales[j]
                out[:, j] = np.where(np.isfinite(x), x, 0.0)
        start = len(self.numeric)
        rows = np.arange(n)
        for feature, cats in zip(self.categorical, self.categories, strict=True):
            if feature in frame.columns and cats:
                codes = category_codes(frame[feature], cats)
                seen = codes >= 0
                out[rows[seen], start + codes[seen]] = 1.0
            start += len(cats)
        return out


def fit_encoder(
    reference: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> RowEncoder:
    """The encoder of the module notes, fitted on the ``reference`` frame.

    Raises ValueError naming the listed columns that the reference lacks.
    """
    missing = [c for c in (*numeric, *categorical) if c not in reference.columns]
    if missing:
        raise ValueError(f"reference is missing columns: {missing}")
    means = np.zeros(len(numeric))
    scales = np.ones(len(numeric))
    for j, feature in enumerate(numeric):
        x = to_float_array(reference[feature])
        finite = x[np.isfinite(x)]
        if finite.size:
            means[j] = finite.mean()
            sd = finite.std()
            scales[j] = sd if sd > 0 else 1.0
    categories = tuple(tuple(sorted(category_keys(reference[feature]))) for feature in categorical)
    means.setflags(write=False)
    scales.setflags(write=False)
    return RowEncoder(
        numeric=tuple(numeric),
        means=means,
        scales=scales,
        categorical=tuple(categorical),
        categories=categories,
    )
