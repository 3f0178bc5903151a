"""Immutable results of one monitoring run: the statistics with their context.

A job builds one of these off to the side and publishes it whole (see
:mod:`exporter.monitor.store`); the collector, the history and the summary read it.
Plain data, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from exporter.domain.model import ModelRef
from exporter.stats.decision import DatasetDrift
from exporter.stats.multivariate import MultivariateDrift
from exporter.stats.paired import PairedComparison
from exporter.stats.performance import MetricSet


@dataclass(frozen=True)
class DriftSnapshot:
    """One finished data-drift computation; ``multivariate`` is None when it is off."""

    model: ModelRef
    result: DatasetDrift
    critical_threshold: float
    min_window_rows: int
    taken_at: float
    multivariate: MultivariateDrift | None = None


@dataclass(frozen=True)
class PerformanceSnapshot:
    """One finished model-quality computation (realized, estimated, prediction drift)."""

    model: ModelRef
    realized: MetricSet
    estimated: MetricSet
    baseline: Mapping[str, float]
    minimums: Mapping[str, float]
    degradation_threshold: float
    window_rows: int
    prediction_psi: float | None
    prediction_ks: float | None
    prediction_psi_threshold: float
    positive_ratio: float | None
    reference_positive_ratio: float | None
    revenue_at_risk: float
    taken_at: float


@dataclass(frozen=True)
class RoleQuality:
    """One model of a champion-challenger comparison, measured on the shadowed rows."""

    role: str
    model: ModelRef
    threshold: float
    #: Realized metrics on the labelled rows both models scored.
    realized: MetricSet
    #: The label-free estimate on the window's rows both models scored.
    estimated: MetricSet
    #: PSI of the model's scores on those rows against its own reference (None: no
    #: reference scores, or too few rows).
    prediction_psi: float | None


@dataclass(frozen=True)
class ComparisonSnapshot:
    """Champion against challenger on the same customers (``challenger`` None: the
    registry has no challenger alias, and nothing is compared)."""

    model: ModelRef
    champion: RoleQuality | None
    challenger: RoleQuality | None
    #: The paired tests on the labelled rows both scored (None without a challenger).
    paired: PairedComparison | None
    #: Share of the window's shadowed rows on which both decisions agree.
    agreement_ratio: float | None
    shadowed_rows: int
    pvalue_threshold: float
    min_paired_rows: int
    taken_at: float
