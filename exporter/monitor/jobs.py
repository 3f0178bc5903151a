"""Scheduled jobs: each wires a source to a computation and publishes a snapshot.

A job is an object with a ``name``, an ``interval_seconds`` and a ``run()`` that returns
a snapshot or raises. `run_job` does the bookkeeping every job shares: timing, the
success flag, counters, logging the traceback of a failure, and publishing only a
successful snapshot, so a failure leaves the last good values in place.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exporter.config import MonitoringConfig
from exporter.data import history
from exporter.data.sources import (
    ACTUAL,
    SCORE,
    SourceError,
    load_current,
    load_labelled,
    load_reference,
)
from exporter.domain import schema
from exporter.domain.model import ModelRef
from exporter.model.registry import LoadedModel, load_champion
from exporter.model.studies import StudyProgress, study_progress
from exporter.monitor import reports
from exporter.monitor.store import SnapshotStore
from exporter.stats import drift
from exporter.stats.decision import DatasetDrift, assess, compare_numeric
from exporter.stats.performance import (
    Calibrator,
    MetricSet,
    degradation,
    estimated_metrics,
    fit_calibrator,
    positive_ratio,
    realized_metrics,
    revenue_at_risk,
)
from exporter.stats.snapshots import DriftSnapshot, PerformanceSnapshot

log = logging.getLogger(__name__)


class Job(Protocol):
    name: str
    interval_seconds: float

    def run(self) -> Any: ...


def run_job(job: Job, store: SnapshotStore, clock: Callable[[], float] = time.time) -> bool:
    """Run `job` once, publish its snapshot on success, record its health; never raise."""
    started = time.perf_counter()
    try:
        snapshot = job.run()
    except Exception as err:
        duration = time.perf_counter() - started
        log.exception("job %s failed after %.2fs", job.name, duration)
        store.record(job.name, ok=False, duration=duration, at=clock(), error=str(err))
        return False
    duration = time.perf_counter() - started
    store.publish(job.name, snapshot)
    store.record(job.name, ok=True, duration=duration, at=clock(), error=None)
    log.info("job %s finished in %.2fs", job.name, duration)
    return True


class ReferenceCache:
    """The reference frame, read once and again only when its file changes.

    Jobs derive their own artifacts (a drift profile, a calibrator) from the frame and
    key them on `key`, which changes with the file's mtime and size.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._frame: pd.DataFrame | None = None

    def get(self, version: str) -> tuple[tuple[Any, ...], pd.DataFrame]:
        """The frame and its key; a new model `version` forces a fresh read."""
        with self._lock:
            try:
                stat = os.stat(self.path)
                key: tuple[Any, ...] = (self.path, stat.st_mtime_ns, stat.st_size, version)
            except OSError:
                key = (self.path, None, None, version)
            if self._frame is None or key != self._key:
                self._frame = load_reference(self.path)
                self._key = key
                log.info("reference loaded from %s (%d rows)", self.path, len(self._frame))
            return self._key, self._frame


class ModelSource(Protocol):
    """What the jobs need to know of the monitored model (`registry.ModelWatch`)."""

    def refresh(self) -> bool: ...

    def current(self) -> ModelRef: ...

    def baseline(self) -> Mapping[str, float]: ...

    def threshold(self) -> float | None: ...


class _ReferenceJob:
    """What the drift and performance jobs share: the config, the reference, the model
    being watched, the schedule and where results go besides the snapshot."""

    def __init__(
        self,
        config: MonitoringConfig,
        reference: ReferenceCache,
        *,
        minutes: float,
        model: ModelSource,
        interval_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
        write_reports: bool = True,
        history: Engine | None = None,
    ) -> None:
        self.config = config
        self.reference = reference
        self.model = model
        self.history = history
        self.interval_seconds = interval_seconds or minutes * 60.0
        self.clock = clock
        self.write_reports = write_reports


class DriftJob(_ReferenceJob):
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
        _refresh(self.model)
        model = self.model.current()
        profile = self.profile(model.version)
        now = self.clock()
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
        if self.write_reports:
            _write_report(self.config, "drift", drift_report(snapshot), now)
        _append_history(self.history, history.record_drift, snapshot)
        return snapshot


@dataclass(frozen=True)
class _ScoreReference:
    """What the performance job derives from the reference's scores and labels."""

    calibrator: Calibrator | None
    scores: drift.NumericProfile
    threshold: float
    positive_ratio: float | None


