"""The prediction log: SQLAlchemy Core tables for predictions and feedback.

The API appends one row per prediction and one per feedback, the exporter's push
endpoint whole batches of another server's predictions (`append_pushed`); the exporter
reads its current window from here. Timestamps are Unix seconds (float, UTC). The URL
alone selects the database: SQLite (the default; files are opened in WAL mode so readers
do not block the writer) or PostgreSQL (``postgresql+psycopg://user@host/db``), the
one that several API replicas on several machines can share.

Indexes serve the window queries: ``predictions.ts`` (the last N hours, the last N
rows: ``ORDER BY ts DESC, key DESC LIMIT N``), ``feedback.prediction_id`` (labels joined
to predictions) and the increasing key of arrival (:func:`arrival_key`), which the
incremental reader follows (:mod:`exporter.data.logtail`) and every window query uses
to order rows of equal ``ts`` (the later arrival is the newer row): SQLite's implicit
``rowid``, and on PostgreSQL the identity column `SEQUENCE_COLUMN` (``seq``), which only
PostgreSQL tables have. Every writer of new rows takes the append lock first
(:func:`exporter.data.dbschema.append_lock`, a no-op on SQLite), so that keys become
visible in key order on both.

The write helpers run one transaction each and raise `LogUnavailable` (nothing
written) when the database cannot be reached or stays locked past the busy timeout;
`UnknownPrediction` when feedback names a prediction or customer the log never saw.
They block, so an async caller runs them in a worker thread.

Columns added after the first release (`ADDED_COLUMNS`: the anomaly score and the
unusual flag, then the challenger's version and its shadow score) are nullable.
`create_tables` adds those missing from a log created by an earlier version (``ALTER
TABLE ... ADD COLUMN``, after inspecting the table, so it is idempotent and safe when
two processes race), and `log_predictions` fills them with NULL for rows that lack
them, so old rows and old writers keep working.
"""

from __future__ import annotations

import sqlite3
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.pool import ConnectionPoolEntry

from exporter.data.dbschema import (
    append_lock,
    create_schema,
    is_postgresql,
)
from exporter.data.dburl import sqlite_file
from exporter.domain import schema

metadata = sa.MetaData()


def _feature_type(name: str) -> sa.types.TypeEngine[Any]:
    """Whole numbers as INTEGER, other numbers as FLOAT, categories as text."""
    if name in schema.INTEGER_FEATURES:
        return sa.Integer()
    if name in schema.MODEL_NUMERIC_FEATURES:
        return sa.Float()
    return sa.String(50)


predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("version", sa.String(50), nullable=False),
    sa.Column("customer_id", sa.String(100), nullable=True, index=True),
    *(
        sa.Column(name, _feature_type(name), nullable=name == "TotalCharges")
        for name in schema.FEATURES
    ),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("predicted", sa.Integer, nullable=False),
    # The PCA reconstruction error against the reference, and whether it exceeds the
    # reference's cut-off (the customer is unlike the training data); NULL when the
    # API had no reference profile, and for rows logged before they existed.
    sa.Column("anomaly_score", sa.Float, nullable=True),
    sa.Column("unusual", sa.Boolean(create_constraint=False), nullable=True),
    # The challenger version that scored the customer in the shadow, and its P(churn)
    # (never served); both NULL when there was no challenger or it failed to score.
    sa.Column("challenger_version", sa.String(50), nullable=True),
    sa.Column("challenger_score", sa.Float, nullable=True),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column(
        "prediction_id",
        sa.String(36),
        sa.ForeignKey("predictions.id"),
        nullable=False,
        index=True,
    ),
    sa.Column("ts", sa.Float, nullable=False, index=True),
    sa.Column("actual", sa.Integer, nullable=False),
)


