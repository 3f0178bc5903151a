"""The period report (`churn-monitor report --since`, the digest): a stretch of the
monitoring history database rendered as one HTML page."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from exporter.config import ConfigError, MonitoringConfig
from exporter.data import history
from exporter.report.content import PeriodContent, period_content
from exporter.report.render import render_period


def load_period(
    config: MonitoringConfig, engine: Engine, hours: float, now: float
) -> PeriodContent:
    """The history of the last `hours` before `now` (Unix seconds) of the configured
    model: drift runs, performance runs, alerts received, retraining decisions."""
    since = now - hours * 3600.0
    rows = {kind: history.query(engine, kind, since=since) for kind in history.TABLES}
    return period_content(
        since=since,
        until=now,
        model=config.model.name,
        features=(*config.features.numeric, *config.features.categorical),
        drift_rows=rows["drift"],
        performance_rows=rows["performance"],
        alert_rows=rows["alerts"],
        retraining_rows=rows["retraining"],
    )


def period_report(config: MonitoringConfig, hours: float, now: float) -> str:
    """The HTML period report of the last `hours` from the configured history."""
    if not config.history.enabled:
        raise ConfigError("history.enabled: the period report reads the history, which is off")
    engine = history.open_history(config.history.url)
    try:
        return render_period(load_period(config, engine, hours, now))
    finally:
        engine.dispose()
