"""The distances between two empirical CDFs: KS D and Wasserstein-1, in one pass.

KS
    ``D = max_x |F_ref(x) - F_cur(x)|`` over the pooled sample with right-continuous
    ECDFs (ties handled as by ``scipy.stats.ks_2samp``). Unitless, in [0, 1]. Its
    p-value: :mod:`.ks`.
Wasserstein-1
    ``W = integral |F_ref(x) - F_cur(x)| dx`` (equal to
    ``scipy.stats.wasserstein_distance``), in the feature's units;
    :func:`normalized_wasserstein` divides it by the reference's *population* standard
    deviation (``ddof=0``), so the result is in reference standard deviations: a pure
    location shift by ``k`` SDs gives ``k``. When the reference standard deviation is 0
    (a constant or single-value reference) there is no spread to normalise by and the
    raw distance is returned, in the feature's own units: 0 when the window holds only
    the reference's value, otherwise the mean distance to it. It is finite and grows
    with the change, rather than jumping to infinity on one stray value.

Cost of comparing a window of ``m`` values (already sorted) with a profile of ``u``
distinct reference values: one binary search per distinct current value
(``O(m log u)``) and linear passes over both sets of distinct values. The heavy steps
are numpy calls that release the GIL, so features can be compared in parallel threads.
"""

from __future__ import annotations

import math

import numpy as np

from exporter.stats.drift.numeric_profile import NumericProfile

#: Blocks of this many sorted keys are searched in the slice of the array they fall in,
#: which keeps each binary search in cache (about 25 % faster at a million keys).
_SEARCH_BLOCK = 8192


def normalized_wasserstein(raw: float, std: float | None) -> float:
    """``raw / std`` (reference standard deviations); ``raw`` itself when the reference
    standard deviation is 0 or unknown (see the module notes)."""
    return raw / std if std else raw


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


def cdf_merge(profile: NumericProfile, cur: np.ndarray) -> tuple[float, float]:
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
