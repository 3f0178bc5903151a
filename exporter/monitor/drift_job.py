"""The drift job: per-feature, dataset and multivariate drift of the current window."""

from __future__ import annotations

import time
from typing import Any

from exporter.config import MonitoringConfig
from exporter.data import history
from exporter.data.sources import load_current
from exporter.monitor.reference_job import ReferenceCache, ReferenceJob
from exporter.monitor.reports import drift_report
from exporter.stats import drift, multivariate
from exporter.stats.decision import assess
from exporter.stats.snapshots import DriftSnapshot


class DriftJob(ReferenceJob):
    """Per-feature, dataset and multivariate drift of the current window against the
    reference.

    The reference profiles (univariate, and multivariate when enabled) are built once
    and rebuilt only when the reference file changes (a new champion writes a new
    reference).
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
        current = load_current(self.config.data.current, now)
        result = assess(
            profile,
            current,
            rules=self.config.features.overrides,
            drift_threshold=cfg.drift_threshold,
            min_window_rows=cfg.min_window_rows,
        )
        joint = None
        if self._multivariate is not None:
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
