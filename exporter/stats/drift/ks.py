"""The two-sample Kolmogorov-Smirnov test, reproducing ``scipy.stats.ks_2samp``.

Two-sided, ``D = max_x |F_ref(x) - F_cur(x)|`` (:func:`~exporter.stats.drift.ecdf.cdf_merge`),
unitless, in [0, 1]. The p-value is scipy's exactly, statistic and p-value,
``method='auto'``: the exact distribution when ``max(n_ref, n_cur) <= 10000`` and
scipy's exact computation succeeds, where D is rounded to a multiple of
``1/lcm(n_ref, n_cur)`` as scipy does; otherwise ``kstwo.sf(D, round(n_ref * n_cur /
(n_ref + n_cur)))``, whose slow exact-Smirnov branch is evaluated by a vectorised sum
for large samples (:func:`kstwo_sf`). A single value on either side is fine (scipy's
exact distribution covers it).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

from exporter.stats.drift.smirnov import smirnov_sf

try:  # scipy's own exact p-value routine, so exact-regime p-values match bit for bit.
    from scipy.stats._stats_py import _attempt_exact_2kssamp as _scipy_attempt_exact
except ImportError:  # pragma: no cover - only if scipy moves its private helper
    _scipy_attempt_exact = None

#: scipy's 'auto' method tries the exact KS distribution up to this sample size.
KS_EXACT_MAX_N = 10_000
#: From this ``n`` on, the Smirnov branch of :func:`kstwo_sf` uses the vectorised sum.
SMIRNOV_FAST_MIN_N = 4000


class KSResult(NamedTuple):
    """Two-sided two-sample KS: statistic D, p-value, and scipy's method used."""

    statistic: float
    pvalue: float
    method: Literal["exact", "asymp"]


def ks_pvalue(d: float, n1: int, n2: int) -> KSResult:
    """p-value of D exactly as ``scipy.stats.ks_2samp(method='auto')`` computes it."""
    g = math.gcd(n1, n2)
    if max(n1, n2) <= KS_EXACT_MAX_N:
        if _scipy_attempt_exact is not None:
            success, d_exact, prob = _scipy_attempt_exact(n1, n2, g, d, "two-sided")
        else:
            success, d_exact, prob = _attempt_exact_fallback(n1, n2, g, d)
        d = float(d_exact)
        if success:
            return KSResult(d, float(np.clip(prob, 0.0, 1.0)), "exact")
    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    prob = kstwo_sf(float(d), int(np.round(en)))
    return KSResult(float(d), float(np.clip(prob, 0.0, 1.0)), "asymp")


def _attempt_exact_fallback(n1: int, n2: int, g: int, d: float) -> tuple[bool, float, float]:
    """Used only if scipy's private helper disappears: D rounded as scipy does, and no
    exact p-value (the asymptotic one is used, as scipy does when its exact one fails)."""
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    return False, h / lcm, math.nan


def kstwo_sf(x: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(x, n)``, the two-sided one-sample KS survival function.

    scipy (``_kolmogn``) computes it, for ``n > 140``, ``1 < n x < n - 1`` and ``2.2 <= n
    x^2 < 370`` (or ``x >= 0.5``), as ``2 * scipy.special.smirnov(n, x)``, a sum of
    ``n (1 - x)`` terms that takes about 2.5 us per term (over a second at ``n = 5e5``).
    There, for ``n >= SMIRNOV_FAST_MIN_N``, the same sum is evaluated vectorised by
    :func:`~exporter.stats.drift.smirnov.smirnov_sf` (relative difference to scipy below
    1e-13 where the value is a normal float); everywhere else scipy is called.
    """
    t = n * x
    nxsq = t * x
    if n >= SMIRNOV_FAST_MIN_N and 1.0 < t < n - 1 and (x >= 0.5 or 2.2 <= nxsq < 370.0):
        return min(1.0, max(0.0, 2.0 * smirnov_sf(n, x)))
    return float(_scipy_stats.kstwo.sf(x, n))
