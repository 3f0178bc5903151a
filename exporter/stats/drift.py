"""Drift statistics: KS, PSI, Wasserstein-1 and Jensen-Shannon, over a reference profile.

Pure computation over numpy arrays: no I/O, nothing about Prometheus. The reference is
summarised once (:func:`build_profile`, :func:`profile_numeric`,
:func:`profile_categorical`) and every current window is compared with that profile
(:func:`numeric_stats`, :func:`categorical_stats`), so a window costs one sort of its
own values plus linear passes. The array-level functions (:func:`ks_2samp`,
:func:`wasserstein`, :func:`psi`, :func:`jensen_shannon`) build a throw-away profile
and compare; they exist for one-off use and for tests.

Conventions shared by every function here
------------------------------------------
Missing values
    Numeric: NaN, None, ``pd.NA``, ``+inf``/``-inf`` and strings that do not parse as
    numbers are *missing*: excluded from every statistic and counted in ``n_nan``.
    Categorical: None, NaN and ``pd.NA`` are missing; every other value is a category.
Categories
    Compared by a canonical string key, so ``1``, ``1.0``, ``np.int64(1)`` and ``"1"``
    are the same category (an integer column that picked up a NaN and became float
    still matches its reference). Other floats use ``repr`` (``0.5``), strings are kept
    verbatim (no stripping, case-sensitive).
Empty current window (no non-missing value)
    Every statistic is None; ``current_ratios`` are all 0.
Empty reference (no non-missing value)
    Every statistic is None; there are no bins.

The statistics
--------------
KS
    Two-sample Kolmogorov-Smirnov, two-sided: ``D = max_x |F_ref(x) - F_cur(x)|`` over
    the pooled sample with right-continuous ECDFs (so ties are handled as by
    ``scipy.stats.ks_2samp``, which this reproduces exactly, statistic and p-value,
    ``method='auto'``: the exact distribution when ``max(n_ref, n_cur) <= 10000`` and
    scipy's exact computation succeeds, where D is rounded to a multiple of
    ``1/lcm(n_ref, n_cur)`` as scipy does; otherwise ``kstwo.sf(D, round(n_ref * n_cur /
    (n_ref + n_cur)))``, whose slow exact-Smirnov branch is evaluated by a vectorised
    sum for large samples, see :func:`_kstwo_sf`). D is unitless, in [0, 1]; a single
    value on either side is fine (scipy's exact distribution covers it).
Wasserstein-1
    ``W = integral |F_ref(x) - F_cur(x)| dx`` (equal to
    ``scipy.stats.wasserstein_distance``), divided by the reference's *population*
    standard deviation (``ddof=0``), so the result is in reference standard deviations:
    a pure location shift by ``k`` SDs gives ``k``. When the reference standard deviation
    is 0 (a constant or single-value reference) there is no spread to normalise by and
    the raw distance is returned, in the feature's own units: 0 when the window holds
    only the reference's value, otherwise the mean distance to it. It is finite and grows
    with the change, rather than jumping to infinity on one stray value.
PSI
    ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)`` with ``p`` the reference and ``q`` the
    current bin shares after smoothing: ``p_i = (c_i / n + eps) / (1 + k * eps)`` for each
    of the ``k`` bins, ``eps = PSI_EPSILON = 1e-4``, the same rule for both
    distributions, always applied (so PSI is finite and continuous in the counts; on
    bins that are not nearly empty the smoothing changes PSI by about 0.1 %). Each term
    is at most about ``ln(1e4) = 9.2``. Bins: see :func:`numeric_bin_edges` and
    :class:`CategoricalProfile`.
Jensen-Shannon
    Categorical only: ``sqrt((KL(p || m) + KL(q || m)) / 2)`` with ``m = (p + q) / 2``,
    logarithms in base 2, over the raw (unsmoothed) shares of the reference categories
    plus the unseen bin; equal to ``scipy.spatial.distance.jensenshannon(p, q, base=2)``,
    in [0, 1].

Cost: building a numeric profile sorts the reference once. Comparing a window of ``m``
values sorts it (``O(m log m)``), locates its distinct values among the reference's
``u`` distinct values with one binary search each (``O(m log u)``), makes linear passes
over both sets of distinct values (the Wasserstein integral and the KS maximum need
their merged order) and one binary search per PSI edge. Threads help: the heavy steps
are numpy calls that release the GIL, so features can be compared in parallel.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
from scipy import stats as _scipy_stats
from scipy.special import gammaln, rel_entr

try:  # scipy's own exact p-value routine, so exact-regime p-values match bit for bit.
    from scipy.stats._stats_py import _attempt_exact_2kssamp as _scipy_attempt_exact
except ImportError:  # pragma: no cover - only if scipy moves its private helper
    _scipy_attempt_exact = None  # type: ignore[assignment]

__all__ = [
    "DEFAULT_PSI_BINS",
    "KS_EXACT_MAX_N",
    "PSI_EPSILON",
    "UNSEEN_LABEL",
    "CategoricalProfile",
    "CategoricalStats",
    "KSResult",
    "NumericProfile",
    "NumericStats",
    "ReferenceProfile",
    "build_profile",
    "categorical_stats",
    "category_keys",
    "jensen_shannon",
    "jensen_shannon_from_counts",
    "ks_2samp",
    "numeric_bin_edges",
    "numeric_stats",
    "numeric_stats_sorted",
    "profile_categorical",
    "profile_numeric",
    "psi",
    "psi_from_counts",
    "to_float_array",
    "wasserstein",
]

#: Default number of reference-quantile bins for the numeric PSI.
DEFAULT_PSI_BINS = 10
#: Smoothing added to every bin share of both distributions before the PSI.
PSI_EPSILON = 1e-4
#: scipy's 'auto' method tries the exact KS distribution up to this sample size.
KS_EXACT_MAX_N = 10_000
#: Label of the categorical bin that collects values absent from the reference.
UNSEEN_LABEL = "<unseen>"
#: Categorical bin labels longer than this are shortened (the full value still matches).
MAX_LABEL_CHARS = 40


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


# ------------------------------------------------------------------------ inputs


def to_float_array(values: Any) -> np.ndarray:
    """``values`` as a 1-D float64 array; anything that is not a number becomes NaN.

    Accepts numpy arrays, pandas Series (including nullable and string dtypes) and
    sequences. Booleans become 0/1.
    """
    if isinstance(values, pd.Series | pd.Index):
        if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
            return np.asarray(values.to_numpy(dtype=np.float64, na_value=np.nan)).ravel()
        return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
    arr = np.asarray(values)
    if arr.dtype.kind in "fiub":
        return arr.astype(np.float64, copy=False).ravel()
    return to_float_array(pd.Series(arr.ravel(), dtype=object))


def _finite_sorted(values: Any) -> tuple[np.ndarray, int]:
    """(sorted finite values, number of missing values) of a numeric input."""
    x = to_float_array(values)
    finite = np.isfinite(x)
    if finite.all():
        return np.sort(x), 0
    kept = x[finite]
    return np.sort(kept), int(x.size - kept.size)


def _category_key(value: Any) -> str | None:
    """The canonical category key of one value; None for missing."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return None
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def _raw_value_counts(series: pd.Series) -> list[tuple[Any, int]]:
    """(value, count) of every distinct value, missing ones included or not."""
    try:  # Arrow's hash-based count: about twice as fast as pandas' on small windows
        counted = pa.array(series, from_pandas=True).value_counts()
        return list(zip(counted.field(0).to_pylist(), counted.field(1).to_pylist(), strict=True))
    except (pa.ArrowException, TypeError, ValueError):  # mixed object columns
        return list(series.value_counts(dropna=True, sort=False).items())


