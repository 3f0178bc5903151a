"""The Optuna job: progress of every study in the Optuna storage."""

from __future__ import annotations

from exporter.config import MonitoringConfig
from exporter.model.studies import StudyProgress, study_progress


class OptunaJob:
    """Progress of every study in the Optuna storage (best value, trials, parameters)."""

    name = "optuna"

    def __init__(self, config: MonitoringConfig, *, interval_seconds: float | None = None):
        self.storage = config.optuna.storage
        self.interval_seconds = interval_seconds or config.optuna.check_interval_minutes * 60.0

    def run(self) -> tuple[StudyProgress, ...]:
        return study_progress(self.storage)
