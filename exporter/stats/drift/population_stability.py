"""The population stability index and the numeric bins it is computed over.

PSI
    ``PSI = sum_i (q_i - p_i) * ln(q_i / p_i)`` with ``p`` the reference and ``q`` the
    current bin shares after smoothing: ``p_i = (c_i / n + eps) / (1 + k * eps)`` for each
    of the ``k`` bins, ``eps = PSI_EPSILON = 1e-4``, the same rule for both
    distributions, always applied (so PSI is finite and continuous in the counts; on
    bins that are not nearly empty the smoothing changes PSI by about 0.1 %). Each term
    is at most about ``ln(1e4) = 9.2``. Unitless, >= 0.
Bins
    Numeric features: reference quantiles, see :func:`numeric_bin_edges`. Categorical
    features: the reference categories plus one unseen bin
    (:class:`~exporter.stats.drift.categorical.CategoricalProfile`).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from exporter.stats.drift.inputs import count_shares

#: Default number of reference-quantile bins for the numeric PSI.
DEFAULT_PSI_BINS = 10
#: Smoothing added to every bin share of both distributions before the PSI.
PSI_EPSILON = 1e-4


def psi_from_counts(reference: Any, current: Any, eps: float = PSI_EPSILON) -> float:
    """PSI of two count (or share) vectors over the same bins.

    ``PSI = sum (q - p) * ln(q / p)`` with ``p = (c_ref / n_ref + eps) / (1 + k eps)`` and
    likewise ``q``; ``k`` bins. Raises ValueError if either vector sums to 0.
    """
    p, q = count_shares(reference, current, "psi")
    k = p.size
    p = (p + eps) / (1.0 + k * eps)
    q = (q + eps) / (1.0 + k * eps)
    return float(np.sum((q - p) * np.log(q / p)))


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


def bin_counts(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per right-closed bin: one binary search per edge."""
    if edges.size == 0:
        return np.empty(0, dtype=np.int64)
    upto = np.searchsorted(sorted_values, edges, side="right")
    return np.diff(np.concatenate(([0], upto, [sorted_values.size]))).astype(np.int64)


def _fmt_numbers(values: np.ndarray) -> list[str]:
    """Shortest ``%g`` formatting (at least 6 digits) that keeps distinct values distinct."""
    for digits in range(6, 18):
        out = [format(float(v), f".{digits}g") for v in values]
        if len(set(out)) == len(out):
            return out
    return [repr(float(v)) for v in values]


def numeric_bin_labels(edges: np.ndarray) -> tuple[str, ...]:
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
