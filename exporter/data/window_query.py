"""The current window computed in the database: numbers as arrays, categories as counts.

The frame path (:func:`exporter.data.sources.load_current`) pulls every column of every
window row through pandas and normalises it. The jobs need less: per-feature drift
needs each numeric feature's values and each categorical feature's count per
category; the multivariate methods need each row's numbers and categories; the
performance job needs the scores and the monthly charges. :func:`read_window_columns`
asks the database for exactly that:

categories
    One ``GROUP BY`` statement (``GROUPING SETS`` on PostgreSQL, a ``UNION ALL`` of one
    ``GROUP BY`` per feature on SQLite) counts each distinct raw value of each categorical
    feature. Each distinct value is then normalised as the frame path normalises every
    row (:func:`exporter.data.loader.normalize_frame`, then the canonical category key
    of :mod:`exporter.stats.drift.inputs`), so the Python work is per distinct value.
numbers
    One query returns the numeric columns (and, when rows are asked for, each row's
    category as a ``CASE`` code into the distinct values above) as numpy arrays,
    without a Python object per value on PostgreSQL: ``COPY (...) TO STDOUT (FORMAT
    BINARY)`` with NULL sent as NaN, parsed by ``np.frombuffer``. On SQLite the
    driver's cursor feeds ``np.fromiter`` (NULL reads as NaN): no DataFrame, no
    normalisation.

Both statements run in one read transaction (REPEATABLE READ on PostgreSQL; ``BEGIN`` on
SQLite, whose WAL then reads one snapshot) over one window: the newest ``window_rows``
rows with ``ts >= now - window_hours * 3600``, ties in ``ts`` broken by the arrival key
(:func:`exporter.data.predlog.arrival_key`, as the frame path and the stream break
them), oldest first as the frame path returns them. Its bound, the ``(ts, key)`` of its
oldest row, is
read first (``OFFSET window_rows - 1`` down the ``ts`` index), and each statement
filters the table by it. On the same rows the arrays, counts and category
codes equal what the frame path's DataFrame holds (tests/test_window_query.py).

When the database path cannot promise that, :func:`read_window_columns` returns None and
the caller reads the frame path, which reports any problem as before: the table lacks a
column of the schema or ``id``; a column wanted as a number has a non-numeric SQL type;
a numeric value is neither a finite number nor NULL (infinities, which the frame path
rejects, or text in a SQLite column); a categorical value the normaliser rejects; or,
when rows are asked for, more than `MAX_DISTINCT` distinct categorical values.
Unreachable databases raise :class:`~exporter.data.sources.SourceError`.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from exporter.config import CurrentSourceConfig
from exporter.data.dburl import safe_url
from exporter.data.loader import DataSchemaError, normalize_frame
from exporter.data.predlog import arrival_key, labelled_query
from exporter.data.sources import ACTUAL, SourceError, log_engine
from exporter.domain import schema
from exporter.stats.drift.inputs import category_key

log = logging.getLogger(__name__)

#: Most distinct categorical values (all features together) whose per-row codes are
#: read; a window with more is left to the frame path.
MAX_DISTINCT = 1000
#: The header of PostgreSQL's binary COPY format: signature, flags, extension length.
_PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_PGCOPY_HEADER = struct.Struct(">11sii")


class _NotServed(Exception):
    """The database path cannot give the frame path's result (module notes)."""


@dataclass(frozen=True)
class CategoryColumn:
    """One categorical feature of the window.

    ``counts`` are the rows per canonical category key (missing values left out) and
    ``n_missing`` the rows without a value. ``codes`` (only when rows were read) give
    each row's index into ``keys``, -1 where missing.
    """

    counts: Mapping[str, int]
    n_missing: int
    keys: tuple[str, ...] = ()
    codes: np.ndarray | None = None


@dataclass(frozen=True)
class WindowColumns:
    """What the jobs need of one window of ``n_rows`` rows, oldest row first.

    ``numeric`` holds one float64 array per numeric column (NaN where missing);
    ``categorical`` one :class:`CategoryColumn` per categorical feature.
    """

    n_rows: int
    numeric: Mapping[str, np.ndarray]
    categorical: Mapping[str, CategoryColumn]

    def frame(self) -> pd.DataFrame:
        """The window's rows as a DataFrame: the numeric arrays, and each categorical
        feature read with codes as a ``pd.Categorical`` of its keys (built from the
        arrays, without a Python object per row)."""
        columns: dict[str, Any] = dict(self.numeric)
        for name, column in self.categorical.items():
            if column.codes is None:
                raise ValueError(f"{name}: the window was read without its rows")
            columns[name] = pd.Categorical.from_codes(
                column.codes.astype(np.int64), categories=pd.Index(list(column.keys))
            )
        return pd.DataFrame(columns, index=pd.RangeIndex(self.n_rows))