#: Columns of a `predictions` row, in table order.
PREDICTION_COLUMNS: tuple[str, ...] = tuple(c.name for c in predictions.columns)
#: Nullable columns added after the first release, in table order (they end the row):
#: `create_tables` adds them to an older log, `log_predictions` defaults them to NULL.
ADDED_COLUMNS: tuple[str, ...] = (
    "anomaly_score",
    "unusual",
    "challenger_version",
    "challenger_score",
)
if PREDICTION_COLUMNS[-len(ADDED_COLUMNS) :] != ADDED_COLUMNS:
    raise RuntimeError("the added predictions columns must end the table")
#: PostgreSQL only: the ``predictions`` identity column (``BIGINT GENERATED ALWAYS AS
#: IDENTITY``, unique index) the incremental reader follows, as it follows ``rowid`` on
#: SQLite. Not a column of the `predictions` Table: written by the database alone.
SEQUENCE_COLUMN = "seq"


def arrival_key(table: sa.TableClause, dialect: sa.Dialect) -> sa.ColumnElement[int]:
    """The increasing key of `table`'s rows in arrival order (module notes): SQLite's
    implicit rowid, else the identity column `SEQUENCE_COLUMN` (PostgreSQL)."""
    name = "rowid" if dialect.name == "sqlite" else SEQUENCE_COLUMN
    quoted = dialect.identifier_preparer.quote(table.name)
    return sa.literal_column(f"{quoted}.{name}", sa.BigInteger())


#: The advisory lock of the appends to the prediction log (both tables: a push appends
#: rows and labels in one transaction).
APPEND_LOCK = "predlog"

#: How long a SQLite writer waits for a lock before giving up (milliseconds).
DEFAULT_BUSY_TIMEOUT_MS = 5000

#: The pause between two tries to switch a locked new SQLite file to WAL (seconds).
WAL_RETRY_S = 0.005


class LogUnavailable(RuntimeError):
    """The prediction log could not be read or written; nothing was written."""


class UnknownPrediction(LookupError):
    """Feedback names a prediction id or customer that has no logged prediction."""

    def __init__(self, field: str, value: str) -> None:
        self.field = field
        self.value = value
        super().__init__(f"no prediction with {field} {value!r}")


class DuplicatePrediction(ValueError):
    """A pushed prediction's id is already logged (`id`; None when the database said
    so without naming it); nothing was written."""

    def __init__(self, id: str | None) -> None:
        self.id = id
        named = f" {id!r}" if id is not None else ""
        super().__init__(f"a prediction with the id{named} is already logged")


