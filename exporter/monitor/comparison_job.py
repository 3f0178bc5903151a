"""The comparison job: champion against challenger on the customers both scored.

The API shadow-scores every request with the challenger (``model.challenger_alias``)
and logs its score and version beside the champion's. Each run reads the rows of the
prediction log that the current champion version served and the current challenger
version shadowed, and measures, per model, the realized metrics on the labelled ones,
the label-free estimate and the prediction drift (PSI of its scores against its own
reference snapshot) on the window; then the paired tests of :mod:`exporter.stats.paired`
(DeLong on ROC AUC, McNemar on accuracy) and the share of customers on which the two
decisions agree. Rows of other versions never mix in: a comparison starts afresh when
either alias moves.

No challenger alias in the registry is a normal state (after a promotion, before the
next retraining): the run succeeds with no challenger and nothing compared.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from exporter.config import MonitoringConfig
from exporter.data.sources import (
    ACTUAL,
    CHALLENGER_SCORE,
    SCORE,
    SourceError,
    load_current,
    load_labelled,
    shadowed,
)
from exporter.domain.model import ModelRef
from exporter.model.registry import AliasNotFound, ModelWatch
from exporter.model.roles import challenger_config
from exporter.monitor.performance_job import ScoreReference, derive_score_reference, estimate
from exporter.monitor.reference_job import ModelSource, ReferenceCache
from exporter.stats.decision import compare_numeric
from exporter.stats.paired import agreement_ratio, compare_paired
from exporter.stats.performance import MetricSet, realized_metrics
from exporter.stats.snapshots import ComparisonSnapshot, RoleQuality

log = logging.getLogger(__name__)


class ComparisonJob:
    """Champion and challenger side by side (see the module docstring)."""

    name = "comparison"

    def __init__(
        self,
        config: MonitoringConfig,
        reference: ReferenceCache,
        *,
        model: ModelSource,
        interval_seconds: float | None = None,
    ) -> None:
        challenger = challenger_config(config)
        if challenger is None:
            raise ValueError("model.challenger_alias: the comparison needs a challenger alias")
        self.config = config
        self.model = model
        self.challenger = ModelWatch(challenger)
        self.references = {
            "champion": reference,
            "challenger": ReferenceCache(challenger.data.reference_path),
        }
        self._derived: dict[str, tuple[tuple[object, ...], ScoreReference]] = {}
        minutes = config.model_comparison.check_interval_minutes
        self.interval_seconds = interval_seconds or minutes * 60.0

    def run(self) -> ComparisonSnapshot:
        cfg = self.config.model_comparison
        self.model.refresh()
        champion = self.model.current()
        champion_threshold = self.model.threshold()
        if champion_threshold is None:
            raise SourceError(f"model {champion.name}: no decision threshold is known")
        now = time.time()
        try:
            self.challenger.refresh()
        except AliasNotFound as err:
            log.debug("no challenger to compare: %s", err)
            return ComparisonSnapshot(
                model=champion,
                champion=None,
                challenger=None,
                paired=None,
                agreement_ratio=None,
                shadowed_rows=0,
                pvalue_threshold=cfg.pvalue,
                min_paired_rows=cfg.min_paired_rows,
                taken_at=now,
            )
        challenger = self.challenger.current()
        challenger_threshold = self.challenger.threshold()
        assert challenger_threshold is not None  # set by the successful refresh
        source = self.config.data.current
        window = shadowed(load_current(source, now), champion.version, challenger.version)
        labelled = shadowed(
            load_labelled(source, now, cfg.label_window_hours),
            champion.version,
            challenger.version,
        )
        labels = labelled[ACTUAL].to_numpy(dtype=float)
        min_rows = self.config.performance_monitoring.min_labeled_rows
        roles = {
            role: self._quality(role, ref, threshold, column, window, labelled)
            for role, ref, threshold, column in (
                ("champion", champion, champion_threshold, SCORE),
                ("challenger", challenger, challenger_threshold, CHALLENGER_SCORE),
            )
        }
        return ComparisonSnapshot(
            model=champion,
            champion=roles["champion"],
            challenger=roles["challenger"],
            paired=compare_paired(
                labels.astype(int),
                labelled[SCORE].to_numpy(dtype=float),
                labelled[CHALLENGER_SCORE].to_numpy(dtype=float),
                champion_threshold,
                challenger_threshold,
                min_rows=min_rows,
            ),
            agreement_ratio=agreement_ratio(
                window[SCORE].to_numpy(dtype=float),
                window[CHALLENGER_SCORE].to_numpy(dtype=float),
                champion_threshold,
                challenger_threshold,
            ),
            shadowed_rows=len(window),
            pvalue_threshold=cfg.pvalue,
            min_paired_rows=cfg.min_paired_rows,
            taken_at=now,
        )

    def _score_reference(self, role: str, model: ModelRef, threshold: float) -> ScoreReference:
        """The role's reference score profile and calibrator, derived once per file,
        version and threshold."""
        cache = self.references[role]
        key, frame = cache.get(model.version)
        key = (*key, threshold)
        derived = self._derived.get(role)
        if derived is None or derived[0] != key:
            psi_bins = self.config.data_drift_monitoring.psi_bins
            derived = (key, derive_score_reference(frame, cache.path, threshold, psi_bins))
            self._derived[role] = derived
        return derived[1]

    def _quality(
        self,
        role: str,
        model: ModelRef,
        threshold: float,
        column: str,
        window: pd.DataFrame,
        labelled: pd.DataFrame,
    ) -> RoleQuality:
        scores = window[column].to_numpy(dtype=float)
        realized = realized_metrics(
            labelled[ACTUAL].to_numpy(dtype=float),
            labelled[column].to_numpy(dtype=float),
            threshold,
            min_rows=self.config.performance_monitoring.min_labeled_rows,
        )
        min_rows = self.config.data_drift_monitoring.min_window_rows
        try:
            reference = self._score_reference(role, model, threshold)
        except SourceError as err:
            log.warning("%s version %s: no estimate or drift: %s", role, model.version, err)
            estimated = MetricSet({}, len(scores), str(err))
            psi = None
        else:
            estimated = estimate(reference, scores, min_rows)
            psi = (
                compare_numeric(reference.scores, scores).psi
                if len(scores) >= min_rows and np.isfinite(scores).all()
                else None
            )
        return RoleQuality(
            role=role,
            model=model,
            threshold=threshold,
            realized=realized,
            estimated=estimated,
            prediction_psi=psi,
        )