def category_keys(values: Any) -> dict[str, int]:
    """Counts of each canonical category key in ``values``; missing values are left out.

    Counting is done on the raw values first, so the Python work is per distinct value,
    not per row.
    """
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    counts: dict[str, int] = {}
    for raw, count in _raw_value_counts(series):
        key = _category_key(raw)
        if key is not None:
            counts[key] = counts.get(key, 0) + int(count)
    return counts


# ---------------------------------------------------------------------- profiles


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """What a numeric feature's reference contributes to every comparison.

    ``sorted_values`` are the finite reference values in ascending order (``n`` of them;
    ``n_nan`` values were missing). ``unique_values`` are their distinct values and
    ``cum_counts[k]`` how many reference values are ``<= unique_values[k]``. PSI bins are
    right-closed: ``(-inf, e_1], (e_1, e_2], ..., (e_m, +inf)`` for ``bin_edges`` ``e``
    (see :func:`numeric_bin_edges`); ``bin_labels`` name them and ``bin_ratios`` are the
    reference shares. ``std`` is the population standard deviation (None when ``n == 0``).
    Arrays are read-only.
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


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """A categorical feature's reference: category keys, counts and shares.

    ``categories`` are the canonical keys (see :func:`category_keys`) ordered by
    decreasing count, then by key. The PSI and Jensen-Shannon bins are these categories
    plus one last bin, labelled :data:`UNSEEN_LABEL`, for values the reference never
    had (its reference share is 0). ``bin_labels`` are the categories, shortened to
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
class ReferenceProfile:
    """Profiles of every monitored feature of a reference frame of ``n_rows`` rows."""

    numeric: Mapping[str, NumericProfile]
    categorical: Mapping[str, CategoricalProfile]
    n_rows: int
    psi_bins: int = DEFAULT_PSI_BINS

    @property
    def features(self) -> tuple[str, ...]:
        return (*self.numeric, *self.categorical)