def _enter_wal(cursor: Any, timeout_s: float) -> None:
    """``PRAGMA journal_mode=WAL``, retried for up to `timeout_s` seconds while the
    database is locked. When several connections switch a new database file to WAL at
    once, SQLite answers "database is locked" at once instead of calling its busy
    handler (measured: 13 of 300 openers, 6 at a time, with SQLite 3.40)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(WAL_RETRY_S)


def _sqlite_pragmas(
    busy_timeout_ms: int, autocheckpoint: bool
) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    """The ``connect`` listener that sets a new SQLite connection's pragmas."""

    def on_connect(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        _enter_wal(cursor, busy_timeout_ms / 1000.0)
        cursor.execute("PRAGMA synchronous=NORMAL")
        if not autocheckpoint:
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    return on_connect


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    autocheckpoint: bool = True,
) -> Engine:
    """An engine for `url`; SQLite files get WAL mode, a busy timeout and their folder.
    A plain ``postgresql://`` URL uses psycopg 3 (the installed driver), like
    ``postgresql+psycopg://``.

    ``autocheckpoint=False`` stops this engine's commits from checkpointing the WAL
    into the database file themselves; the owner then calls `checkpoint` from a
    background task. The API does: with random prediction ids each committed row
    dirties its own index pages, and on a log of a few hundred thousand rows the
    checkpoint inside the commit tripled the time to log a batch of 1,000 (about
    100 ms instead of 30 ms).
    """
    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        database = sqlite_file(url)
        if database is not None:
            database.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000.0},
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas(busy_timeout_ms, autocheckpoint))
        return engine
    parsed = sa.engine.make_url(url)
    if parsed.drivername == "postgresql":  # SQLAlchemy's default would be psycopg2
        parsed = parsed.set(drivername="postgresql+psycopg")
    return sa.create_engine(parsed, pool_pre_ping=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def checkpoint(engine: Engine) -> None:
    """Copy committed WAL frames into a SQLite database file (PASSIVE: never waits for
    readers or writers). A no-op for other databases; errors are left to the caller."""
    if not is_sqlite(engine):
        return
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").all()


def create_tables(engine: Engine) -> list[str]:
    """Create the prediction-log tables when missing, and add the `ADDED_COLUMNS` an
    older `predictions` table lacks (idempotent), in one transaction under the schema
    lock (:func:`exporter.data.dbschema.create_schema`). On PostgreSQL `predictions`
    also gets its `SEQUENCE_COLUMN`. Returns the names of the columns added."""
    return create_schema(engine, metadata, _add_columns) or []


def _present_columns(conn: Connection) -> set[str]:
    return {c["name"] for c in sa.inspect(conn).get_columns(predictions.name)}


def _add_column_ddl(dialect: sa.Dialect, name: str, type_sql: str) -> str:
    quote = dialect.identifier_preparer.quote
    return f"ALTER TABLE {quote(predictions.name)} ADD COLUMN {quote(name)} {type_sql}"


def _add_columns(conn: Connection) -> list[str]:
    """Add the missing `ADDED_COLUMNS` (and on PostgreSQL `SEQUENCE_COLUMN`) on `conn`,
    whose transaction holds the schema lock, so no other process adds them meanwhile.
    On PostgreSQL an existing table gets its rows numbered in their physical order."""
    present = _present_columns(conn)
    added = []
    for name in ADDED_COLUMNS:
        if name not in present:
            type_sql = predictions.c[name].type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(_add_column_ddl(conn.dialect, name, type_sql))
            added.append(name)
    if not is_postgresql(conn):
        return added
    if SEQUENCE_COLUMN not in present:
        identity = "BIGINT GENERATED ALWAYS AS IDENTITY"
        conn.exec_driver_sql(_add_column_ddl(conn.dialect, SEQUENCE_COLUMN, identity))
        added.append(SEQUENCE_COLUMN)
    conn.exec_driver_sql(
        f"CREATE UNIQUE INDEX IF NOT EXISTS ix_{predictions.name}_{SEQUENCE_COLUMN} "
        f"ON {predictions.name} ({SEQUENCE_COLUMN})"
    )
    return added


def _unavailable(err: sa.exc.SQLAlchemyError) -> LogUnavailable:
    orig = getattr(err, "orig", None)
    reason = str(orig) if orig is not None else str(err).splitlines()[0]
    return LogUnavailable(f"prediction log unavailable: {reason}")


_INSERTS: weakref.WeakKeyDictionary[Any, tuple[str, tuple[str, ...] | None]] = (
    weakref.WeakKeyDictionary()
)


def _compiled_insert(engine: Engine) -> tuple[str, tuple[str, ...] | None]:
    """The INSERT of every `predictions` column in the engine's SQL and paramstyle.

    Returns the SQL and, for positional paramstyles, the column order of its
    parameters (None: named parameters).
    """
    dialect = engine.dialect
    cached = _INSERTS.get(dialect)
    if cached is None:
        compiled = predictions.insert().compile(dialect=dialect, column_keys=PREDICTION_COLUMNS)
        positions = compiled.positiontup
        order = tuple(positions) if compiled.positional and positions is not None else None
        cached = (compiled.string, order)
        _INSERTS[dialect] = cached
    return cached


def _insert_params(
    order: tuple[str, ...] | None, rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]]
) -> list[Any]:
    """The driver parameters of the compiled INSERT for `rows` (see `log_predictions`)."""
    params: list[Any]
    if isinstance(rows[0], Mapping):  # every row has the first one's form
        mappings = cast("Sequence[Mapping[str, Any]]", rows)
        if any(key not in mappings[0] for key in ADDED_COLUMNS):
            mappings = [{**dict.fromkeys(ADDED_COLUMNS), **row} for row in mappings]
        if order is not None:
            params = [tuple(row[key] for key in order) for row in mappings]
        else:
            params = [{key: row[key] for key in PREDICTION_COLUMNS} for row in mappings]
    else:
        tuples = cast("Sequence[Sequence[Any]]", rows)
        missing = len(PREDICTION_COLUMNS) - len(tuples[0])
        if 0 < missing <= len(ADDED_COLUMNS):
            padding = (None,) * missing
            tuples = [(*row, *padding) for row in tuples]
        if order == PREDICTION_COLUMNS:
            params = list(tuples)
        elif order is not None:
            where = [PREDICTION_COLUMNS.index(key) for key in order]
            params = [tuple(row[i] for i in where) for row in tuples]
        else:
            params = [dict(zip(PREDICTION_COLUMNS, row, strict=True)) for row in tuples]
    return params