def _numeric_type(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.Integer | sa.Numeric | sa.Float)


def _check_table(table: sa.Table, numeric: Sequence[str], categorical: Sequence[str]) -> None:
    """Raise `_NotServed` unless `table` has the schema's columns, ``id`` and ``ts``, and
    every `numeric` column has a numeric SQL type."""
    present = set(table.c.keys())
    missing = [
        c for c in ("id", "ts", *schema.FEATURES, *numeric, *categorical) if c not in present
    ]
    if missing:
        raise _NotServed(f"the table lacks {', '.join(dict.fromkeys(missing))}")
    for name in numeric:
        if not _numeric_type(table.c[name]):
            raise _NotServed(f"column {name} has the non-numeric type {table.c[name].type}")


def _window(
    conn: Connection, table: sa.Table, source: CurrentSourceConfig, now: float
) -> list[sa.ColumnElement[bool]]:
    """The conditions selecting the window's rows (module notes) from `table`.

    The last N rows are bounded by the N-th newest ``(ts, arrival key)``, read first,
    so that each statement filters the table itself (an index range on ``ts``) instead
    of re-reading a sorted subquery.
    """
    where: list[sa.ColumnElement[bool]] = []
    if source.window_hours is not None:
        where.append(table.c.ts >= now - source.window_hours * 3600.0)
    if source.window_rows is not None:
        key = arrival_key(table, conn.dialect)
        nth = (
            sa.select(table.c.ts, key.label("key"))
            .where(*where)
            .order_by(table.c.ts.desc(), key.desc())
            .offset(source.window_rows - 1)
            .limit(1)
        )
        bound = conn.execute(nth).first()
        if bound is not None:  # fewer rows than window_rows: all of them
            where.append(table.c.ts >= bound.ts)  # the index range
            where.append(sa.tuple_(table.c.ts, key) >= sa.tuple_(bound.ts, bound.key))
    return where


def _driver_sql(query: sa.Select[Any], dialect: sa.Dialect) -> tuple[str, Any]:
    """`query` as the driver's SQL and parameters (positional or named)."""
    compiled = query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    params = compiled.params
    if compiled.positional and compiled.positiontup is not None:
        return compiled.string, tuple(params[key] for key in compiled.positiontup)
    return compiled.string, params


# ----------------------------------------------------------------------- categories


def _raw_counts(
    conn: Connection,
    table: sa.Table,
    where: Sequence[sa.ColumnElement[bool]],
    names: Sequence[str],
) -> dict[str, list[tuple[Any, int]]]:
    """Per feature, ``(raw value, rows)`` of each distinct value (None: NULL) of the
    rows `where` selects, one statement for all features."""
    out: dict[str, list[tuple[Any, int]]] = {name: [] for name in names}
    if not names:
        return out
    if conn.dialect.name == "postgresql":
        cols = [table.c[name] for name in names]
        query = (
            sa.select(*cols, *(sa.func.grouping(c) for c in cols), sa.func.count())
            .where(*where)
            .group_by(sa.func.grouping_sets(*cols))
        )
        for row in conn.execute(query):
            flags = row[len(names) : 2 * len(names)]
            i = list(flags).index(0)  # the one feature this row is grouped by
            out[names[i]].append((row[i], int(row[-1])))
        return out
    parts = [
        sa.select(sa.literal(i).label("f"), table.c[name].label("v"), sa.func.count().label("n"))
        .where(*where)
        .group_by(table.c[name])
        for i, name in enumerate(names)
    ]
    for f, value, n in conn.execute(sa.union_all(*parts)):
        out[names[int(f)]].append((value, int(n)))
    return out


def _normalised_keys(raw: Mapping[str, Sequence[Any]]) -> dict[str, list[str | None]]:
    """Per feature, the canonical category key of each distinct raw value (None: a
    missing value), as the frame path normalises the same value in a row.

    The distinct values go through :func:`~exporter.data.loader.normalize_frame` as one
    frame (a shorter column padded with its own first value, the other schema columns
    missing: NaN, or a blank category). Raises `_NotServed` when the normaliser rejects
    a value.
    """
    depth = max((len(v) for v in raw.values()), default=0)
    if depth == 0:
        return {name: [] for name in raw}
    columns: dict[str, pd.Series] = {}
    for name in schema.FEATURES:
        numeric = name in schema.MODEL_NUMERIC_FEATURES
        values = [np.nan if v is None and numeric else v for v in raw.get(name, ())]
        fill = values[0] if values else (np.nan if numeric else "")
        columns[name] = pd.Series(values + [fill] * (depth - len(values)))
    try:
        normal = normalize_frame(pd.DataFrame(columns)).frame
    except DataSchemaError as err:
        raise _NotServed(str(err)) from None
    return {
        name: [category_key(v) for v in normal[name].iloc[: len(values)]]
        for name, values in raw.items()
    }


