"""Following the prediction log: the rows and labels logged since the last look.

The streaming monitor (:mod:`exporter.monitor.stream_job`) keeps its window in memory
and asks only for what is new. Both tables are followed by an increasing key:

* ``feedback`` by its integer autoincrement ``id``;
* ``predictions`` by an increasing key (its ``id`` is a random uuid, and ``ts`` is the
  API's clock, not a key): SQLite's implicit ``rowid``, and on PostgreSQL, which has no
  rowid, the identity column ``seq`` that :func:`exporter.data.predlog.create_tables`
  gives the table there. In an append-only table whose old rows are deleted only by
  retention, a new row's key is above every key committed before it, and the writers
  are serialised (SQLite does it; on PostgreSQL every writer of the log takes the
  append lock of :mod:`exporter.data.dbschema` first, so keys are drawn and committed
  in one order), so "key above the last one seen" is exactly "logged since the last
  look". :func:`_row_key` is the one place that chooses the key.

:func:`read_window` rebuilds the window (first run, restart, new model): the newest
``window_rows`` rows logged in the last ``window_hours`` (the query of
:func:`exporter.data.sources.load_current`, up to a key read first so that nothing
is read twice or missed), with the labels of those rows. :func:`read_since` reads the
rows and labels above the last keys, oldest first.

Only what the window needs is read: the key, ``id``, ``ts``, ``score`` and the
features, normalised as the full run normalises them
(:func:`exporter.data.loader.normalize_frame`), returned as numpy arrays. Errors raise
:class:`~exporter.data.sources.SourceError` naming the database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from exporter.config import CurrentSourceConfig
from exporter.data.dburl import safe_url
from exporter.data.loader import DataSchemaError, normalize_frame
from exporter.data.predlog import arrival_key
from exporter.data.sources import SCORE, SourceError, _reason
from exporter.domain import schema

#: The label of the implicit key in the queries.
_KEY = "log_key"


@dataclass(frozen=True)
class LogRows:
    """Prediction rows, oldest key first: their ids, Unix timestamps, scores (NaN: none)
    and a float or object array per feature (normalised as the full run does)."""

    ids: list[str]
    ts: np.ndarray
    scores: np.ndarray
    features: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class LogLabels:
    """Labels (0/1 floats) by prediction id, in arrival order (a later one wins)."""

    prediction_ids: list[str]
    actual: np.ndarray

    def __len__(self) -> int:
        return len(self.prediction_ids)


@dataclass(frozen=True)
class LogRead:
    """What one read returned, and the keys to read after next time."""

    rows: LogRows
    labels: LogLabels
    #: The last predictions key and feedback id covered by this read (0: none yet).
    row_key: int
    label_key: int


def _position(conn: Connection, table: str) -> int:
    """The newest key of `table` (0 when empty)."""
    t = sa.table(table)
    newest = conn.execute(sa.select(sa.func.max(arrival_key(t, conn.dialect))).select_from(t))
    return int(newest.scalar() or 0)


def _row_query(
    table: str, dialect: sa.Dialect
) -> tuple[sa.TableClause, sa.ColumnElement[int], sa.Select[Any]]:
    """The table, its key and the query of the key and the columns the window needs."""
    columns = ["id", "ts", SCORE, *schema.FEATURES]
    t = sa.table(table, *(sa.column(c) for c in columns))
    key = arrival_key(t, dialect)
    return t, key, sa.select(key.label(_KEY), *(t.c[c] for c in columns))


def _rows(raw: pd.DataFrame, where: str) -> LogRows:
    try:
        frame = normalize_frame(raw[list(schema.FEATURES)]).frame
    except DataSchemaError as err:
        raise SourceError(f"{where}: {err}") from None
    scores = pd.to_numeric(raw[SCORE], errors="coerce").to_numpy(dtype=np.float64)
    features = {c: frame[c].to_numpy() for c in frame.columns}
    return LogRows(
        ids=[str(v) for v in raw["id"]],
        ts=raw["ts"].to_numpy(dtype=np.float64),
        scores=scores,
        # The score is a column of the full run's window too, so it may be monitored.
        features={**features, SCORE: scores},
    )


def _labels(raw: pd.DataFrame) -> LogLabels:
    return LogLabels(
        prediction_ids=[str(v) for v in raw["prediction_id"]],
        actual=raw["actual"].to_numpy(dtype=np.float64),
    )


def _feedback() -> sa.TableClause:
    return sa.table("feedback", sa.column("id"), sa.column("prediction_id"), sa.column("actual"))


def read_window(engine: Engine, source: CurrentSourceConfig, now: float) -> LogRead:
    """The current window read whole (first run, restart): the newest
    ``source.window_rows`` rows with ``ts >= now - window_hours * 3600``, oldest first,
    and every label of those rows (feedback ids up to the newest one)."""
    where = f"{safe_url(source.url)} table {source.table}"
    try:
        with engine.connect() as conn:
            # The label key first: a push commits rows and their labels together, so one
            # that commits between the two reads then has its rows under `row_key`
            # (read now) and its labels above `label_key` (read next time). The other
            # order would put its labels under `label_key` but its rows above
            # `row_key`, and those labels would never be read.
            fb = _feedback()
            label_key = int(conn.execute(sa.select(sa.func.max(fb.c.id))).scalar() or 0)
            row_key = _position(conn, source.table)
            t, key, query = _row_query(source.table, engine.dialect)
            query = query.where(key <= row_key)
            if source.window_hours is not None:
                query = query.where(t.c.ts >= now - source.window_hours * 3600.0)
            query = query.order_by(t.c.ts.desc(), key.desc())
            if source.window_rows is not None:
                query = query.limit(source.window_rows)
            raw = pd.read_sql(query, conn).iloc[::-1].reset_index(drop=True)
            labels = raw.iloc[0:0]
            if len(raw):
                oldest = float(raw["ts"].min())
                label_query = (
                    sa.select(fb.c.prediction_id, fb.c.actual)
                    .join(t, t.c.id == fb.c.prediction_id)
                    .where(fb.c.id <= label_key, t.c.ts >= oldest)
                    .order_by(fb.c.id)
                )
                labels = pd.read_sql(label_query, conn)
    except sa.exc.SQLAlchemyError as err:
        raise SourceError(f"{where}: {_reason(err)}") from None
    if not len(labels):
        labels = pd.DataFrame({"prediction_id": [], "actual": []})
    return LogRead(_rows(raw, where), _labels(labels), row_key, label_key)


def read_since(
    engine: Engine,
    source: CurrentSourceConfig,
    *,
    row_key: int,
    label_key: int,
    limit: int | None = None,
) -> LogRead:
    """The rows with a key above `row_key` (at most `limit`, oldest first) and the
    labels with a feedback id above `label_key`, in arrival order."""
    where = f"{safe_url(source.url)} table {source.table}"
    _t, key, query = _row_query(source.table, engine.dialect)
    query = query.where(key > row_key).order_by(key)
    if limit is not None:
        query = query.limit(limit)
    fb = _feedback()
    label_query = (
        sa.select(fb.c.id, fb.c.prediction_id, fb.c.actual)
        .where(fb.c.id > label_key)
        .order_by(fb.c.id)
    )
    try:
        with engine.connect() as conn:
            raw = pd.read_sql(query, conn)
            labels = pd.read_sql(label_query, conn)
    except sa.exc.SQLAlchemyError as err:
        raise SourceError(f"{where}: {_reason(err)}") from None
    new_row_key = int(raw[_KEY].max()) if len(raw) else row_key
    new_label_key = int(labels["id"].max()) if len(labels) else label_key
    return LogRead(_rows(raw, where), _labels(labels), new_row_key, new_label_key)
