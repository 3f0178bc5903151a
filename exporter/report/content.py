"""What a report says, as plain data: built from a run's JSON reports, the frames and the
history rows, before any chart or HTML (no I/O here).

* :class:`RunContent`: one monitoring run, from its drift and performance JSON reports
  (numbers copied, never recomputed), the reference and current frames (the data
  analysis) and the alerts firing when the run finished.
* :class:`PeriodContent`: a period, from the history database's rows.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from exporter.domain.metrics import METRICS
from exporter.report.associations import Associations, associations, largest_changes

#: Feature pairs the report lists (and outlines) as the largest correlation changes.
TOP_CHANGES = 5
#: The per-feature statistics of a drift JSON report, with the names people read.
STATISTICS: tuple[tuple[str, str], ...] = (
    ("ks_statistic", "KS D"),
    ("ks_pvalue", "KS p-value"),
    ("psi", "PSI"),
    ("wasserstein", "Wasserstein / SD"),
    ("jensen_shannon", "Jensen-Shannon"),
)


@dataclass(frozen=True)
class FiringAlert:
    """An alert of the history that was firing at some moment."""

    alertname: str
    severity: str
    alert_type: str
    summary: str
    starts_at: str


def firing_at(alert_rows: Iterable[Mapping[str, Any]], at: float) -> list[FiringAlert]:
    """The alerts firing at `at` (Unix seconds): an episode (fingerprint, startsAt)
    notified as firing by then and not yet notified as resolved; oldest first."""
    firing: dict[tuple[str, str], Mapping[str, Any]] = {}
    resolved: set[tuple[str, str]] = set()
    for row in alert_rows:
        if row["first_notified_at"] > at:
            continue
        key = (row["fingerprint"], row["starts_at"])
        if row["status"] == "resolved":
            resolved.add(key)
        elif row["status"] == "firing":
            firing[key] = row
    return [
        FiringAlert(
            alertname=row["alertname"],
            severity=row["severity"] or "",
            alert_type=row["alert_type"] or "",
            summary=json.loads(row["annotations"]).get("summary", ""),
            starts_at=row["starts_at"],
        )
        for key, row in sorted(firing.items(), key=lambda item: item[1]["starts_at"])
        if key not in resolved
    ]


@dataclass(frozen=True)
class MetricRow:
    """One metric of a performance report; None where the report has no value."""

    metric: str
    realized: float | None
    estimated: float | None
    baseline: float | None
    minimum: float | None
    #: ``baseline - realized`` (absolute), where both exist.
    degradation: float | None

    @property
    def below_minimum(self) -> bool:
        """The realized value is under its configured minimum."""
        return (
            self.realized is not None and self.minimum is not None and self.realized < self.minimum
        )


def metric_rows(performance: Mapping[str, Any]) -> list[MetricRow]:
    """The metrics of a performance JSON report, in report order."""
    return [
        MetricRow(
            metric=metric,
            realized=performance["realized"].get(metric),
            estimated=performance["estimated"].get(metric),
            baseline=performance["baseline"].get(metric),
            minimum=performance["minimums"].get(metric),
            degradation=performance["degradation"].get(metric),
        )
        for metric in METRICS
    ]


@dataclass(frozen=True)
class OverviewRow:
    """One feature of the dataset overview: its kind, type and missing values, and a
    one-line description of each side (mean ± SD, or the most frequent category)."""

    feature: str
    kind: str
    dtype: str
    reference_missing: int
    current_missing: int
    reference: str
    current: str


def _describe(values: pd.Series, kind: str) -> str:
    present = values.dropna()
    if present.empty:
        return "no values"
    if kind == "numeric":
        numbers = present.astype(float)
        return f"mean {numbers.mean():.4g} ± {numbers.std(ddof=1) if len(numbers) > 1 else 0.0:.4g}"
    counts = present.astype(str).value_counts()
    return f"{counts.index[0]} {counts.iloc[0] / len(present):.1%} ({len(counts)} values)"


def overview(
    reference: pd.DataFrame, current: pd.DataFrame, features: Sequence[tuple[str, str]]
) -> list[OverviewRow]:
    """The overview rows of (feature, kind) pairs present in the reference."""
    rows = []
    for feature, kind in features:
        if feature not in reference.columns:
            continue
        present = feature in current.columns
        cur = current[feature] if present else pd.Series([], dtype=object)
        rows.append(
            OverviewRow(
                feature=feature,
                kind=kind,
                dtype=str(reference[feature].dtype),
                reference_missing=int(reference[feature].isna().sum()),
                current_missing=int(cur.isna().sum()) if present else len(current),
                reference=_describe(reference[feature], kind),
                current=_describe(cur, kind),
            )
        )
    return rows


@dataclass(frozen=True)
class TargetShares:
    """The target distribution: shares of customers predicted to churn (at the model's
    threshold) and of customers who churned (labels), reference and current; None
    where unknown."""

    predicted_reference: float | None
    predicted_current: float | None
    realized_reference: float | None
    realized_current: float | None
    labeled_rows: int


@dataclass(frozen=True)
class RunContent:
    """One monitoring run (the drift and performance JSON reports as written)."""

    model: Mapping[str, str]
    taken_at: float
    drift: Mapping[str, Any] | None
    performance: Mapping[str, Any] | None
    metrics: list[MetricRow]
    #: Firing alerts when the run finished; None when the history is off.
    alerts: list[FiringAlert] | None
    n_reference: int
    n_current: int
    overview: list[OverviewRow]
    reference_associations: Associations
    current_associations: Associations
    #: (first, second, reference value, current value), largest change first.
    changes: list[tuple[str, str, float, float]]
    target: TargetShares

    @property
    def drifted_features(self) -> list[str]:
        return [] if self.drift is None else list(self.drift["drifted_columns"])


def _share(values: Any) -> float | None:
    numbers = np.asarray(values, dtype=float)
    numbers = numbers[np.isfinite(numbers)]
    return float(numbers.mean()) if len(numbers) else None


def run_content(
    *,
    drift: Mapping[str, Any] | None,
    performance: Mapping[str, Any] | None,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[tuple[str, str]],
    reference_labels: Any,
    current_labels: Any,
    alert_rows: Iterable[Mapping[str, Any]] | None,
) -> RunContent:
    """The content of one run. `drift` and `performance` are the JSON reports (at least
    one); `features` are (name, kind) pairs; the labels are 0/1 arrays (churned) of the
    reference and of the current labelled rows; `alert_rows` are the history's alert
    rows (None: the history is off)."""
    anchor = drift if drift is not None else performance
    if anchor is None:
        raise ValueError("a run report needs a drift or a performance report")
    numeric = [f for f, kind in features if kind == "numeric"]
    categorical = [f for f, kind in features if kind == "categorical"]
    ref_assoc = associations(reference, numeric, categorical)
    cur_assoc = associations(current, numeric, categorical)
    realized_current = _share(current_labels)
    return RunContent(
        model=anchor["model"],
        taken_at=float(anchor["timestamp"]),
        drift=drift,
        performance=performance,
        metrics=[] if performance is None else metric_rows(performance),
        alerts=None if alert_rows is None else firing_at(alert_rows, float(anchor["timestamp"])),
        n_reference=len(reference),
        n_current=len(current),
        overview=overview(reference, current, features),
        reference_associations=ref_assoc,
        current_associations=cur_assoc,
        changes=largest_changes(ref_assoc, cur_assoc, TOP_CHANGES),
        target=TargetShares(
            predicted_reference=None
            if performance is None
            else performance["reference_positive_ratio"],
            predicted_current=None if performance is None else performance["positive_ratio"],
            realized_reference=_share(reference_labels),
            realized_current=realized_current,
            labeled_rows=len(np.asarray(current_labels)),
        ),
    )


# --------------------------------------------------------------------------- periods


@dataclass(frozen=True)
class DriftRun:
    """One drift run of the history."""

    ts: float
    score: float | None
    threshold: float
    drifted: bool | None
    drifted_columns: tuple[str, ...]
    n_current: int
    version: str


@dataclass(frozen=True)
class PeriodContent:
    """A period of the history: runs, metrics over time, alerts, retraining decisions."""

    since: float
    until: float
    model: str
    #: The monitored features, in config order (rows of the decisions chart).
    features: tuple[str, ...]
    drift_runs: list[DriftRun]
    #: metric -> [(ts, realized, estimated, minimum)], oldest first.
    performance: dict[str, list[tuple[float, float | None, float | None, float | None]]]
    alerts: list[Mapping[str, Any]]
    retraining: list[Mapping[str, Any]]

    @property
    def drifted_runs(self) -> int:
        return sum(run.drifted is True for run in self.drift_runs)

    def drift_counts(self) -> list[tuple[str, int]]:
        """(feature, runs in which it drifted), most often first, drifted ones only."""
        counts = {f: 0 for f in self.features}
        for run in self.drift_runs:
            for feature in run.drifted_columns:
                counts[feature] = counts.get(feature, 0) + 1
        return sorted(((f, n) for f, n in counts.items() if n), key=lambda p: (-p[1], p[0]))

    def alert_counts(self) -> list[tuple[str, str, int]]:
        """(alertname, severity, firing episodes), most first."""
        counts: dict[tuple[str, str], int] = {}
        for row in self.alerts:
            if row["status"] == "firing":
                key = (row["alertname"], row["severity"] or "")
                counts[key] = counts.get(key, 0) + 1
        return sorted(((a, s, n) for (a, s), n in counts.items()), key=lambda t: (-t[2], t[0]))


def period_content(
    *,
    since: float,
    until: float,
    model: str,
    features: Sequence[str],
    drift_rows: Iterable[Mapping[str, Any]],
    performance_rows: Iterable[Mapping[str, Any]],
    alert_rows: Iterable[Mapping[str, Any]],
    retraining_rows: Iterable[Mapping[str, Any]],
) -> PeriodContent:
    """The content of the period [`since`, `until`] from history rows (oldest first) of
    model `model` (alerts and retraining decisions of any model)."""
    runs = [
        DriftRun(
            ts=float(row["ts"]),
            score=row["score"],
            threshold=float(row["threshold"]),
            drifted=None if row["drifted"] is None else bool(row["drifted"]),
            drifted_columns=tuple(json.loads(row["drifted_columns"])),
            n_current=int(row["n_current"]),
            version=str(row["version"]),
        )
        for row in drift_rows
        if row["model"] == model and since <= row["ts"] <= until
    ]
    performance: dict[str, list[tuple[float, float | None, float | None, float | None]]] = {
        m: [] for m in METRICS
    }
    for row in performance_rows:
        if row["model"] == model and since <= row["ts"] <= until and row["metric"] in performance:
            performance[row["metric"]].append(
                (float(row["ts"]), row["realized"], row["estimated"], row["minimum"])
            )
    return PeriodContent(
        since=since,
        until=until,
        model=model,
        features=tuple(features),
        drift_runs=runs,
        performance=performance,
        alerts=[r for r in alert_rows if since <= r["first_notified_at"] <= until],
        retraining=[r for r in retraining_rows if since <= r["ts"] <= until],
    )
