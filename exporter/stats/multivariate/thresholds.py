"""One-sided alert thresholds from the reference, at the window's size.

Each method compares a window statistic with what the reference alone would give at the
same size, and flags drift when the statistic exceeds the upper ``1 - alpha`` point of
that no-drift distribution (normal approximation; ``z = Phi^-1(1 - alpha)``, scipy's
``norm.isf``). ``alpha`` is the false-alarm rate wanted for one window. The reference's
own sampling error is part of each bound (the ``1/m`` terms), so the bound does not
shrink to the reference's value as windows grow: a reference of ``m`` rows cannot
vouch for a difference smaller than its own uncertainty.
"""

from __future__ import annotations

import math

from scipy.stats import norm


def _z(alpha: float) -> float:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"the false-alarm rate must be in (0, 1), got {alpha!r}")
    return float(norm.isf(alpha))


def mean_upper_bound(mean: float, sd: float, n: int, m: int, alpha: float) -> float:
    """Upper bound of a window mean: ``mean + z * sd * sqrt(1/n + 1/m)``.

    ``mean`` and ``sd`` describe the per-row values on the reference's ``m`` rows; the
    window has ``n`` rows (two-sample difference of means, central limit theorem).
    """
    return mean + _z(alpha) * sd * math.sqrt(1.0 / n + 1.0 / m)


def proportion_upper_bound(p: float, n: int, m: int, alpha: float) -> float:
    """Upper bound of a window share: ``p + z * sqrt(p (1 - p) (1/n + 1/m))``, capped at 1.

    ``p`` is the share expected from the reference's ``m`` rows; the window has ``n``.
    """
    return min(1.0, p + _z(alpha) * math.sqrt(p * (1.0 - p) * (1.0 / n + 1.0 / m)))


def auc_upper_bound(n1: int, n2: int, alpha: float) -> float:
    """Upper bound of a ROC AUC when the two classes do not differ:
    ``0.5 + z * sqrt((n1 + n2 + 1) / (12 n1 n2))``, capped at 1.

    Under no difference the AUC of any score computed without the labels is the
    Mann-Whitney ``U / (n1 n2)``, of mean 1/2 and that variance (ties only reduce it).
    """
    return min(1.0, 0.5 + _z(alpha) * math.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))