def _category_column(
    pairs: Sequence[tuple[Any, int]], keys: Sequence[str | None], distinct_codes: np.ndarray | None
) -> CategoryColumn:
    """One feature's counts by key and, given each row's index into its distinct raw
    values (`distinct_codes`, -1 for none), each row's index into the keys."""
    counts: dict[str, int] = {}
    n_missing = 0
    for (_value, n), key in zip(pairs, keys, strict=True):
        if key is None:
            n_missing += n
        else:
            counts[key] = counts.get(key, 0) + n
    if distinct_codes is None:
        return CategoryColumn(counts, n_missing)
    ordered = tuple(counts)
    index = {key: i for i, key in enumerate(ordered)}
    lookup = np.array([-1 if k is None else index[k] for k in keys] + [-1], dtype=np.int64)
    return CategoryColumn(counts, n_missing, ordered, lookup[distinct_codes])


# -------------------------------------------------------------------------- arrays


def _fetch_arrays(
    conn: Connection, query: sa.Select[Any], dtypes: Sequence[str]
) -> list[np.ndarray]:
    """The columns of `query` as arrays of `dtypes` (``"f8"`` or ``"i2"``; numbers that
    may be NULL must be ``f8``, read as NaN), one query."""
    if conn.dialect.name == "postgresql":
        return _copy_binary(conn, query, dtypes)
    sql, params = _driver_sql(query, conn.dialect)
    cursor: Any = conn.connection.cursor()  # the driver's, iterated row by row
    try:
        cursor.execute(sql, params)
        record = np.dtype([(f"c{i}", dtype) for i, dtype in enumerate(dtypes)])
        try:
            rows = np.fromiter(cursor, dtype=record)
        except (TypeError, ValueError) as err:  # text in a SQLite numeric column
            raise _NotServed(f"a value is not a number: {err}") from None
    finally:
        cursor.close()
    return [rows[f"c{i}"] for i in range(len(dtypes))]