def log_predictions(
    engine: Engine, rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]]
) -> None:
    """Insert `rows` in one transaction: dicts with every `predictions` column, or
    tuples in `PREDICTION_COLUMNS` order. The `ADDED_COLUMNS` may be left out (a dict
    without some of them, a tuple that stops before one of them): they are logged as
    NULL.

    The statement is compiled once per dialect and run with the driver's
    ``executemany``: several times faster than a Core ``insert()`` for the API's
    batches of a thousand rows.
    """
    if not rows:
        return
    sql, order = _compiled_insert(engine)
    params = _insert_params(order, rows)
    try:
        with engine.begin() as conn:
            append_lock(conn, APPEND_LOCK)
            conn.exec_driver_sql(sql, params)
    except sa.exc.SQLAlchemyError as err:
        raise _unavailable(err) from err


#: Ids per ``IN (...)`` query: well under SQLite's oldest limit of 999 parameters.
_IDS_PER_QUERY = 500


def append_pushed(
    engine: Engine,
    rows: Sequence[Mapping[str, Any]],
    labels: Sequence[tuple[str, schema.LabelCode]] = (),
    *,
    label_ts: float,
    client_ids: Sequence[str] = (),
) -> None:
    """Append pushed predictions and the labels some carry, all in one transaction:
    every row and label is logged, or none (the push endpoint's all-or-nothing batch).

    `rows` are dicts as for `log_predictions`; `labels` are ``(prediction id, 0/1)``
    logged as feedback at `label_ts`. `client_ids` are the ids the client chose (the
    others are fresh uuid4s): when one is already logged, `DuplicatePrediction` names it
    and nothing is written. `LogUnavailable` as for the other writes.
    """
    if not rows:
        return
    sql, order = _compiled_insert(engine)
    params = _insert_params(order, rows)
    try:
        with engine.begin() as conn:
            append_lock(conn, APPEND_LOCK)
            for start in range(0, len(client_ids), _IDS_PER_QUERY):
                chunk = list(client_ids[start : start + _IDS_PER_QUERY])
                taken = conn.execute(
                    sa.select(predictions.c.id).where(predictions.c.id.in_(chunk)).limit(1)
                ).scalar_one_or_none()
                if taken is not None:
                    raise DuplicatePrediction(str(taken))
            conn.exec_driver_sql(sql, params)
            if labels:
                conn.execute(
                    feedback.insert(),
                    [{"prediction_id": pid, "ts": label_ts, "actual": int(a)} for pid, a in labels],
                )
    except sa.exc.IntegrityError as err:  # an id logged meanwhile by another writer
        raise DuplicatePrediction(None) from err
    except sa.exc.SQLAlchemyError as err:
        raise _unavailable(err) from err


