"""The monitoring history: what fired, what each run measured, what was done about it.

SQLAlchemy Core tables in one database, selected by URL alone: SQLite by default, or
PostgreSQL (``postgresql+psycopg://user@host/db``); `open_history` creates the tables
under the schema lock, so processes starting at once are safe
(:func:`exporter.data.dbschema.create_schema`):

* ``alerts``: one row per alert episode and status, as Alertmanager notified it
  (fingerprint, status, startsAt identify it; a redelivery or a repeat notification
  updates ``last_notified_at`` and ``notifications`` instead of adding a row);
* ``drift_reports``: one row per drift run (score, threshold, drifted columns);
* ``performance_metrics``: one row per performance run and metric (realized,
  estimated, baseline);
* ``retraining``: one row per retraining decision.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.data.dbschema import create_schema, xact_lock
from exporter.data.predlog import make_engine
from exporter.domain.metrics import METRICS
from exporter.stats.snapshots import DriftSnapshot, PerformanceSnapshot

metadata = sa.MetaData()

alerts = sa.Table(
    "alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("starts_at", sa.String(40), nullable=False),
    sa.Column("ends_at", sa.String(40), nullable=True),
    sa.Column("alertname", sa.String(200), nullable=False, index=True),
    sa.Column("alert_type", sa.String(100), nullable=True, index=True),
    sa.Column("severity", sa.String(32), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("labels", sa.Text, nullable=False),
    sa.Column("annotations", sa.Text, nullable=False),
    sa.Column("receiver", sa.String(200), nullable=True),
    sa.Column("first_notified_at", sa.Float, nullable=False, index=True),
    sa.Column("last_notified_at", sa.Float, nullable=False),
    sa.Column("notifications", sa.Integer, nullable=False),
    sa.UniqueConstraint("fingerprint", "status", "starts_at", name="uq_alert_episode"),
)


def _run_columns() -> list[sa.Column[Any]]:
    """The leading columns of a table with rows per monitoring run: the row's id, when
    the run was, and the model version it judged."""
    return [
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.Float, nullable=False, index=True),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("version", sa.String(50), nullable=False),
    ]


def _metric_values(*names: str) -> list[sa.Column[Any]]:
    """Columns of a metric's values, NULL where a value is undefined (left out, never 0:
    :mod:`exporter.domain.metrics`)."""
    return [sa.Column(name, sa.Float, nullable=True) for name in names]


drift_reports = sa.Table(
    "drift_reports",
    metadata,
    *_run_columns(),
    sa.Column("score", sa.Float, nullable=True),
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("drifted", sa.Boolean, nullable=True),
    sa.Column("drifted_columns", sa.Text, nullable=False),
    sa.Column("n_current", sa.Integer, nullable=False),
    sa.Column("n_reference", sa.Integer, nullable=False),
)

performance_metrics = sa.Table(
    "performance_metrics",
    metadata,
    *_run_columns(),
    sa.Column("metric", sa.String(32), nullable=False),
    *_metric_values("realized", "estimated", "baseline", "minimum"),
    sa.Column("labeled_rows", sa.Integer, nullable=False),
)

retraining = sa.Table(
    "retraining",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("trigger", sa.String(200), nullable=False),
    sa.Column("decision", sa.String(32), nullable=False),
    sa.Column("champion_version", sa.String(50), nullable=True),
    sa.Column("challenger_version", sa.String(50), nullable=True),
    sa.Column("metric", sa.String(32), nullable=True),
    *_metric_values("champion_value", "challenger_value"),
    sa.Column("detail", sa.Text, nullable=True),
)

TABLES: dict[str, sa.Table] = {
    "alerts": alerts,
    "drift": drift_reports,
    "performance": performance_metrics,
    "retraining": retraining,
}


def open_history(url: str) -> Engine:
    """An engine on the history database with its tables created (idempotent)."""
    engine = make_engine(url)
    create_schema(engine, metadata)
    return engine


# --- Alertmanager notifications -----------------------------------------------------


class WebhookError(ValueError):
    """The body is not an Alertmanager webhook notification (version 4)."""


@dataclass(frozen=True)
class AlertRecord:
    """One alert of one notification, as stored."""

    fingerprint: str
    status: str
    starts_at: str
    ends_at: str | None
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    receiver: str | None


def parse_notification(payload: Any) -> list[AlertRecord]:
    """The alerts of an Alertmanager webhook body (payload version "4").

    Raises WebhookError naming the field that is missing or of the wrong type.
    """
    if not isinstance(payload, dict):
        raise WebhookError("body: expected a JSON object")
    if str(payload.get("version")) != "4":
        raise WebhookError(f'version: expected "4", got {payload.get("version")!r}')
    items = payload.get("alerts")
    if not isinstance(items, list):
        raise WebhookError("alerts: expected a list")
    receiver = payload.get("receiver")
    records = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise WebhookError(f"alerts[{i}]: expected an object")
        for key in ("status", "startsAt", "fingerprint"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise WebhookError(f"alerts[{i}].{key}: expected a non-empty string")
        labels = item.get("labels") or {}
        annotations = item.get("annotations") or {}
        if not isinstance(labels, dict) or "alertname" not in labels:
            raise WebhookError(f"alerts[{i}].labels: expected an object with alertname")
        if not isinstance(annotations, dict):
            raise WebhookError(f"alerts[{i}].annotations: expected an object")
        ends = item.get("endsAt")
        records.append(
            AlertRecord(
                fingerprint=item["fingerprint"],
                status=item["status"],
                starts_at=item["startsAt"],
                ends_at=None if not ends or ends.startswith("0001-") else ends,
                labels={str(k): str(v) for k, v in labels.items()},
                annotations={str(k): str(v) for k, v in annotations.items()},
                receiver=receiver if isinstance(receiver, str) else None,
            )
        )
    return records


def record_alerts(engine: Engine, records: Sequence[AlertRecord], now: float) -> int:
    """Store the alerts; a redelivered episode updates its row. Return new rows.

    On PostgreSQL the transaction holds an advisory lock, so several processes may
    record at once. On SQLite two writers at once on the same episode are not safe (the
    unique constraint then rejects the second insert): the exporter's receiver
    serialises its calls.
    """
    added = 0
    with engine.begin() as conn:
        xact_lock(conn, "history:alerts")
        for r in records:
            key = (
                (alerts.c.fingerprint == r.fingerprint)
                & (alerts.c.status == r.status)
                & (alerts.c.starts_at == r.starts_at)
            )
            existing = conn.execute(sa.select(alerts.c.id).where(key)).scalar_one_or_none()
            if existing is not None:
                conn.execute(
                    alerts.update()
                    .where(alerts.c.id == existing)
                    .values(
                        last_notified_at=now,
                        notifications=alerts.c.notifications + 1,
                        ends_at=r.ends_at,
                    )
                )
                continue
            conn.execute(
                alerts.insert().values(
                    fingerprint=r.fingerprint,
                    status=r.status,
                    starts_at=r.starts_at,
                    ends_at=r.ends_at,
                    alertname=r.labels["alertname"],
                    alert_type=r.labels.get("alert_type"),
                    severity=r.labels.get("severity"),
                    model=r.labels.get("model"),
                    labels=json.dumps(dict(r.labels), sort_keys=True),
                    annotations=json.dumps(dict(r.annotations), sort_keys=True),
                    receiver=r.receiver,
                    first_notified_at=now,
                    last_notified_at=now,
                    notifications=1,
                )
            )
            added += 1
    return added


# --- monitoring runs ------------------------------------------------------------------


def record_drift(engine: Engine, snap: DriftSnapshot) -> None:
    """Append one drift run."""
    r = snap.result
    with engine.begin() as conn:
        conn.execute(
            drift_reports.insert().values(
                ts=snap.taken_at,
                model=snap.model.name,
                version=snap.model.version,
                score=r.score,
                threshold=r.threshold,
                drifted=r.drifted,
                drifted_columns=json.dumps([f.feature for f in r.features if f.drifted]),
                n_current=r.n_current,
                n_reference=r.n_reference,
            )
        )


def record_performance(engine: Engine, snap: PerformanceSnapshot) -> None:
    """Append one performance run: a row per metric with any value."""
    rows = [
        {
            "ts": snap.taken_at,
            "model": snap.model.name,
            "version": snap.model.version,
            "metric": metric,
            "realized": snap.realized.values.get(metric),
            "estimated": snap.estimated.values.get(metric),
            "baseline": snap.baseline.get(metric),
            "minimum": snap.minimums.get(metric),
            "labeled_rows": snap.realized.n_rows,
        }
        for metric in METRICS
    ]
    with engine.begin() as conn:
        conn.execute(performance_metrics.insert(), rows)


def record_retraining(engine: Engine, **values: Any) -> None:
    """Append one retraining decision (columns of the ``retraining`` table)."""
    with engine.begin() as conn:
        conn.execute(retraining.insert().values(ts=values.pop("ts", time.time()), **values))


def last_retraining(engine: Engine, decisions: Sequence[str]) -> float | None:
    """Time of the newest retraining row with one of these decisions (None: no such row)."""
    query = sa.select(sa.func.max(retraining.c.ts)).where(retraining.c.decision.in_(decisions))
    with engine.connect() as conn:
        value = conn.execute(query).scalar_one_or_none()
    return None if value is None else float(value)


# --- queries --------------------------------------------------------------------------


def query(engine: Engine, kind: str, since: float | None = None) -> list[dict[str, Any]]:
    """Rows of one history table (``alerts``, ``drift``, ``performance``, ``retraining``),
    oldest first, optionally only those at or after `since` (Unix seconds)."""
    table = TABLES[kind]
    time_column = table.c.first_notified_at if table is alerts else table.c.ts
    stmt = sa.select(table).order_by(time_column, table.c.id)
    if since is not None:
        stmt = stmt.where(time_column >= since)
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(stmt)]


def iso(ts: float | None) -> str:
    """Unix seconds as local ISO time for people; empty for None."""
    return (
        "" if ts is None else datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")
    )


def rows_for_display(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows with Unix-second columns rendered as ISO times."""
    out = []
    for row in rows:
        shown = dict(row)
        for key in ("ts", "first_notified_at", "last_notified_at"):
            if key in shown:
                shown[key] = iso(shown[key])
        out.append(shown)
    return out
