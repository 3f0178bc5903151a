"""The HTML report of each monitoring run, written beside its JSON report.

A run's HTML shows the drift and performance JSON reports as written (its numbers are
theirs), the alerts firing when the run finished (the history) and the data analysis
of the reference and the current window (read again at the run's time: for a file the
same rows; for the prediction log the newest rows at that time, with any logged since).

The drift report anchors a run (the performance report when drift is off): its HTML is
``<kind>_reports/<kind>_report_<stamp>.html`` beside ``<stamp>.json``, and the JSON's
retention prunes both. `run --mode once` writes it after the jobs
(`wiring.Monitor.run_once`); in continuous mode :class:`RunReportJob` runs on a short
schedule and writes the HTML of the newest run that has none.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from exporter.config import MonitoringConfig
from exporter.data import history
from exporter.data.sources import ACTUAL, load_current, load_labelled
from exporter.domain import schema
from exporter.monitor import reports
from exporter.monitor.reference_job import ReferenceCache
from exporter.report.content import run_content
from exporter.report.render import render_run

log = logging.getLogger(__name__)

#: Longest wait between a run's JSON report and its HTML in continuous mode.
POLL_SECONDS = 60.0
_LABEL_CODES = {schema.POSITIVE_LABEL: 1.0, schema.NEGATIVE_LABEL: 0.0}


def anchor_kind(config: MonitoringConfig) -> str | None:
    """The JSON report that anchors a run: drift, else performance; None when neither
    job is enabled."""
    if config.data_drift_monitoring.enabled:
        return "drift"
    if config.performance_monitoring.enabled:
        return "performance"
    return None


def _read(path: Path | None) -> dict[str, Any] | None:
    return None if path is None else json.loads(path.read_text(encoding="utf-8"))


def _labels(frame: Any) -> np.ndarray:
    """The Churn column as 0/1 (NaN where not a label); empty without the column."""
    if schema.TARGET not in frame.columns:
        return np.empty(0)
    return frame[schema.TARGET].map(_LABEL_CODES).to_numpy(dtype=float)


def run_report_html(
    config: MonitoringConfig,
    anchor: Path,
    reference: ReferenceCache,
    history_engine: Engine | None,
) -> str:
    """The HTML report of the run of JSON report `anchor` (with the newest report of
    the other kind, when that job is enabled)."""
    base = config.reports.dir
    kind = json.loads(anchor.read_text(encoding="utf-8"))["kind"]
    drift = _read(anchor) if kind == "drift" else None
    performance = _read(anchor) if kind == "performance" else None
    if drift is not None and config.performance_monitoring.enabled:
        performance = _read(reports.newest_report(base, "performance"))
    main = drift or performance
    assert main is not None
    at = float(main["timestamp"])
    _, ref_frame = reference.get(main["model"]["version"])
    source = config.data.current
    current = load_current(source, at)
    if source.kind == "file":
        current_labels = _labels(current)
    else:
        hours = config.performance_monitoring.label_window_hours
        current_labels = load_labelled(source, at, hours)[ACTUAL].to_numpy(dtype=float)
    features = [
        *((f, "numeric") for f in config.features.numeric),
        *((f, "categorical") for f in config.features.categorical),
    ]
    alerts = None if history_engine is None else history.query(history_engine, "alerts")
    content = run_content(
        drift=drift,
        performance=performance,
        reference=ref_frame,
        current=current,
        features=features,
        reference_labels=_labels(ref_frame),
        current_labels=current_labels[np.isfinite(current_labels)],
        alert_rows=alerts,
    )
    return render_run(content)


class RunReportJob:
    """Writes the HTML report of the newest run that has none (see the module notes)."""

    name = "report"

    def __init__(
        self,
        config: MonitoringConfig,
        reference: ReferenceCache,
        *,
        history: Engine | None,
        interval_seconds: float = POLL_SECONDS,
    ) -> None:
        kind = anchor_kind(config)
        if kind is None:
            raise ValueError("no drift or performance job: there is no run to report")
        self.config = config
        self.kind = kind
        self.reference = reference
        self.history = history
        self.interval_seconds = interval_seconds

    def run(self) -> Path | None:
        """Write the newest run's HTML if it has none; return its path (None: nothing
        new to report)."""
        anchor = reports.newest_report(self.config.reports.dir, self.kind)
        if anchor is None or reports.html_path(anchor).exists():
            return None
        html = run_report_html(self.config, anchor, self.reference, self.history)
        path = reports.write_html(reports.html_path(anchor), html)
        log.info("HTML report written: %s (%d bytes)", path, len(html))
        return path
