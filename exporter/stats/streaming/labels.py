"""The realized model quality of an incremental window: scores, labels, running
confusion counts and ROC AUC.

Labelled rows
    A row counts once it has a 0/1 label (1 = the positive class, as the prediction log
    stores it) and a finite score, as :func:`~exporter.stats.performance.realized_metrics`
    drops rows whose label or score is missing. A later label for the same row replaces
    the earlier one (the newest label wins, as in the prediction log).
Confusion counts
    ``TP``, ``FP``, ``FN``, ``TN`` of the labelled rows against ``ŷ = score >= threshold``
    (:func:`~exporter.stats.performance.predicted_positive`), kept by adding the counts
    of arriving rows and labels and subtracting those of evicted rows and replaced
    labels (:func:`~exporter.stats.performance.confusion` of each batch): exact integers.
ROC AUC
    scikit-learn's, over the labelled rows, recomputed (``O(L log L)`` for ``L``
    labelled rows) only when the labelled rows or their labels changed since the last
    time; otherwise the cached value is returned.
Results
    :func:`~exporter.stats.performance.realized_from_confusion` turns the counts into
    the metrics, with the edge cases of the metric contract (undefined values left
    out), exactly as a full recomputation on the same rows.
Labels before their row
    :class:`PendingLabels` keeps labels whose row the window has not seen yet (it may
    not have been read yet) and hands them over when the row arrives. It holds at most
    ``limit`` of them, dropping the oldest first: a label for a row that already left
    the window, or never comes, waits there until pushed out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from exporter.stats.performance import (
    Confusion,
    MetricSet,
    confusion,
    predicted_positive,
    realized_from_confusion,
    roc_auc,
)
from exporter.stats.streaming.window import fit_slots


def label_values(ids: Sequence[str], labels: Any) -> np.ndarray:
    """``labels`` as float64 0/1, one per id; ValueError naming the first row whose
    label is not 0 or 1, or if the lengths differ."""
    y = np.asarray(labels, dtype=np.float64).ravel()
    if y.size != len(ids):
        raise ValueError(f"{y.size} labels for {len(ids)} ids")
    bad = np.flatnonzero((y != 0.0) & (y != 1.0))
    if bad.size:
        raise ValueError(f"row {ids[int(bad[0])]!r}: label {float(y[bad[0]])} is not 0 or 1")
    return y


class Labels:
    """Scores and labels of a window's rows, their confusion counts and ROC AUC."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._scores = np.empty(0)  # per slot
        self._labels = np.empty(0)  # per slot; NaN: no label (and free slots)
        self._counts = Confusion(0, 0, 0, 0)
        self._auc: float | None = None  # None: not computed since the last change

    @property
    def counts(self) -> Confusion:
        """The confusion counts of the labelled rows."""
        return self._counts

    def add(self, slots: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> None:
        """Add the rows of ``slots`` with their scores and labels (float64; NaN: none)."""
        self._scores = fit_slots(self._scores, slots, np.nan)
        self._labels = fit_slots(self._labels, slots, np.nan)
        self._scores[slots] = scores
        self._labels[slots] = labels
        self._change(Confusion(0, 0, 0, 0), self._labelled(slots))

    def remove(self, slots: np.ndarray) -> None:
        """Remove the rows of ``slots`` (added before)."""
        before = self._labelled(slots)
        self._labels[slots] = np.nan
        self._change(before, Confusion(0, 0, 0, 0))

    def relabel(self, slots: np.ndarray, labels: np.ndarray) -> None:
        """Set the labels (0/1 float64) of the rows of ``slots`` (distinct, in the window)."""
        before = self._labelled(slots)
        self._labels[slots] = labels
        self._change(before, self._labelled(slots))

    def _labelled(self, slots: np.ndarray) -> Confusion:
        """The confusion counts of the labelled rows among ``slots``."""
        y, s = self._labels[slots], self._scores[slots]
        keep = np.isfinite(y) & np.isfinite(s)
        return confusion(y[keep], predicted_positive(s[keep], self.threshold))

    def _change(self, before: Confusion, after: Confusion) -> None:
        if before.n or after.n:
            self._counts = self._counts - before + after
            self._auc = None

    def _roc_auc(self) -> float:
        if self._auc is None:
            keep = np.isfinite(self._labels) & np.isfinite(self._scores)
            self._auc = roc_auc(self._labels[keep].astype(int), self._scores[keep])
        return self._auc

    def realized(self, min_rows: int = 1) -> MetricSet:
        """The realized metrics of the labelled rows (:mod:`exporter.stats.performance`)."""
        return realized_from_confusion(self._counts, self._roc_auc, min_rows)


class PendingLabels:
    """Labels of rows not in the window yet, at most ``limit``, the oldest dropped first."""

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"the pending labels limit must be at least 0, got {limit}")
        self.limit = limit
        self._labels: dict[str, float] = {}

    def __len__(self) -> int:
        return len(self._labels)

    def put(self, row_id: str, label: float) -> None:
        """Keep ``label`` for ``row_id`` (replacing an earlier one, which it makes newest)."""
        self._labels.pop(row_id, None)
        self._labels[row_id] = label
        while len(self._labels) > self.limit:
            del self._labels[next(iter(self._labels))]

    def take(self, ids: Sequence[str]) -> np.ndarray:
        """The labels waiting for ``ids`` (float64, NaN where none), no longer pending."""
        out = np.full(len(ids), np.nan)
        if self._labels:
            for i, row_id in enumerate(ids):
                label = self._labels.pop(row_id, None)
                if label is not None:
                    out[i] = label
        return out