def record_shadow_scores(engine: Engine, rows: Sequence[tuple[str, float, str]]) -> None:
    """Set the challenger's version and score of logged predictions, in one transaction:
    `rows` of ``(challenger_version, challenger_score, prediction_id)``."""
    if not rows:
        return
    statement = (
        predictions.update()
        .where(predictions.c.id == sa.bindparam("pid"))
        .values(challenger_version=sa.bindparam("cv"), challenger_score=sa.bindparam("cs"))
    )
    params = [{"cv": version, "cs": score, "pid": pid} for version, score, pid in rows]
    try:
        with engine.begin() as conn:
            conn.execute(statement, params)
    except sa.exc.SQLAlchemyError as err:
        raise _unavailable(err) from err


def record_feedback(
    engine: Engine,
    *,
    actual: schema.LabelCode,
    ts: float,
    prediction_id: str | None = None,
    customer_id: str | None = None,
) -> str:
    """Append the true outcome of one prediction; return that prediction's id.

    Give `prediction_id`, or `customer_id` to label that customer's latest prediction.
    Raises `UnknownPrediction` when there is no such prediction.
    """
    if (prediction_id is None) == (customer_id is None):
        raise ValueError("give exactly one of prediction_id and customer_id")
    try:
        with engine.begin() as conn:
            append_lock(conn, APPEND_LOCK)
            if prediction_id is not None:
                query = sa.select(predictions.c.id).where(predictions.c.id == prediction_id)
                field, value = "prediction_id", prediction_id
            else:
                query = (
                    sa.select(predictions.c.id)
                    .where(predictions.c.customer_id == customer_id)
                    .order_by(predictions.c.ts.desc())
                    .limit(1)
                )
                field, value = "customerID", str(customer_id)
            found = conn.execute(query).scalar_one_or_none()
            if found is None:
                raise UnknownPrediction(field, value)
            conn.execute(feedback.insert().values(prediction_id=found, ts=ts, actual=int(actual)))
            return str(found)
    except sa.exc.SQLAlchemyError as err:
        raise _unavailable(err) from err


def ping(engine: Engine) -> None:
    """Raise `LogUnavailable` unless the log answers a trivial query and has its tables."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(predictions.c.id).limit(1)).all()
    except sa.exc.SQLAlchemyError as err:
        raise _unavailable(err) from err


def newest_labels(feedback_table: sa.Table = feedback) -> sa.Subquery:
    """The newest label of each labelled prediction (the one rule for it).

    Of the feedback rows naming one prediction, the one recorded last wins: the highest
    ``id``. Ids grow in arrival order and ``ts`` is the server's clock at arrival, so
    the two agree, but ids never tie. Columns ``prediction_id``, ``actual`` (0/1) and
    ``feedback_ts``.
    """
    fb = feedback_table
    last = (
        sa.select(fb.c.prediction_id, sa.func.max(fb.c.id).label("feedback_id"))
        .group_by(fb.c.prediction_id)
        .subquery("last_feedback")
    )
    return (
        sa.select(fb.c.prediction_id, fb.c.actual, fb.c.ts.label("feedback_ts"))
        .join(last, last.c.feedback_id == fb.c.id)
        .subquery("newest_label")
    )


def labelled_query(
    since: float | None = None,
    *,
    predictions_table: sa.Table = predictions,
    feedback_table: sa.Table = feedback,
    columns: Sequence[str] | None = None,
) -> sa.Select[Any]:
    """Predictions that received feedback, oldest first, each with its newest label
    (:func:`newest_labels`): the `predictions` columns plus ``actual`` and
    ``feedback_ts``. `since` keeps predictions made at or after it (``ts``, Unix seconds).
    `columns` selects only those `predictions` columns, then ``actual`` alone.
    """
    label = newest_labels(feedback_table)
    preds = predictions_table
    selected = (
        [preds, label.c.actual, label.c.feedback_ts]
        if columns is None
        else [*(preds.c[name] for name in columns), label.c.actual]
    )
    query = (
        sa.select(*selected).join(label, label.c.prediction_id == preds.c.id).order_by(preds.c.ts)
    )
    if since is not None:
        query = query.where(preds.c.ts >= since)
    return query