def numeric_bin_edges(sorted_values: np.ndarray, bins: int = DEFAULT_PSI_BINS) -> np.ndarray:
    """Inner PSI bin edges from sorted finite reference values.

    The edges are the reference quantiles at ``1/bins, ..., (bins-1)/bins`` by the
    inverted-CDF definition (``np.quantile(method="inverted_cdf")``: each edge is an
    observed value), duplicates collapsed and the maximum dropped. With right-closed
    bins ``(-inf, e_1], ..., (e_m, +inf)`` every bin then holds at least one reference
    value, ties never split across bins, and continuous data get ``bins`` bins of about
    ``1/bins`` each; heavy ties give fewer bins.

    When no edge is left (a constant reference, or one whose values sit at its maximum
    at least ``1 - 1/bins`` of the time), the edges are ``[prev(v), v]`` for the
    maximum ``v`` (``prev`` = the next float down), i.e. three bins ``< v``, ``= v``
    and ``> v``, so a move in either direction shows. The outer bins of a constant
    reference are empty by construction; the PSI smoothing keeps them finite. Empty
    input gives no edges.
    """
    if bins < 2:
        raise ValueError(f"psi bins must be at least 2, got {bins}")
    n = sorted_values.size
    if n == 0:
        return np.empty(0)
    qs = np.arange(1, bins) / bins
    edges = np.unique(np.quantile(sorted_values, qs, method="inverted_cdf"))
    top = sorted_values[-1]
    edges = edges[edges < top]
    if edges.size == 0:
        edges = np.array([np.nextafter(top, -np.inf), top])
    return edges.astype(np.float64)


def _fmt_numbers(values: np.ndarray) -> list[str]:
    """Shortest ``%g`` formatting (at least 6 digits) that keeps distinct values distinct."""
    for digits in range(6, 18):
        out = [format(float(v), f".{digits}g") for v in values]
        if len(set(out)) == len(out):
            return out
    return [repr(float(v)) for v in values]


def _numeric_labels(edges: np.ndarray) -> tuple[str, ...]:
    """Interval labels prefixed by the 1-based bin number, zero-padded ("01 (-inf, 2]"),
    so that sorting the labels as text (as Prometheus and Grafana do) keeps bin order."""
    if edges.size == 0:
        return ()
    if edges.size == 2 and edges[0] == np.nextafter(edges[1], -np.inf):
        (v,) = _fmt_numbers(edges[1:])
        labels = [f"(-inf, {v})", f"[{v}, {v}]", f"({v}, +inf)"]
    else:
        text = _fmt_numbers(edges)
        bounds = ["-inf", *text, "+inf"]
        labels = [f"({lo}, {hi}]" for lo, hi in itertools.pairwise(bounds)]
        labels[-1] = f"({bounds[-2]}, +inf)"
    width = len(str(len(labels)))
    return tuple(f"{i:0{width}d} {label}" for i, label in enumerate(labels, start=1))


