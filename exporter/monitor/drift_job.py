"""The drift job: per-feature, dataset and multivariate drift of the current window."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from exporter.config import MonitoringConfig
from exporter.data import history
from exporter.data.sources import load_current
from exporter.data.window_query import CategoryColumn, WindowColumns, read_window_columns
from exporter.monitor.reference_job import ReferenceCache, ReferenceJob
from exporter.monitor.reports import drift_report
from exporter.stats import drift, multivariate
from exporter.stats.decision import DatasetDrift, Rule, assess, assess_stats
from exporter.stats.snapshots import DriftSnapshot


def bin_counts(profile: drift.CategoricalProfile, column: CategoryColumn) -> np.ndarray:
    """A window column's counts per bin of `profile`: its categories, then unseen."""
    known = np.array([column.counts.get(c, 0) for c in profile.categories], dtype=np.int64)
    return np.append(known, sum(column.counts.values()) - known.sum())


def assess_window(
    profile: drift.ReferenceProfile,
    window: WindowColumns,
    *,
    rules: Mapping[str, Rule] | None,
    drift_threshold: float,
    min_window_rows: int,
) -> DatasetDrift:
    """:func:`~exporter.stats.decision.assess` of a window read by the database path:
    numeric statistics from its arrays, categorical ones from its counts."""
    numeric = {n: drift.numeric_stats(p, window.numeric[n]) for n, p in profile.numeric.items()}
    categorical = {
        n: drift.categorical_stats_from_counts(
            c, bin_counts(c, window.categorical[n]), window.categorical[n].n_missing
        )
        for n, c in profile.categorical.items()
    }
    return assess_stats(
        profile,
        numeric,
        categorical,
        window.n_rows,
        rules=rules,
        drift_threshold=drift_threshold,
        min_window_rows=min_window_rows,
    )


class DriftJob(ReferenceJob):
    """Per-feature, dataset and multivariate drift of the current window against the
    reference.

    The reference profiles (univariate, and multivariate when enabled) are built once
    and rebuilt only when the reference file changes (a new champion writes a new
    reference). The prediction log's window is read by the database path
    (:mod:`exporter.data.window_query`: numeric arrays, category counts and, for the
    multivariate methods, per-row category codes); files, and a log the database path
    cannot serve, by the frame path.
    """

    name = "drift"

    def __init__(self, config: MonitoringConfig, reference: ReferenceCache, **kwargs: Any):
        minutes = config.data_drift_monitoring.check_interval_minutes
        super().__init__(config, reference, minutes=minutes, **kwargs)
        self._profile_key: tuple[Any, ...] | None = None
        self._profile: drift.ReferenceProfile | None = None
        self._multivariate: multivariate.MultivariateProfile | None = None

    def profile(self, version: str) -> drift.ReferenceProfile:
        """The univariate profile (the multivariate one is fitted with it)."""
        key, frame = self.reference.get(version)
        if self._profile is None or key != self._profile_key:
            features = self.config.features
            cfg = self.config.data_drift_monitoring
            self._profile = drift.build_profile(
                frame,
                numeric=features.numeric,
                categorical=features.categorical,
                psi_bins=cfg.psi_bins,
            )
            self._multivariate = None
            if cfg.multivariate.enabled:
                self._multivariate = multivariate.fit_multivariate(
                    frame,
                    features.numeric,
                    features.categorical,
                    variance_share=cfg.multivariate.variance_share,
                    unusual_rate=cfg.multivariate.unusual_rate,
                )
            self._profile_key = key
        return self._profile

    def run(self) -> DriftSnapshot:
        cfg = self.config.data_drift_monitoring
        self.follow_model()
        model = self.model.current()
        profile = self.profile(model.version)
        now = time.time()
        result, current = self._assess(profile, now)
        joint = None
        if self._multivariate is not None and current is not None:
            joint = multivariate.assess_multivariate(
                self._multivariate,
                current,
                min_window_rows=cfg.min_window_rows,
                false_alarm_rate=cfg.multivariate.false_alarm_rate,
                max_rows=cfg.multivariate.domain_classifier_max_rows,
            )
        snapshot = DriftSnapshot(
            model=model,
            result=result,
            critical_threshold=cfg.critical_threshold,
            min_window_rows=cfg.min_window_rows,
            taken_at=now,
            multivariate=joint,
        )
        self.keep("drift", snapshot, drift_report, history.record_drift)
        return snapshot

    def _assess(
        self, profile: drift.ReferenceProfile, now: float
    ) -> tuple[DatasetDrift, pd.DataFrame | None]:
        """The window's per-feature drift and, when the multivariate methods are on, its
        rows (class notes)."""
        cfg = self.config.data_drift_monitoring
        source = self.config.data.current
        options: dict[str, Any] = {
            "rules": self.config.features.overrides,
            "drift_threshold": cfg.drift_threshold,
            "min_window_rows": cfg.min_window_rows,
        }
        rows = self._multivariate is not None
        if source.kind == "sql":
            window = read_window_columns(
                source,
                now,
                numeric=tuple(profile.numeric),
                categorical=tuple(profile.categorical),
                rows=rows,
            )
            if window is not None:
                return assess_window(profile, window, **options), window.frame() if rows else None
        current = load_current(source, now)
        return assess(profile, current, **options), current
