"""An incremental window over the prediction log: rows in, labels in, old rows out, and
on demand the drift and realized metrics of the rows it holds.

What a caller does
    :meth:`IncrementalWindow.append` the rows logged since its last look (id, ``ts``,
    score and every profiled feature, as columns), :meth:`~IncrementalWindow.add_labels`
    the labels that arrived since (by row id), :meth:`~IncrementalWindow.expire` with the
    current time, then read :meth:`~IncrementalWindow.drift`,
    :meth:`~IncrementalWindow.realized` or a single feature's statistics. Which rows are
    in the window: :mod:`.window` (the newest ``max_rows`` by ``ts``, not older than
    ``max_age_hours`` before the latest ``now``).
Cost
    Appending or evicting ``k`` rows costs ``O(k log n)`` for the window's order plus
    numpy work per batch: bin counts and missing counts change by addition and
    subtraction. Reading the drift merges the buffered changes into each numeric
    feature's sorted values (``O(n)`` numpy passes, no re-sort) and compares them with
    the reference; ROC AUC is recomputed only when labels changed.
Exactness
    Every result is the one the full computation gives on the same rows, bit for bit: the
    maintained state (sorted values, counts per bin, missing counts, confusion counts)
    is exactly what the full computation derives from the rows before its final step,
    and that final step is the same function (:func:`~exporter.stats.decision.assess_stats`
    over :func:`~exporter.stats.drift.numeric_stats_from_sorted` and
    :func:`~exporter.stats.drift.categorical_stats_from_counts`;
    :func:`~exporter.stats.performance.realized_from_confusion`).
The model's decision
    Realized metrics use ``ŷ = score >= threshold``, as the full computation does; the
    ``predicted`` column of the prediction log is not needed. A new threshold (a new
    model) needs a new window.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from exporter.stats.decision import DatasetDrift, Rule, assess_stats
from exporter.stats.drift.categorical import CategoricalStats
from exporter.stats.drift.numeric import NumericStats
from exporter.stats.drift.reference import ReferenceProfile
from exporter.stats.performance import Confusion, MetricSet
from exporter.stats.streaming.categorical import CategoricalFeature
from exporter.stats.streaming.labels import Labels, PendingLabels, label_values
from exporter.stats.streaming.numeric import NumericFeature
from exporter.stats.streaming.window import RowWindow

#: Default number of labels kept for rows the window has not seen yet.
DEFAULT_PENDING_LABELS = 10_000


class IncrementalWindow:
    """The rows of a window and their statistics against ``profile`` (module notes).

    ``threshold`` is the model's decision threshold for the realized metrics;
    ``max_rows`` and ``max_age_hours`` limit the window (either may be None);
    ``max_pending_labels`` bounds the labels kept for rows not seen yet
    (:class:`~.labels.PendingLabels`). Not thread-safe: one owner updates and reads it.
    """

    def __init__(
        self,
        profile: ReferenceProfile,
        threshold: float,
        *,
        max_rows: int | None,
        max_age_hours: float | None,
        max_pending_labels: int = DEFAULT_PENDING_LABELS,
    ) -> None:
        self.profile = profile
        self._rows = RowWindow(max_rows, max_age_hours)
        self._numeric = {name: NumericFeature(p) for name, p in profile.numeric.items()}
        self._categorical = {name: CategoricalFeature(p) for name, p in profile.categorical.items()}
        self._labels = Labels(threshold)
        self._pending = PendingLabels(max_pending_labels)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._rows

    def ids(self) -> list[str]:
        """The ids of the rows in the window, in arrival order."""
        return self._rows.ids()

    @property
    def n_pending_labels(self) -> int:
        """Labels waiting for a row the window has not seen."""
        return len(self._pending)

    def append(
        self,
        ids: Sequence[str],
        ts: Any,
        scores: Any,
        features: Mapping[str, Any] | pd.DataFrame,
    ) -> None:
        """Add rows, then evict those beyond the window's limits.

        ``ids`` are unique row ids (not already in the window); ``ts`` their Unix
        timestamps (finite), ``scores`` the model's scores (NaN: none; such a row is
        never a labelled row) and ``features`` a column of values per profiled feature
        (a DataFrame will do; extra columns are ignored). Missing values follow
        :mod:`exporter.stats.drift.inputs`. A label that arrived before its row is
        applied. Raises ValueError, naming the row or the feature, before any change
        when the rows cannot be added.
        """
        ids = list(ids)
        t = np.asarray(ts, dtype=np.float64).ravel()
        self._rows.check_new(ids, t)
        s = np.asarray(scores, dtype=np.float64).ravel()
        numeric = {name: f.encode(_column(features, name)) for name, f in self._numeric.items()}
        categorical = {
            name: f.encode(_column(features, name)) for name, f in self._categorical.items()
        }
        for name, column in [("score", s), *numeric.items(), *categorical.items()]:
            if column.size != t.size:
                raise ValueError(f"{name}: {column.size} values for {t.size} rows")
        slots = self._rows.add(ids, t)
        for name, values in numeric.items():
            self._numeric[name].add(slots, values)
        for name, bins in categorical.items():
            self._categorical[name].add(slots, bins)
        self._labels.add(slots, s, self._pending.take(ids))
        self._evict()

    def add_labels(self, ids: Sequence[str], labels: Any) -> None:
        """Record 0/1 labels by row id, in arrival order (a later label of a row wins).

        A row in the window gets its label now; any other id's label waits for its row
        (:class:`~.labels.PendingLabels`). Raises ValueError, naming the row, before any
        change when a label is not 0 or 1.
        """
        ids = list(ids)
        newest = dict(zip(ids, label_values(ids, labels).tolist(), strict=True))
        slots: list[int] = []
        values: list[float] = []
        for row_id, label in newest.items():
            slot = self._rows.slot(row_id)
            if slot is None:
                self._pending.put(row_id, label)
            else:
                slots.append(slot)
                values.append(label)
        if slots:
            self._labels.relabel(np.array(slots, dtype=np.int64), np.array(values))

    def expire(self, now: float) -> None:
        """Evict the rows older than ``max_age_hours`` before ``now`` (Unix seconds)."""
        self._rows.expire(now)
        self._evict()

    def _evict(self) -> None:
        slots = self._rows.evict()
        if slots.size:
            for numeric in self._numeric.values():
                numeric.remove(slots)
            for categorical in self._categorical.values():
                categorical.remove(slots)
            self._labels.remove(slots)

    def numeric_stats(self, feature: str) -> NumericStats:
        """KS, PSI and Wasserstein of a numeric feature: ``drift.numeric_stats`` of the
        window's values of ``feature``."""
        return self._numeric[feature].stats()

    def categorical_stats(self, feature: str) -> CategoricalStats:
        """PSI, Jensen-Shannon and unseen and missing counts of a categorical feature:
        ``drift.categorical_stats`` of the window's values of ``feature``."""
        return self._categorical[feature].stats()

    def drift(
        self,
        *,
        rules: Mapping[str, Rule] | None = None,
        drift_threshold: float,
        min_window_rows: int,
    ) -> DatasetDrift:
        """Every profiled feature decided and the dataset drift score:
        :func:`~exporter.stats.decision.assess` of the window's rows."""
        return assess_stats(
            self.profile,
            {name: f.stats() for name, f in self._numeric.items()},
            {name: f.stats() for name, f in self._categorical.items()},
            len(self),
            rules=rules,
            drift_threshold=drift_threshold,
            min_window_rows=min_window_rows,
        )

    @property
    def confusion(self) -> Confusion:
        """The confusion counts of the window's labelled rows."""
        return self._labels.counts

    def realized(self, min_rows: int = 1) -> MetricSet:
        """Realized metrics of the window's labelled rows:
        :func:`~exporter.stats.performance.realized_metrics` of their labels and scores."""
        return self._labels.realized(min_rows)


def _column(features: Mapping[str, Any] | pd.DataFrame, name: str) -> pd.Series:
    """The column of feature ``name`` as a Series (the values a DataFrame column of them
    would hold); ValueError naming the feature when absent."""
    try:
        column = features[name]
    except KeyError:
        raise ValueError(f"{name}: no column for this profiled feature") from None
    return column if isinstance(column, pd.Series) else pd.Series(column)