def _bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin: one binary search per edge."""
    if edges.size == 0:
        return np.empty(0, dtype=np.int64)
    upto = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], upto, [sorted_values.size]))).astype(np.int64)


def profile_numeric(values: Any, psi_bins: int = DEFAULT_PSI_BINS) -> NumericProfile:
    """Profile one numeric reference column (see :class:`NumericProfile`).

    Missing values (NaN, None, +-inf, unparsable) are excluded and counted. Cost: one
    sort of the column.
    """
    s, n_nan = _finite_sorted(values)
    return _profile_from_sorted(s, n_nan, psi_bins)


def _mean_std(sorted_values: np.ndarray) -> tuple[float | None, float | None]:
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


def _profile_from_sorted(s: np.ndarray, n_nan: int, psi_bins: int) -> NumericProfile:
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
    mean, std = _mean_std(s)
    edges = numeric_bin_edges(s, psi_bins)
    counts = _bin_counts(s, edges)
    ratios = counts / n if n else np.zeros(counts.size)
    return NumericProfile(
        sorted_values=_readonly(s),
        unique_values=_readonly(u_pad[:nu]),
        cum_counts=_readonly(cum_pad[1:]),
        bin_edges=_readonly(edges),
        bin_labels=_numeric_labels(edges),
        bin_counts=_readonly(counts),
        bin_ratios=_readonly(ratios.astype(np.float64)),
        std=std,
        mean=mean,
        n=n,
        n_nan=int(n_nan),
        _u_pad=_readonly(u_pad),
        _cum_pad=_readonly(cum_pad),
    )


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
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    keyed = category_keys(series)
    order = sorted(keyed.items(), key=lambda kv: (-kv[1], kv[0]))
    categories = tuple(k for k, _ in order)
    counts = np.array([c for _, c in order], dtype=np.int64)
    n = int(counts.sum())
    ratios = counts / n if n else np.zeros(0)
    return CategoricalProfile(
        categories=categories,
        counts=_readonly(counts),
        ratios=_readonly(ratios.astype(np.float64)),
        bin_labels=_short_labels(categories),
        n=n,
        n_nan=int(len(series) - n),
    )


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


# --------------------------------------------------------------- the statistics


class KSResult(NamedTuple):
    """Two-sided two-sample KS: statistic D, p-value, and scipy's method used."""

    statistic: float
    pvalue: float
    method: Literal["exact", "asymp"]


def _ks_pvalue(d: float, n1: int, n2: int) -> KSResult:
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
    prob = _kstwo_sf(float(d), int(np.round(en)))
    return KSResult(float(d), float(np.clip(prob, 0.0, 1.0)), "asymp")


