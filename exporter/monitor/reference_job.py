"""What the drift and performance jobs share: the reference frame read once, the model
being watched, and where a finished snapshot goes besides the store (report, history)."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

import pandas as pd
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exporter.config import MonitoringConfig
from exporter.data.sources import load_reference
from exporter.domain.model import ModelRef
from exporter.monitor import reports
from exporter.stats.snapshots import DriftSnapshot, PerformanceSnapshot

log = logging.getLogger(__name__)

Snapshot = TypeVar("Snapshot", DriftSnapshot, PerformanceSnapshot)


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


def follow_model(model: ModelSource) -> None:
    """Resolve `model`'s registry alias now; drift is still measured when the registry
    is down (the last known version is kept, and the failure logged)."""
    try:
        if model.refresh():
            log.info("now monitoring %s", model.current())
    except Exception as err:  # the registry's client raises many types
        log.warning("model registry unavailable, keeping %s: %s", model.current(), err)


class ReferenceJob:
    """The config, the reference, the model being watched, the schedule, and where
    results go besides the snapshot."""

    def __init__(
        self,
        config: MonitoringConfig,
        reference: ReferenceCache,
        *,
        minutes: float,
        model: ModelSource,
        interval_seconds: float | None = None,
        history: Engine | None = None,
    ) -> None:
        self.config = config
        self.reference = reference
        self.model = model
        self.history = history
        self.interval_seconds = interval_seconds or minutes * 60.0

    def follow_model(self) -> None:
        """Follow the registry alias (`follow_model`)."""
        follow_model(self.model)

    def keep(
        self,
        kind: str,
        snapshot: Snapshot,
        report: Callable[[Snapshot], dict[str, Any]],
        record: Callable[[Engine, Snapshot], None],
    ) -> None:
        """Write `snapshot`'s JSON report (pruning old ones) and append it to the history.

        A history outage is logged, and the metrics are still served.
        """
        base = self.config.reports.dir
        reports.write_report(base, kind, report(snapshot), snapshot.taken_at)
        reports.prune_reports(base, kind, self.config.reports.retention_days, snapshot.taken_at)
        if self.history is None:
            return
        try:
            record(self.history, snapshot)
        except SQLAlchemyError as err:
            log.error("could not append to the monitoring history: %s", err)
