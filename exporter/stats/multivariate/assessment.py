"""A window against the multivariate profile: two drift methods and the unusual rows.

For a window of ``n`` rows and a false-alarm rate ``alpha`` for one window:

reconstruction
    the window's mean row error (:mod:`.reconstruction`) against
    ``mean_upper_bound(error_mean, error_sd, n, m, alpha / 2)`` (:mod:`.thresholds`,
    ``m`` reference rows);
domain classifier
    the held-out ROC AUC of :func:`~.domain_classifier.domain_auc` against
    ``auc_upper_bound(n1, n2, alpha / 2)`` for the ``n1`` reference and ``n2`` window
    rows it was measured on;
decision
    the window drifted when either statistic exceeds its bound. Each method gets
    ``alpha / 2`` (Bonferroni), so the decision false-alarms in at most about
    ``alpha`` of no-drift windows;
unusual rows
    the share of window rows whose error exceeds the profile's ``unusual_cutoff``,
    expected ``unusual_rate``, against
    ``proportion_upper_bound(unusual_rate, n, m, alpha)``; a separate verdict.

Edge cases: an empty window has no statistic at all. A window below
``min_window_rows`` rows gets its statistics (where computable) but no decision
(``drifted`` None, ``reason`` says why), as the per-feature tests do. The domain
classifier needs at least 4 rows on each side, else its AUC is None and the decision
rests on the reconstruction. Missing values, unseen categories and constant
columns are handled by the encoding (:mod:`.encoding`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from exporter.stats.multivariate import thresholds
from exporter.stats.multivariate.domain_classifier import DEFAULT_MAX_ROWS, domain_auc
from exporter.stats.multivariate.profile import MultivariateProfile

#: Default false-alarm rate of one window's multivariate decision.
DEFAULT_FALSE_ALARM_RATE = 0.01


@dataclass(frozen=True)
class MultivariateDrift:
    """One window's multivariate statistics, their thresholds and the verdicts.

    ``domain_rows`` are the held-out (reference, window) rows the AUC was measured on.
    ``unusual_drifted`` says whether the unusual share exceeds its threshold (None
    when undecided, like ``drifted``).
    """

    n_current: int
    n_reference: int
    reconstruction_error: float | None
    reconstruction_threshold: float | None
    domain_auc: float | None
    domain_auc_threshold: float | None
    domain_rows: tuple[int, int]
    unusual_ratio: float | None
    unusual_expected: float
    unusual_threshold: float | None
    drifted: bool | None
    unusual_drifted: bool | None
    reason: str | None


def _exceeds(value: float | None, bound: float | None) -> bool:
    return value is not None and bound is not None and value > bound


def assess_multivariate(
    profile: MultivariateProfile,
    current: pd.DataFrame,
    *,
    min_window_rows: int,
    false_alarm_rate: float = DEFAULT_FALSE_ALARM_RATE,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int | None = None,
) -> MultivariateDrift:
    """Compare ``current`` with ``profile`` and decide (module notes).

    ``seed`` drives the domain classifier's subsampling and split; by default it is a
    checksum of the encoded window, so the same window always gets the same answer
    while different windows meet different reference subsamples. (One fixed seed would
    compare every window with the same reference rows, and an odd draw of those would
    raise the false-alarm rate of every window at once.)
    """
    n, m = len(current), profile.n_rows
    alpha = false_alarm_rate
    thresholds.mean_upper_bound(0.0, 0.0, 1, 1, alpha)  # a bad rate fails before any work
    if n == 0:
        return MultivariateDrift(
            n_current=0,
            n_reference=m,
            reconstruction_error=None,
            reconstruction_threshold=None,
            domain_auc=None,
            domain_auc_threshold=None,
            domain_rows=(0, 0),
            unusual_ratio=None,
            unusual_expected=profile.unusual_rate,
            unusual_threshold=None,
            drifted=None,
            unusual_drifted=None,
            reason="the window is empty",
        )
    matrix = profile.encoder.encode(current)
    errors = profile.reconstruction.errors(matrix)
    error = float(errors.mean())
    error_bound = thresholds.mean_upper_bound(profile.error_mean, profile.error_sd, n, m, alpha / 2)
    if seed is None:
        seed = zlib.crc32(np.ascontiguousarray(matrix).tobytes())
    auc, n1, n2 = domain_auc(profile.matrix, matrix, max_rows=max_rows, seed=seed)
    auc_bound = None if auc is None else thresholds.auc_upper_bound(n1, n2, alpha / 2)
    unusual = float((errors > profile.unusual_cutoff).mean())
    unusual_bound = thresholds.proportion_upper_bound(profile.unusual_rate, n, m, alpha)
    reason = None
    if n < min_window_rows:
        reason = f"the window has {n} rows, fewer than min_window_rows={min_window_rows}"
    return MultivariateDrift(
        n_current=n,
        n_reference=m,
        reconstruction_error=error,
        reconstruction_threshold=error_bound,
        domain_auc=auc,
        domain_auc_threshold=auc_bound,
        domain_rows=(n1, n2),
        unusual_ratio=unusual,
        unusual_expected=profile.unusual_rate,
        unusual_threshold=unusual_bound,
        drifted=None if reason else _exceeds(error, error_bound) or _exceeds(auc, auc_bound),
        unusual_drifted=None if reason else unusual > unusual_bound,
        reason=reason,
    )