def _attempt_exact_fallback(n1: int, n2: int, g: int, d: float) -> tuple[bool, float, float]:
    """Used only if scipy's private helper disappears: D rounded as scipy does, and no
    exact p-value (the asymptotic one is used, as scipy does when its exact one fails)."""
    lcm = (n1 // g) * n2
    h = int(np.round(d * lcm))
    return False, h / lcm, math.nan


#: From this ``n`` on, the Smirnov branch of :func:`_kstwo_sf` uses the vectorised sum.
SMIRNOV_FAST_MIN_N = 4000
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


def _kstwo_sf(x: float, n: int) -> float:
    """``scipy.stats.kstwo.sf(x, n)``, the two-sided one-sample KS survival function.

    scipy (``_kolmogn``) computes it, for ``n > 140``, ``1 < n x < n - 1`` and ``2.2 <= n
    x^2 < 370`` (or ``x >= 0.5``), as ``2 * scipy.special.smirnov(n, x)``, a sum of
    ``n (1 - x)`` terms that takes about 2.5 us per term (over a second at ``n = 5e5``).
    There, for ``n >= SMIRNOV_FAST_MIN_N``, the same sum is evaluated vectorised by
    :func:`_smirnov_sf` (relative difference to scipy below 1e-13 where the value is a
    normal float); everywhere else scipy is called.
    """
    t = n * x
    nxsq = t * x
    if n >= SMIRNOV_FAST_MIN_N and 1.0 < t < n - 1 and (x >= 0.5 or 2.2 <= nxsq < 370.0):
        return min(1.0, max(0.0, 2.0 * _smirnov_sf(n, x)))
    return float(_scipy_stats.kstwo.sf(x, n))


def _stirling_delta(k: np.ndarray) -> np.ndarray:
    """``log(k!) - (k + 1/2) log k + k - log(2 pi) / 2`` (Stirling's remainder), k >= 1.

    Exact (via ``gammaln``) below 100, else ``1/(12k) - 1/(360k^3) + 1/(1260k^5)``, whose
    error is below 1e-17 there.
    """
    out = np.empty_like(k)
    small = k < 100.0
    ks = k[small]
    out[small] = gammaln(ks + 1.0) - ((ks + 0.5) * np.log(ks) - ks + _HALF_LOG_2PI)
    r = 1.0 / k[~small]
    r2 = r * r
    out[~small] = r * (1 / 12 + r2 * (-1 / 360 + r2 * (1 / 1260)))
    return out


def _smirnov_log_terms(n: int, x: float, j: np.ndarray) -> np.ndarray:
    """Logs of the Birnbaum-Tingey terms ``j >= 1`` (see :func:`_smirnov_sf`)."""
    nj = n - j
    r2 = (x * n) / nj
    out = np.full(j.size, -np.inf)
    ok = r2 < 1.0  # terms with 1 - x - j/n <= 0 vanish
    if not ok.all():
        j, nj, r2 = j[ok], nj[ok], r2[ok]
    a = x + j / n
    log_t = 0.5 * np.log(2.0 * math.pi * j * nj / n * a * a)
    log_t += _stirling_delta(j)
    log_t += _stirling_delta(nj)
    np.negative(log_t, out=log_t)
    log_t += _stirling_delta(np.array([float(n)]))[0]
    log_t += j * np.log1p((x * n) / j)
    log_t += nj * np.log1p(-r2)
    out[ok] = log_t
    return out


#: Terms below exp(-_SMIRNOV_CUT) times the largest are left out (all of them together
#: weigh less than 1e-20 of the sum).
_SMIRNOV_CUT = 60.0
_SMIRNOV_STEP = 64


def _smirnov_sf(n: int, x: float) -> float:
    """One-sided ``P(D_n^+ >= x)`` by the Birnbaum-Tingey sum, vectorised.

    ``x * sum_{j=0}^{floor(n(1-x))} C(n, j) (x + j/n)^(j-1) (1 - x - j/n)^(n-j)``. Each
    term is taken in logs as ``log pmf + j log1p(x n / j) + (n - j) log1p(-x n / (n - j))
    - log(x + j / n)``, where ``pmf = C(n, j) p^j (1-p)^(n-j)`` at ``p = j/n`` comes from
    Stirling's formula with its remainder, so no large logarithms cancel and every term
    keeps about 13 significant digits. The terms are unimodal in ``j``: a coarse pass
    (every 64th term) finds where they matter, then those and the first and last 128
    terms are summed exactly.
    """
    jmax = math.floor(n * (1.0 - x))
    log_0 = n * math.log1p(-x) - math.log(x)
    step = _SMIRNOV_STEP
    if jmax > 16 * step:
        coarse = np.arange(1.0, jmax + 1.0, step)
        lc = _smirnov_log_terms(n, x, coarse)
        top = max(log_0, float(lc.max()))
        big = np.flatnonzero(lc > top - _SMIRNOV_CUT)
        spans = [(1, 2 * step), (jmax - 2 * step + 1, jmax)]
        if big.size:
            spans.append((int(coarse[big[0]]) - step, int(coarse[big[-1]]) + step))
        spans.sort()
        merged: list[list[int]] = []
        for lo, hi in spans:
            lo, hi = max(lo, 1), min(hi, jmax)
            if merged and lo <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], hi)
            elif lo <= hi:
                merged.append([lo, hi])
        j = np.concatenate([np.arange(float(lo), hi + 1.0) for lo, hi in merged])
    else:
        j = np.arange(1.0, jmax + 1.0)
    log_t = _smirnov_log_terms(n, x, j)
    top = max(log_0, float(log_t.max())) if log_t.size else log_0
    total = math.exp(log_0 - top) + float(np.sum(np.exp(log_t - top)))
    return x * total * math.exp(top)


