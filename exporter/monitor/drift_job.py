"""The drift job: per-feature and dataset drift of the current window."""

from __future__ import annotations

import time
from typing import Any

from exporter.config import MonitoringConfig
from exporter.data import history
from exporter.data.sources import load_current
from exporter.monitor.reference_job import ReferenceCache, ReferenceJob
from exporter.monitor.reports import drift_report
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.snapshots import DriftSnapshot


class DriftJob(ReferenceJob):
    """Per-feature and dataset drift of the current window against the reference.

    The reference profile is built once and rebuilt only when the reference file
    changes (a new champion writes a new reference).
    """

    name = "drift"

    def __init__(self, config: MonitoringConfig, reference: ReferenceCache, **kwargs: Any):
        minutes = config.data_drift_monitoring.check_interval_minutes
        super().__init__(config, reference, minutes=minutes, **kwargs)
        self._profile_key: tuple[Any, ...] | None = None
        self._profile: drift.ReferenceProfile | None = None

    def profile(self, version: str) -> drift.ReferenceProfile:
        key, frame = self.reference.get(version)
        if self._profile is None or key != self._profile_key:
            features = self.config.features
            self._profile = drift.build_profile(
                frame,
                numeric=features.numeric,
                categorical=features.categorical,
                psi_bins=self.config.data_drift_monitoring.psi_bins,
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
        snapshot = DriftSnapshot(
            model=model,
            result=result,
            critical_threshold=min(1.0, cfg.drift_threshold * cfg.critical_multiplier),
            min_window_rows=cfg.min_window_rows,
            taken_at=now,
        )
        self.keep("drift", snapshot, drift_report, history.record_drift)
        return snapshot