class PerformanceJob(_ReferenceJob):
    """Realized and estimated model quality, prediction drift and revenue at risk."""

    name = "performance"

    def __init__(self, config: MonitoringConfig, reference: ReferenceCache, **kwargs: Any):
        minutes = config.performance_monitoring.check_interval_minutes
        super().__init__(config, reference, minutes=minutes, **kwargs)
        self._derived: tuple[tuple[Any, ...], _ScoreReference] | None = None
        self._scorer: LoadedModel | None = None

    def score_reference(self, version: str, threshold: float) -> _ScoreReference:
        key, frame = self.reference.get(version)
        key = (*key, threshold)
        if self._derived is None or self._derived[0] != key:
            if SCORE not in frame.columns:
                raise SourceError(
                    f"{self.reference.path}: the reference has no '{SCORE}' column of model "
                    "scores (run `churn-monitor train` to write one)"
                )
            scores = frame[SCORE].to_numpy(dtype=float)
            calibrator = None
            if schema.TARGET in frame.columns:
                labels = frame[schema.TARGET].map({"Yes": 1.0, "No": 0.0}).to_numpy()
                try:
                    calibrator = fit_calibrator(scores, labels)
                except ValueError as err:
                    log.warning("no label-free estimate: %s", err)
            derived = _ScoreReference(
                calibrator=calibrator,
                scores=drift.profile_numeric(scores, self.config.data_drift_monitoring.psi_bins),
                threshold=threshold,
                positive_ratio=positive_ratio(scores, threshold),
            )
            self._derived = (key, derived)
        return self._derived[1]

    def _scored(self, frame: pd.DataFrame, model: ModelRef) -> pd.DataFrame:
        """The frame with a score column: the logged one, else the champion's scores.

        The prediction log always has scores; batch files usually do not, and are scored
        with the monitored model version (loaded once per version).
        """
        if SCORE in frame.columns:
            return frame
        if self._scorer is None or self._scorer.ref != model:
            self._scorer = load_champion(self.config)
        if self._scorer.ref != model:
            raise SourceError(f"the champion moved while scoring ({self._scorer.ref.version})")
        scores = self._scorer.score(frame) if len(frame) else np.empty(0)
        return frame.assign(**{SCORE: scores})

    def run(self) -> PerformanceSnapshot:
        cfg = self.config.performance_monitoring
        self.model.refresh()
        model = self.model.current()
        threshold = self.model.threshold()
        if threshold is None:
            raise SourceError(f"model {model.name}: no decision threshold is known")
        ref = self.score_reference(model.version, threshold)
        now = self.clock()
        source = self.config.data.current
        current = self._scored(load_current(source, now), model)
        scores = current[SCORE].to_numpy(dtype=float)
        if source.kind == "file":
            labels = current[schema.TARGET] if schema.TARGET in current.columns else None
            labelled = current.assign(
                **{ACTUAL: None if labels is None else labels.map({"Yes": 1.0, "No": 0.0})}
            )
            labelled = labelled.dropna(subset=[ACTUAL])
        else:
            labelled = load_labelled(source, now, cfg.label_window_hours)
        realized = realized_metrics(
            labelled[ACTUAL].to_numpy(dtype=float),
            labelled[SCORE].to_numpy(dtype=float),
            threshold,
            min_rows=cfg.min_labeled_rows,
        )
        min_rows = self.config.data_drift_monitoring.min_window_rows
        if ref.calibrator is None:
            estimated = MetricSet({}, len(scores), "the reference has no labels to calibrate on")
        else:
            estimated = estimated_metrics(scores, threshold, ref.calibrator, min_rows=min_rows)
        pred_drift = compare_numeric(ref.scores, scores) if len(scores) >= min_rows else None
        t = cfg.thresholds
        snapshot = PerformanceSnapshot(
            model=model,
            realized=realized,
            estimated=estimated,
            baseline=dict(self.model.baseline()),
            minimums={
                "accuracy": t.min_accuracy,
                "precision": t.min_precision,
                "recall": t.min_recall,
                "f1": t.min_f1,
                "roc_auc": t.min_roc_auc,
            },
            degradation_threshold=t.degradation_threshold,
            window_rows=len(scores),
            prediction_psi=None if pred_drift is None else pred_drift.psi,
            prediction_ks=None if pred_drift is None else pred_drift.ks_statistic,
            prediction_psi_threshold=cfg.prediction_drift_psi_threshold,
            positive_ratio=positive_ratio(scores, threshold),
            reference_positive_ratio=ref.positive_ratio,
            revenue_at_risk=revenue_at_risk(
                current["MonthlyCharges"].to_numpy(dtype=float), scores
            ),
            taken_at=now,
        )
        if self.write_reports:
            _write_report(self.config, "performance", performance_report(snapshot), now)
        _append_history(self.history, history.record_performance, snapshot)
        return snapshot


