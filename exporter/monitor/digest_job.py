"""The digest job: the period report of the history, emailed when one is due.

Off unless ``reports.digest.enabled`` (continuous mode only). Every
``check_interval_minutes`` the job asks whether a digest is due: none was sent, or the
newest sent is ``period_hours`` old. A due digest covers the last ``period_hours``: it
is rendered (:mod:`exporter.report.period`), sent (:mod:`exporter.report.digest`,
Alertmanager's SMTP settings) and only then kept as
``<reports.dir>/digest_reports/digest_report_<UTC stamp>.html`` under the reports'
retention, which is how the next check knows when the last one went out. A failure
(no relay, a bad setting) raises: `jobs.run_job` counts it in
``churn_exporter_job_*{task="digest"}``, and the next check tries again.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import Engine

from exporter.config import MonitoringConfig
from exporter.data.history import iso
from exporter.monitor import reports
from exporter.report.content import PeriodContent
from exporter.report.digest import digest_message, send, smtp_settings
from exporter.report.period import load_period
from exporter.report.render import render_period

log = logging.getLogger(__name__)

KIND = "digest"
_STAMP = "%Y%m%dT%H%M%S_%fZ"


def last_sent(base: str | Path) -> float | None:
    """When the newest kept digest was sent (Unix seconds, from its name), or None."""
    folder = reports.report_dir(base, KIND)
    names = sorted(folder.glob(f"{KIND}_report_*.html")) if folder.is_dir() else []
    if not names:
        return None
    stamp = names[-1].stem.removeprefix(f"{KIND}_report_")
    return datetime.strptime(stamp, _STAMP).replace(tzinfo=UTC).timestamp()


def subject(content: PeriodContent) -> str:
    """The digest's subject: model, period and what happened in it."""
    alerts = sum(row["status"] == "firing" for row in content.alerts)
    return (
        f"churn-monitor digest {content.model}: {content.drifted_runs} of "
        f"{len(content.drift_runs)} drift runs drifted, {alerts} alerts "
        f"({iso(content.since)[:10]} to {iso(content.until)[:10]})"
    )


def summary(content: PeriodContent) -> str:
    """The plain-text part: a few lines for clients that show no HTML."""
    lines = [
        f"Monitoring digest of {content.model}, {iso(content.since)} to {iso(content.until)}.",
        f"Drift runs: {len(content.drift_runs)}, {content.drifted_runs} with dataset drift.",
    ]
    drifted = ", ".join(f"{f} ({n})" for f, n in content.drift_counts())
    lines.append(f"Features that drifted (runs): {drifted or 'none'}.")
    alerts = ", ".join(f"{a} {s} ({n})" for a, s, n in content.alert_counts())
    lines.append(f"Alerts received: {alerts or 'none'}.")
    lines.append(f"Retraining decisions: {len(content.retraining)}.")
    return "\n".join(lines)


class DigestJob:
    """Emails the period report when one is due (see the module notes)."""

    name = KIND

    def __init__(self, config: MonitoringConfig, history: Engine) -> None:
        self.config = config
        self.history = history
        self.interval_seconds = config.reports.digest.check_interval_minutes * 60.0

    def run(self) -> Path | None:
        """Send the digest if due; return the kept copy's path (None: not due)."""
        cfg = self.config.reports.digest
        base = self.config.reports.dir
        now = time.time()
        sent = last_sent(base)
        if sent is not None and now - sent < cfg.period_hours * 3600.0:
            return None
        content = load_period(self.config, self.history, cfg.period_hours, now)
        html = render_period(content)
        stamp = datetime.fromtimestamp(now, UTC).strftime(_STAMP)
        name = f"{KIND}_report_{stamp}.html"
        settings = smtp_settings(cfg.alertmanager_config)
        message = digest_message(settings, cfg.to, subject(content), summary(content), html, name)
        send(settings, message)
        path = reports.write_html(reports.report_dir(base, KIND) / name, html)
        reports.prune_reports(base, KIND, self.config.reports.retention_days, now)
        log.info("digest sent to %s, kept as %s", ", ".join(cfg.to), path)
        return path