def _copy_binary(
    conn: Connection, query: sa.Select[Any], dtypes: Sequence[str]
) -> list[np.ndarray]:
    """PostgreSQL: `query` through ``COPY ... TO STDOUT (FORMAT BINARY)``, each row a
    field count, then per field its length and big-endian value (none may be NULL)."""
    sql, params = _driver_sql(query, conn.dialect)
    driver: Any = conn.connection.driver_connection  # psycopg's connection, for COPY
    cursor = driver.cursor()
    buffer = bytearray()
    try:
        with cursor.copy(f"COPY ({sql}) TO STDOUT (FORMAT BINARY)", params) as copy:
            for chunk in copy:
                buffer += chunk
    finally:
        cursor.close()
    signature, _flags, extension = _PGCOPY_HEADER.unpack_from(buffer)
    if signature != _PGCOPY_SIGNATURE:
        raise SourceError("COPY returned data that is not PostgreSQL's binary format")
    fields = [("n", ">i2")]
    for i, dtype in enumerate(dtypes):
        fields += [(f"l{i}", ">i4"), (f"c{i}", ">" + dtype)]
    record = np.dtype(fields)
    start = _PGCOPY_HEADER.size + extension
    body = len(buffer) - start - 2  # the trailer: a field count of -1
    if body % record.itemsize:
        raise SourceError("COPY returned rows of an unexpected layout")
    rows = np.frombuffer(buffer, dtype=record, offset=start, count=body // record.itemsize)
    sizes = [np.dtype(d).itemsize for d in dtypes]
    if (rows["n"] != len(dtypes)).any() or any(
        (rows[f"l{i}"] != size).any() for i, size in enumerate(sizes)
    ):
        raise SourceError("COPY returned rows of an unexpected layout")
    return [rows[f"c{i}"].astype(dtype) for i, dtype in enumerate(dtypes)]


def _as_double(conn: Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """PostgreSQL: the column as float8, NULL as NaN (binary COPY has no fixed-width
    NULL). SQLite: the raw value, never cast (``CAST(' ' AS REAL)`` is 0, a value the
    frame path reads as missing); ``np.fromiter`` converts it or refuses it."""
    if conn.dialect.name != "postgresql":
        return column
    return sa.func.coalesce(sa.cast(column, sa.Double()), sa.literal_column("'NaN'::float8"))


def _category_codes(column: sa.ColumnElement[Any], values: Sequence[Any]) -> sa.ColumnElement[Any]:
    """Each row's index into the distinct raw `values` of its column (-1: NULL)."""
    whens = [(column == value, i) for i, value in enumerate(values) if value is not None]
    if not whens:
        return sa.cast(sa.literal(-1), sa.SmallInteger())
    return sa.cast(sa.case(*whens, else_=-1), sa.SmallInteger())


# --------------------------------------------------------------------------- reads


def _read(
    conn: Connection,
    table: sa.Table,
    source: CurrentSourceConfig,
    now: float,
    numeric: Sequence[str],
    categorical: Sequence[str],
    rows: bool,
) -> WindowColumns:
    where = _window(conn, table, source, now)
    raw = _raw_counts(conn, table, where, categorical)
    if rows and sum(len(pairs) for pairs in raw.values()) > MAX_DISTINCT:
        raise _NotServed(f"more than {MAX_DISTINCT} distinct categorical values")
    keys = _normalised_keys({name: [v for v, _ in pairs] for name, pairs in raw.items()})
    coded = list(categorical) if rows else []
    columns = [_as_double(conn, table.c[name]) for name in ("ts", *numeric)]
    columns += [_category_codes(table.c[name], [v for v, _ in raw[name]]) for name in coded]
    dtypes = ["f8"] * (1 + len(numeric)) + ["i2"] * len(coded)
    key = arrival_key(table, conn.dialect)
    query = sa.select(*columns).where(*where).order_by(table.c.ts, key)
    arrays = _fetch_arrays(conn, query, dtypes)
    values = dict(zip(numeric, arrays[1 : 1 + len(numeric)], strict=True))
    if any(np.isinf(v).any() for v in values.values()):
        raise _NotServed("a numeric value is infinite")
    codes = dict(zip(coded, arrays[1 + len(numeric) :], strict=True))
    return WindowColumns(
        n_rows=len(arrays[0]),
        numeric=values,
        categorical={
            name: _category_column(raw[name], keys[name], codes.get(name)) for name in categorical
        },
    )


def read_window_columns(
    source: CurrentSourceConfig,
    now: float,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    rows: bool = False,
) -> WindowColumns | None:
    """The current window of the prediction log (`source`, at Unix time `now`): the
    `numeric` columns as arrays, the `categorical` features' counts and, with `rows`,
    their per-row codes. None when the frame path must read it (module notes)."""
    try:
        with log_engine(source) as engine:
            table = sa.Table(source.table, sa.MetaData(), autoload_with=engine)
            _check_table(table, numeric, categorical)
            options: dict[str, Any] = {}
            if engine.dialect.name == "postgresql":
                options = {"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
            with engine.connect().execution_options(**options) as conn:
                if engine.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN")  # one snapshot for both statements
                return _read(conn, table, source, now, numeric, categorical, rows)
    except _NotServed as why:
        shown = safe_url(source.url)
        log.debug("%s table %s: the window is read as a frame: %s", shown, source.table, why)
        return None


def read_labelled_columns(
    source: CurrentSourceConfig, now: float, window_hours: float, numeric: Sequence[str]
) -> dict[str, np.ndarray] | None:
    """The `numeric` columns and ``actual`` (0/1) of the predictions of the last
    `window_hours` that have feedback, each with its newest label, oldest first: the
    rows of :func:`exporter.data.sources.load_labelled`, as arrays. None when the frame
    path must read them (module notes)."""
    try:
        with log_engine(source) as engine:
            meta = sa.MetaData()
            table = sa.Table(source.table, meta, autoload_with=engine)
            _check_table(table, numeric, ())
            query = labelled_query(
                now - window_hours * 3600.0,
                predictions_table=table,
                feedback_table=sa.Table("feedback", meta, autoload_with=engine),
                columns=("ts", *numeric),
            ).subquery("l")
            with engine.connect() as conn:
                selected = [_as_double(conn, query.c[name]) for name in (*numeric, ACTUAL)]
                ordered = sa.select(*selected).order_by(query.c.ts)
                arrays = _fetch_arrays(conn, ordered, ["f8"] * len(selected))
    except _NotServed as why:
        shown = safe_url(source.url)
        log.debug("%s table %s: the labels are read as a frame: %s", shown, source.table, why)
        return None
    values = dict(zip((*numeric, ACTUAL), arrays, strict=True))
    if any(np.isinf(v).any() for v in values.values()):
        return None
    return values