class OptunaJob:
    """Progress of every study in the Optuna storage (best value, trials, parameters)."""

    name = "optuna"

    def __init__(self, config: MonitoringConfig, *, interval_seconds: float | None = None):
        self.storage = config.optuna.storage
        self.interval_seconds = interval_seconds or config.optuna.check_interval_minutes * 60.0

    def run(self) -> tuple[StudyProgress, ...]:
        return study_progress(self.storage)


def _refresh(model: ModelSource) -> None:
    """Follow the registry alias; drift is still measured when the registry is down."""
    try:
        if model.refresh():
            log.info("now monitoring %s", model.current())
    except Exception as err:  # the registry's client raises many types
        log.warning("model registry unavailable, keeping %s: %s", model.current(), err)


def _append_history(
    engine: Engine | None, record: Callable[[Engine, Any], None], snap: Any
) -> None:
    """Append a run to the history; a history outage is logged, the metrics still served."""
    if engine is None:
        return
    try:
        record(engine, snap)
    except SQLAlchemyError as err:
        log.error("could not append to the monitoring history: %s", err)


def _write_report(config: MonitoringConfig, kind: str, payload: dict[str, Any], now: float) -> None:
    base = config.reports.dir
    reports.write_report(base, kind, payload, now)
    reports.prune_reports(base, kind, config.reports.retention_days, now)


def drift_report(snapshot: DriftSnapshot) -> dict[str, Any]:
    """The JSON report of one drift run (the seed's drift report fields, and per feature)."""
    result: DatasetDrift = snapshot.result
    return {
        "kind": "drift",
        "timestamp": snapshot.taken_at,
        "model": {
            "name": snapshot.model.name,
            "version": snapshot.model.version,
            "run_id": snapshot.model.run_id,
        },
        "dataset_drift": result.drifted,
        "drift_score": result.score,
        "drift_threshold": result.threshold,
        "critical_threshold": snapshot.critical_threshold,
        "decided": result.decided,
        "reason": result.reason,
        "n_current": result.n_current,
        "n_reference": result.n_reference,
        "drifted_columns": [f.feature for f in result.features if f.drifted],
        "features": [
            {
                "feature": f.feature,
                "kind": f.kind,
                "method": f.method,
                "threshold": f.threshold,
                "drifted": f.drifted,
                "ks_statistic": f.ks_statistic,
                "ks_pvalue": f.ks_pvalue,
                "psi": f.psi,
                "wasserstein": f.wasserstein,
                "jensen_shannon": f.jensen_shannon,
                "n_current": f.n_current,
                "n_nan": f.n_nan,
            }
            for f in result.features
        ],
    }


def performance_report(snap: PerformanceSnapshot) -> dict[str, Any]:
    """The JSON report of one performance run."""
    return {
        "kind": "performance",
        "timestamp": snap.taken_at,
        "model": {
            "name": snap.model.name,
            "version": snap.model.version,
            "run_id": snap.model.run_id,
        },
        "labeled_rows": snap.realized.n_rows,
        "window_rows": snap.window_rows,
        "realized": dict(snap.realized.values),
        "realized_note": snap.realized.reason,
        "estimated": dict(snap.estimated.values),
        "estimated_note": snap.estimated.reason,
        "baseline": dict(snap.baseline),
        "minimums": dict(snap.minimums),
        "degradation": degradation(snap.baseline, snap.realized.values),
        "degradation_threshold": snap.degradation_threshold,
        "prediction_drift": {
            "psi": snap.prediction_psi,
            "ks_statistic": snap.prediction_ks,
            "psi_threshold": snap.prediction_psi_threshold,
        },
        "positive_ratio": snap.positive_ratio,
        "reference_positive_ratio": snap.reference_positive_ratio,
        "revenue_at_risk": snap.revenue_at_risk,
    }