#: Blocks of this many sorted keys are searched in the slice of the array they fall in,
#: which keeps each binary search in cache (about 25 % faster at a million keys).
_SEARCH_BLOCK = 8192


def _searchsorted_sorted(a: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """``np.searchsorted(a, keys, side="left")`` for sorted ``keys``, blockwise."""
    if keys.size < 8 * _SEARCH_BLOCK:
        return np.searchsorted(a, keys, side="left")
    out = np.empty(keys.size, dtype=np.intp)
    starts = np.searchsorted(a, keys[::_SEARCH_BLOCK], side="left").tolist()
    starts.append(a.size)
    for i in range(len(starts) - 1):
        lo, hi = starts[i], starts[i + 1]
        block = slice(i * _SEARCH_BLOCK, (i + 1) * _SEARCH_BLOCK)
        # Every key of the block lies between the block's first key and the next
        # block's first key, so its position lies in [lo, hi].
        np.add(np.searchsorted(a[lo : hi + 1], keys[block], side="left"), lo, out=out[block])
    return out


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """``sum(a * b)`` with numpy's pairwise summation, overwriting ``a`` (float64).

    Not ``np.dot``: BLAS may start threads for it that spin after the call and slow
    every later operation on a busy machine, and its plain accumulation is less exact.
    """
    np.multiply(a, b, out=a)
    return float(a.sum())


def _distinct(sorted_values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(distinct values, count of values <= each) of a sorted array; counts None when
    every value is distinct (they are then 1, 2, ..., n)."""
    n = sorted_values.size
    last = np.empty(n, dtype=bool)
    np.not_equal(sorted_values[1:], sorted_values[:-1], out=last[:-1])
    last[-1] = True
    if np.count_nonzero(last) == n:
        return sorted_values, None
    ends = np.flatnonzero(last)
    values = sorted_values[ends]
    ends += 1
    return values, ends


def _cdf_merge(profile: NumericProfile, cur: np.ndarray) -> tuple[float, float]:
    """KS D and the raw Wasserstein-1 distance of sorted finite ``cur`` vs the profile.

    Works on the merged distinct values of both samples without materialising them.
    With ``n1`` reference and ``n2`` current values, distinct reference values ``u_k``
    and distinct current values ``v_j``, and counts scaled by ``n1 * n2`` so that they
    are exact integers (below 2**53):

    * at ``u_k``: ``diff = #(ref <= u_k) n2 - #(cur <= u_k) n1``; the next merged
      point is the smaller of ``u_{k+1}`` and the first current value above ``u_k``;
    * at ``v_j``: ``diff = #(ref <= v_j) n2 - #(cur <= v_j) n1``; the next point is the
      smaller of ``v_{j+1}`` and the first reference value at or above ``v_j`` (so the
      gap is 0 when ``v_j`` is also a reference value: the reference side covers it).

    ``D = max |diff| / (n1 n2)`` (every ``diff`` is ``F_ref - F_cur`` at a point of the
    pooled sample, right-continuous as in scipy) and ``W = sum |diff| * gap / (n1 n2)``.
    Cost: one binary search per distinct current value, linear passes over both sets of
    distinct values.
    """
    u_pad = profile._u_pad
    nu = u_pad.size - 1
    u = u_pad[:nu]
    n1 = profile.n
    n2 = cur.size
    if n1 * n2 >= 2**53:
        raise ValueError(f"samples of {n1} and {n2} values are too large to compare exactly")
    values, counts = _distinct(cur)  # counts None: 1, 2, ..., n2
    nv = values.size

    # Where every distinct current value falls among the distinct reference values.
    left = _searchsorted_sorted(u, values)  # #(u < v)
    # Reference side. #(distinct cur <= u_k) = #(j : #(u < v_j) <= k).
    idx = np.bincount(left, minlength=nu + 1)[:nu]
    np.cumsum(idx, out=idx)
    nxt_ref = np.take(u_pad, left)  # first reference value >= v (+inf if none)
    left += nxt_ref == values  # now #(u <= v)
    gap = np.take(values, idx, mode="clip")  # first current value above u_k (if any)
    gap[np.searchsorted(idx, nv) :] = np.inf  # none above
    np.minimum(gap, u_pad[1:], out=gap)
    gap -= u
    if not math.isfinite(gap[-1]):  # past both maxima: F_ref = F_cur = 1
        gap[-1] = 0.0
    cur_le = idx if counts is None else np.take(np.concatenate(([0], counts)), idx)
    np.multiply(cur_le, n1, out=cur_le)
    diff = np.multiply(profile.cum_counts, n2)
    diff -= cur_le  # #(ref <= u_k) n2 - #(cur <= u_k) n1, exact in int64
    np.abs(diff, out=diff)
    d_max = int(diff.max())
    w = _dot(gap, diff)

    # Current side.
    diff = np.take(profile._cum_pad, left)
    diff *= n2
    if counts is None:
        ranks = np.arange(n1, n1 * (nv + 1), n1, dtype=np.int64)
    else:
        ranks = np.multiply(counts, n1)
    diff -= ranks  # #(ref <= v_j) n2 - #(cur <= v_j) n1
    np.abs(diff, out=diff)
    d_max = max(d_max, int(diff.max()))
    gap = nxt_ref
    np.minimum(gap[:-1], values[1:], out=gap[:-1])
    gap -= values
    if not math.isfinite(gap[-1]):  # past both maxima
        gap[-1] = 0.0
    w += _dot(gap, diff)
    scale = float(n1) * float(n2)  # the counts are integers below 2**53: exact in float
    return d_max / scale, w / scale


def psi_from_counts(reference: Any, current: Any, eps: float = PSI_EPSILON) -> float:
    """PSI of two count (or share) vectors over the same bins.

    ``PSI = sum (q - p) * ln(q / p)`` with ``p = (c_ref / n_ref + eps) / (1 + k eps)`` and
    likewise ``q``; ``k`` bins. Raises ValueError if either vector sums to 0.
    """
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(current, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError("psi: count vectors must be 1-D and of equal length")
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        raise ValueError("psi: empty distribution")
    k = p.size
    p = (p / sp + eps) / (1.0 + k * eps)
    q = (q / sq + eps) / (1.0 + k * eps)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon_from_counts(reference: Any, current: Any) -> float:
    """Jensen-Shannon distance (base 2, in [0, 1]) of two count vectors over the same bins.

    ``sqrt((sum rel_entr(p, m) + sum rel_entr(q, m)) / (2 ln 2))`` with ``p``, ``q`` the
    normalised vectors and ``m = (p + q) / 2``, as ``scipy.spatial.distance.jensenshannon``.
    """
    p = np.asarray(reference, dtype=np.float64)
    q = np.asarray(current, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 1:
        raise ValueError("jensen_shannon: count vectors must be 1-D and of equal length")
    sp, sq = p.sum(), q.sum()
    if sp <= 0 or sq <= 0:
        raise ValueError("jensen_shannon: empty distribution")
    p = p / sp
    q = q / sq
    m = (p + q) / 2.0
    js = np.sum(rel_entr(p, m)) + np.sum(rel_entr(q, m))
    js /= np.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


# ------------------------------------------------------------ window comparison


@dataclass(frozen=True, eq=False)
class NumericStats:
    """A numeric window against its reference profile.

    ``n`` non-missing current values were compared, ``n_nan`` were missing. ``ks`` is
    None, and so are ``wasserstein`` (normalised, see the module notes),
    ``wasserstein_raw`` and ``psi``, when either side has no values. ``current_counts``
    and ``current_ratios`` are per PSI bin of the profile.
    """

    n: int
    n_nan: int
    ks: KSResult | None
    wasserstein: float | None
    wasserstein_raw: float | None
    psi: float | None
    current_counts: np.ndarray
    current_ratios: np.ndarray


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


def numeric_stats(profile: NumericProfile, values: Any) -> NumericStats:
    """KS, PSI and normalised Wasserstein of ``values`` against ``profile``."""
    cur, n_nan = _finite_sorted(values)
    return numeric_stats_sorted(profile, cur, n_nan)


def numeric_stats_sorted(profile: NumericProfile, cur: np.ndarray, n_nan: int = 0) -> NumericStats:
    """As :func:`numeric_stats`, for already sorted, finite current values."""
    n2 = int(cur.size)
    counts = _bin_counts(cur, profile.bin_edges)
    ratios = counts / n2 if n2 else np.zeros(counts.size)
    if n2 == 0 or profile.n == 0:
        return NumericStats(n2, n_nan, None, None, None, None, counts, ratios)
    d, w_raw = _cdf_merge(profile, cur)
    ks = _ks_pvalue(d, profile.n, n2)
    std = profile.std or 0.0
    w = w_raw / std if std > 0 else w_raw
    p = psi_from_counts(profile.bin_counts, counts)
    return NumericStats(n2, n_nan, ks, w, w_raw, p, counts, ratios)


def categorical_stats(profile: CategoricalProfile, values: Any) -> CategoricalStats:
    """PSI and Jensen-Shannon distance of ``values`` against ``profile``."""
    series = values if isinstance(values, pd.Series) else pd.Series(np.asarray(values).ravel())
    keyed = category_keys(series)
    n2 = sum(keyed.values())
    known = np.array([keyed.get(c, 0) for c in profile.categories], dtype=np.int64)
    unseen = int(n2 - known.sum())
    counts = np.append(known, unseen)
    ratios = counts / n2 if n2 else np.zeros(counts.size)
    n_nan = int(len(series) - n2)
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


# ------------------------------------------------------- array-level functions


def ks_2samp(reference: Any, current: Any) -> KSResult | None:
    """Two-sided two-sample KS of two numeric samples, as ``scipy.stats.ks_2samp``.

    Missing values are dropped first; None when either sample is then empty.
    """
    ref, _ = _finite_sorted(reference)
    cur, _ = _finite_sorted(current)
    if ref.size == 0 or cur.size == 0:
        return None
    profile = _profile_from_sorted(ref, 0, 2)
    d, _w = _cdf_merge(profile, cur)
    return _ks_pvalue(d, ref.size, cur.size)


def wasserstein(reference: Any, current: Any, *, normalize: bool = True) -> float | None:
    """Wasserstein-1 distance, divided by the reference population SD if ``normalize``.

    Without normalisation it equals ``scipy.stats.wasserstein_distance``. A reference
    SD of 0 leaves the distance unnormalised (module notes). None if a side is empty.
    """
    ref, _ = _finite_sorted(reference)
    cur, _ = _finite_sorted(current)
    if ref.size == 0 or cur.size == 0:
        return None
    profile = _profile_from_sorted(ref, 0, 2)
    _d, w = _cdf_merge(profile, cur)
    if normalize and profile.std:
        return w / profile.std
    return w


def psi(
    reference: Any,
    current: Any,
    *,
    bins: int = DEFAULT_PSI_BINS,
    kind: Literal["numeric", "categorical"] = "numeric",
) -> float | None:
    """PSI of ``current`` against ``reference`` (numeric quantile bins or categories).

    None if a side has no non-missing value.
    """
    if kind == "categorical":
        return categorical_stats(profile_categorical(reference), current).psi
    if kind != "numeric":
        raise ValueError(f"kind must be 'numeric' or 'categorical', got {kind!r}")
    return numeric_stats(profile_numeric(reference, bins), current).psi


def jensen_shannon(reference: Any, current: Any) -> float | None:
    """Jensen-Shannon distance (base 2) of the category frequencies of two samples.

    The bins are the reference categories plus one for unseen values. None if a side
    has no non-missing value.
    """
    return categorical_stats(profile_categorical(reference), current).jensen_shannon
