"""Validation of paired inputs: two models scored on the same rows, and their labels.

Every row is one case scored by both models, so the arrays are aligned by position:
``labels[i]``, ``scores_a[i]`` and ``scores_b[i]`` belong to the same row.

labels
    1-D, values 0 or 1 (booleans and the floats 0.0 and 1.0 are accepted); returned as
    int64.
scores
    1-D, finite real numbers (booleans become 0/1); returned as float64. No unit is
    assumed: a score is only compared with other scores of the same model and with
    that model's threshold.
threshold
    a finite real number; a row is decided positive when ``score >= threshold``.

Nothing is dropped: a missing label or score (NaN, None, ``inf``) is an error, not a
row to skip, because skipping it in one array would misalign the pairs. The caller
keeps the rows that have both scores and a label. Empty arrays are valid. Every error
is a ValueError whose message starts with the argument's name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _one_dimensional(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def scores_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite scores; ValueError naming ``name``."""
    arr = _one_dimensional(values, name)
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be finite: {int(bad.sum())} value(s) are not, "
            f"the first at position {i} ({arr[i]})"
        )
    return arr


def labels_array(values: Any, name: str) -> np.ndarray:
    """``values`` as a 1-D int64 array of 0/1 labels; ValueError naming ``name``."""
    arr = _one_dimensional(values, name)
    bad = (arr != 0) & (arr != 1)  # NaN compares unequal to both
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{name} must be 0 or 1: {int(bad.sum())} value(s) are not, "
            f"the first at position {i} ({arr[i]})"
        )
    return arr.astype(np.int64)


def threshold_value(value: Any, name: str) -> float:
    """``value`` as a finite float; ValueError naming ``name``."""
    try:
        t = float(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a number, got {value!r}") from exc
    if not math.isfinite(t):
        raise ValueError(f"{name} must be finite, got {t}")
    return t


def paired_scores(
    scores_a: Any, scores_b: Any, names: tuple[str, str] = ("scores_a", "scores_b")
) -> tuple[np.ndarray, np.ndarray]:
    """Two score arrays of the same length (:func:`scores_array`); ``names`` name them."""
    a = scores_array(scores_a, names[0])
    b = scores_array(scores_b, names[1])
    if len(a) != len(b):
        raise ValueError(
            f"{names[1]} must have the same length as {names[0]}: {len(b)} != {len(a)}"
        )
    return a, b


def paired_inputs(
    labels: Any,
    scores_a: Any,
    scores_b: Any,
    names: tuple[str, str, str] = ("labels", "scores_a", "scores_b"),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, scores_a, scores_b) validated and of one length; ``names`` name them."""
    y = labels_array(labels, names[0])
    a, b = paired_scores(scores_a, scores_b, (names[1], names[2]))
    if len(a) != len(y):
        raise ValueError(
            f"{names[1]} must have the same length as {names[0]}: {len(a)} != {len(y)}"
        )
    return y, a, b
