"""The multivariate reference: fitted once, applied to every window and every row.

:func:`fit_multivariate` encodes the reference (:mod:`.encoding`), fits the principal
subspace on all of it (:mod:`.reconstruction`) and measures what a *new* row's error
looks like with ``folds``-fold cross-fitting: each reference row's error comes from a
subspace fitted without it. From those out-of-fold errors ``e`` (``m`` rows):

Each fold keeps as many components as the full fit (``k``): chosen by the share
afresh, a fold might stop one component short and overstate every error.

* ``error_mean``, ``error_sd``: mean and standard deviation of ``e``, the no-drift
  distribution of a row's error (:func:`~.thresholds.mean_upper_bound`);
* ``unusual_cutoff``: the ``1 - unusual_rate`` quantile of ``e`` (numpy's linear
  interpolation): a row whose error exceeds it is *unusual*, which happens to about
  ``unusual_rate`` of rows drawn like the reference.

In-sample errors would be optimistic (the subspace has seen those rows), so a window
drawn like the reference would look worse than the reference and false-alarm at large
sizes; out-of-fold errors are slightly pessimistic instead (each fold's subspace saw
fewer rows than the final one), which errs towards fewer false alarms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold

from exporter.stats.multivariate.encoding import RowEncoder, fit_encoder
from exporter.stats.multivariate.reconstruction import (
    DEFAULT_VARIANCE_SHARE,
    Reconstruction,
    fit_reconstruction,
)

#: Share of reference-like rows called unusual.
DEFAULT_UNUSUAL_RATE = 0.01
#: Cross-fitting folds for the out-of-fold reference errors.
REFERENCE_FOLDS = 5


@dataclass(frozen=True, eq=False)
class RowScores:
    """Per row: the reconstruction error (``score``) and whether it is unusual."""

    score: np.ndarray
    unusual: np.ndarray


@dataclass(frozen=True, eq=False)
class MultivariateProfile:
    """What the reference contributes to every multivariate comparison (module notes).

    ``matrix`` is the encoded reference, kept for the domain classifier.
    """

    encoder: RowEncoder
    reconstruction: Reconstruction
    matrix: np.ndarray
    error_mean: float
    error_sd: float
    unusual_cutoff: float
    unusual_rate: float

    @property
    def n_rows(self) -> int:
        return len(self.matrix)

    def row_scores(self, frame: pd.DataFrame) -> RowScores:
        """Each row's error and unusual flag (``score > unusual_cutoff``)."""
        score = self.reconstruction.errors(self.encoder.encode(frame))
        return RowScores(score=score, unusual=score > self.unusual_cutoff)


def fit_multivariate(
    reference: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    variance_share: float = DEFAULT_VARIANCE_SHARE,
    unusual_rate: float = DEFAULT_UNUSUAL_RATE,
    seed: int = 0,
) -> MultivariateProfile:
    """Fit the profile of the module notes on the ``reference`` frame.

    Raises ValueError when a listed column is missing, when ``variance_share`` or
    ``unusual_rate`` is not in (0, 1), or when the reference has fewer than
    ``2 * REFERENCE_FOLDS`` rows.
    """
    if not 0.0 < unusual_rate < 1.0:
        raise ValueError(f"unusual_rate must be in (0, 1), got {unusual_rate!r}")
    encoder = fit_encoder(reference, numeric, categorical)
    matrix = encoder.encode(reference)
    m = len(matrix)
    if m < 2 * REFERENCE_FOLDS:
        raise ValueError(
            f"multivariate drift needs a reference of at least {2 * REFERENCE_FOLDS} rows, got {m}"
        )
    full = fit_reconstruction(matrix, variance_share)
    k = len(full.components)
    errors = np.empty(m)
    for train, test in KFold(REFERENCE_FOLDS, shuffle=True, random_state=seed).split(matrix):
        errors[test] = fit_reconstruction(matrix[train], components=k).errors(matrix[test])
    matrix.setflags(write=False)
    return MultivariateProfile(
        encoder=encoder,
        reconstruction=full,
        matrix=matrix,
        error_mean=float(errors.mean()),
        error_sd=float(errors.std(ddof=1)),
        unusual_cutoff=float(np.quantile(errors, 1.0 - unusual_rate)),
        unusual_rate=float(unusual_rate),
    )
