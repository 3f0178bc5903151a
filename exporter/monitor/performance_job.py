"""The performance job: realized and estimated model quality, prediction drift and
revenue at risk of the current window."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from exporter.config import MonitoringConfig
from exporter.data import history
from exporter.data.sources import ACTUAL, SCORE, SourceError, load_current, load_labelled
from exporter.data.window_query import read_labelled_columns, read_window_columns
from exporter.domain import schema
from exporter.domain.metrics import METRICS
from exporter.domain.model import ModelRef
from exporter.model.registry import LoadedModel, load_champion
from exporter.monitor.reference_job import ReferenceCache, ReferenceJob
from exporter.monitor.reports import performance_report
from exporter.stats import drift
from exporter.stats.decision import compare_numeric
from exporter.stats.performance import (
    Calibrator,
    MetricSet,
    estimated_metrics,
    fit_calibrator,
    positive_ratio,
    realized_metrics,
    revenue_at_risk,
)
from exporter.stats.snapshots import PerformanceSnapshot

log = logging.getLogger(__name__)

#: The Churn column's labels as the 0/1 values the metrics take.
_LABEL_VALUES = {schema.POSITIVE_LABEL: 1.0, schema.NEGATIVE_LABEL: 0.0}
#: The monthly charge column (revenue at risk).
_CHARGES = "MonthlyCharges"


@dataclass(frozen=True)
class ScoreReference:
    """What the performance job derives from the reference's scores and labels."""

    calibrator: Calibrator | None
    scores: drift.NumericProfile
    threshold: float
    positive_ratio: float | None


def derive_score_reference(
    frame: pd.DataFrame, path: str, threshold: float, psi_bins: int
) -> ScoreReference:
    """What a model's reference snapshot (read from `path`) says about its scores: their
    profile, the label-free estimate's calibrator (None without labels) and the share
    predicted to churn at `threshold`."""
    if SCORE not in frame.columns:
        raise SourceError(
            f"{path}: the reference has no '{SCORE}' column of model "
            "scores (run `churn-monitor train` to write one)"
        )
    scores = frame[SCORE].to_numpy(dtype=float)
    calibrator = None
    if schema.TARGET in frame.columns:
        labels = frame[schema.TARGET].map(_LABEL_VALUES).to_numpy()
        try:
            calibrator = fit_calibrator(scores, labels)
        except ValueError as err:
            log.warning("no label-free estimate: %s", err)
    return ScoreReference(
        calibrator=calibrator,
        scores=drift.profile_numeric(scores, psi_bins),
        threshold=threshold,
        positive_ratio=positive_ratio(scores, threshold),
    )


def estimate(ref: ScoreReference, scores: np.ndarray, min_rows: int) -> MetricSet:
    """The label-free estimate of a window's `scores` (empty when the reference had no
    labels to calibrate on)."""
    if ref.calibrator is None:
        return MetricSet({}, len(scores), "the reference has no labels to calibrate on")
    return estimated_metrics(scores, ref.threshold, ref.calibrator, min_rows=min_rows)


class PerformanceJob(ReferenceJob):
    """Realized and estimated model quality, prediction drift and revenue at risk."""

    name = "performance"

    def __init__(self, config: MonitoringConfig, reference: ReferenceCache, **kwargs: Any):
        minutes = config.performance_monitoring.check_interval_minutes
        super().__init__(config, reference, minutes=minutes, **kwargs)
        self._derived: tuple[tuple[Any, ...], ScoreReference] | None = None
        self._scorer: LoadedModel | None = None

    def score_reference(self, version: str, threshold: float) -> ScoreReference:
        """The reference's score profile, calibrator and positive ratio, derived once per
        reference file, model version and decision threshold."""
        key, frame = self.reference.get(version)
        key = (*key, threshold)
        if self._derived is None or self._derived[0] != key:
            derived = derive_score_reference(
                frame, self.reference.path, threshold, self.config.data_drift_monitoring.psi_bins
            )
            self._derived = (key, derived)
        return self._derived[1]

    def run(self) -> PerformanceSnapshot:
        self.model.refresh()
        model = self.model.current()
        threshold = self.model.threshold()
        if threshold is None:
            raise SourceError(f"model {model.name}: no decision threshold is known")
        ref = self.score_reference(model.version, threshold)
        now = time.time()
        current = self._current(model, now)
        snapshot = self._measure(model, ref, current, self._labelled(current, now), now)
        self.keep("performance", snapshot, performance_report, history.record_performance)
        return snapshot

    def _current(self, model: ModelRef, now: float) -> pd.DataFrame:
        """The scored window: the prediction log's scores and monthly charges read by
        the database path (:mod:`exporter.data.window_query`), else the frame path's
        window (files, a log it cannot serve)."""
        source = self.config.data.current
        if source.kind == "sql":
            window = read_window_columns(source, now, numeric=(SCORE, _CHARGES))
            if window is not None:
                return pd.DataFrame(window.numeric)
        return self._scored(load_current(source, now), model)

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

    def _labelled(self, current: pd.DataFrame, now: float) -> pd.DataFrame:
        """The labelled rows: a batch file's own Churn column, else the prediction log's
        labels of the label window (their scores and labels by the database path when it
        can serve them)."""
        source = self.config.data.current
        if source.kind != "file":
            hours = self.config.performance_monitoring.label_window_hours
            arrays = read_labelled_columns(source, now, hours, (SCORE,))
            if arrays is not None:
                return pd.DataFrame(arrays)
            return load_labelled(source, now, hours)
        labels = current[schema.TARGET] if schema.TARGET in current.columns else None
        labelled = current.assign(**{ACTUAL: None if labels is None else labels.map(_LABEL_VALUES)})
        return labelled.dropna(subset=[ACTUAL])

    def _measure(
        self,
        model: ModelRef,
        ref: ScoreReference,
        current: pd.DataFrame,
        labelled: pd.DataFrame,
        now: float,
    ) -> PerformanceSnapshot:
        """The snapshot of one run over the scored window and its labelled rows."""
        cfg = self.config.performance_monitoring
        scores = current[SCORE].to_numpy(dtype=float)
        realized = realized_metrics(
            labelled[ACTUAL].to_numpy(dtype=float),
            labelled[SCORE].to_numpy(dtype=float),
            ref.threshold,
            min_rows=cfg.min_labeled_rows,
        )
        min_rows = self.config.data_drift_monitoring.min_window_rows
        estimated = estimate(ref, scores, min_rows)
        pred_drift = compare_numeric(ref.scores, scores) if len(scores) >= min_rows else None
        t = cfg.thresholds
        return PerformanceSnapshot(
            model=model,
            realized=realized,
            estimated=estimated,
            baseline=dict(self.model.baseline()),
            minimums={metric: getattr(t, f"min_{metric}") for metric in METRICS},
            degradation_threshold=t.degradation_threshold,
            window_rows=len(scores),
            prediction_psi=None if pred_drift is None else pred_drift.psi,
            prediction_ks=None if pred_drift is None else pred_drift.ks_statistic,
            prediction_psi_threshold=cfg.prediction_drift_psi_threshold,
            positive_ratio=positive_ratio(scores, ref.threshold),
            reference_positive_ratio=ref.positive_ratio,
            revenue_at_risk=revenue_at_risk(current[_CHARGES].to_numpy(dtype=float), scores),
            taken_at=now,
        )
