"""The streaming job: drift of the current window, updated at the cost of the new rows.

With ``data_drift_monitoring.update_seconds`` set (and the prediction log as the
current window), the exporter runs this job every that many seconds beside the full
runs. It keeps the window of ``data.current`` (the newest ``window_rows`` rows of the
last ``window_hours``, the full run's window) in an
:class:`~exporter.stats.streaming.IncrementalWindow`, reads only the rows and labels
logged since its last look (:mod:`exporter.data.logtail`) and publishes a
:class:`~exporter.stats.snapshots.DriftSnapshot` whose per-feature and dataset drift
equal the full computation on the same rows.

What feeds the gauges
    With streaming on, the per-feature and dataset drift families (``churn_feature_*``,
    ``churn_data_drift_*``, ``churn_window_rows``, ``churn_reference_rows``) come from
    this job's snapshot (`collector.STREAMING_BUILDERS`); the full drift run still writes
    the reports and the history on its own schedule and serves the multivariate
    families, which only it computes. The job's health is ``task="stream"``.
Rebuilds
    The window is read whole on the first run, after a restart (the window lives in
    memory only), when the reference or the monitored model changes, and after a failed
    update (so a half-applied update is never served).
The model
    The job follows the model the full jobs resolve (they refresh the shared
    `ModelWatch`), so its cycle stays short. Only while no job has resolved it yet (the
    first run, when every job starts at once) does it resolve the alias itself: a window
    built for the unknown version would be read whole again once the version is known.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from sqlalchemy.engine import Engine

from exporter.config import MonitoringConfig
from exporter.data.logtail import LogRead, read_since, read_window
from exporter.data.predlog import make_engine
from exporter.domain.model import UNRESOLVED
from exporter.monitor.reference_job import ModelSource, ReferenceCache, follow_model
from exporter.stats import drift
from exporter.stats.snapshots import DriftSnapshot
from exporter.stats.streaming import IncrementalWindow

log = logging.getLogger(__name__)

#: Most new rows read in one query; a larger backlog is read in several.
READ_CHUNK = 50_000
#: The decision threshold the window's realized metrics use before the model's is known
#: (the metrics are not served by this job; only drift is).
_UNKNOWN_THRESHOLD = 0.5


class StreamJob:
    """Drift of the current window, updated every ``update_seconds`` (module notes)."""

    name = "stream"

    def __init__(
        self, config: MonitoringConfig, reference: ReferenceCache, *, model: ModelSource
    ) -> None:
        seconds = config.data_drift_monitoring.update_seconds
        if seconds is None:
            raise ValueError("data_drift_monitoring.update_seconds is not set")
        if config.data.current.kind != "sql":
            raise ValueError("streaming follows the prediction log: data.current.kind is 'file'")
        self.config = config
        self.reference = reference
        self.model = model
        self.interval_seconds = float(seconds)
        self._engine: Engine | None = None
        self._window: IncrementalWindow | None = None
        self._key: tuple[Any, ...] | None = None
        self._row_key = 0
        self._label_key = 0
        #: Full reads of the window since start (1 after the first run).
        self.rebuilds = 0

    @property
    def window(self) -> IncrementalWindow | None:
        """The window as of the last successful run (None before it)."""
        return self._window

    def run(self) -> DriftSnapshot:
        cfg = self.config.data_drift_monitoring
        if self.model.current().version == UNRESOLVED:
            follow_model(self.model)
        model = self.model.current()
        threshold = self.model.threshold()
        ref_key, frame = self.reference.get(model.version)
        key = (ref_key, threshold)
        now = time.time()
        try:
            if self._window is None or key != self._key:
                self._window = None
                self._window = self._rebuild(frame, threshold, now)
                self._key = key
            else:
                self._update(self._window)
            window = self._window
            window.expire(now)
            result = window.drift(
                rules=self.config.features.overrides,
                drift_threshold=cfg.drift_threshold,
                min_window_rows=cfg.min_window_rows,
            )
        except BaseException:
            self._window = None  # never serve a half-applied update: rebuild next time
            raise
        return DriftSnapshot(
            model=model,
            result=result,
            critical_threshold=cfg.critical_threshold,
            min_window_rows=cfg.min_window_rows,
            taken_at=now,
        )

    def _engine_for_log(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.config.data.current.url)
        return self._engine

    def _rebuild(self, frame: Any, threshold: float | None, now: float) -> IncrementalWindow:
        """A new window over the reference `frame`, filled from the log."""
        features = self.config.features
        source = self.config.data.current
        profile = drift.build_profile(
            frame,
            numeric=features.numeric,
            categorical=features.categorical,
            psi_bins=self.config.data_drift_monitoring.psi_bins,
        )
        window = IncrementalWindow(
            profile,
            _UNKNOWN_THRESHOLD if threshold is None else threshold,
            max_rows=source.window_rows,
            max_age_hours=source.window_hours,
        )
        self._feed(window, read_window(self._engine_for_log(), source, now))
        self.rebuilds += 1
        log.info("stream window rebuilt from the log: %d rows", len(window))
        return window

    def _update(self, window: IncrementalWindow) -> None:
        """Add the rows and labels logged since the last look."""
        while True:
            read = read_since(
                self._engine_for_log(),
                self.config.data.current,
                row_key=self._row_key,
                label_key=self._label_key,
                limit=READ_CHUNK,
            )
            self._feed(window, read)
            if len(read.rows) < READ_CHUNK:
                return

    def _feed(self, window: IncrementalWindow, read: LogRead) -> None:
        rows, labels = read.rows, read.labels
        if len(rows):
            window.append(rows.ids, rows.ts, rows.scores, rows.features)
        if len(labels):
            window.add_labels(labels.prediction_ids, labels.actual)
        self._row_key, self._label_key = read.row_key, read.label_key
