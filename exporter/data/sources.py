"""Where the reference and the current window come from: files and the prediction log.

Every function here does I/O and returns a DataFrame in the Telco schema (checked by
`loader.normalize_frame`), plus the model's ``score`` column where the source has one.
Problems raise `SourceError` with a message naming the path, table or column.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from exporter.config import CurrentSourceConfig
from exporter.data.dburl import safe_url
from exporter.data.loader import DataSchemaError, normalize_frame, read_table
from exporter.data.predlog import arrival_key, labelled_query, make_engine
from exporter.domain import schema

SCORE = "score"
PREDICTED = "predicted"
ACTUAL = "actual"
#: The prediction log's model version, and the challenger's score and version (shadow).
VERSION = "version"
CHALLENGER_SCORE = "challenger_score"
CHALLENGER_VERSION = "challenger_version"
_PASSTHROUGH = (SCORE, PREDICTED, ACTUAL, CHALLENGER_SCORE)
_TEXT_PASSTHROUGH = (VERSION, CHALLENGER_VERSION)


class SourceError(RuntimeError):
    """The reference or the current window could not be read."""


def read_frame(path: str | Path) -> pd.DataFrame:
    """Read one CSV (optionally gzipped, BOM tolerated) or Parquet file as raw columns."""
    p = Path(path)
    try:
        return read_table(p)
    except FileNotFoundError:
        raise SourceError(f"{p}: file not found") from None
    except DataSchemaError as err:
        raise SourceError(str(err)) from None
    except Exception as err:  # pyarrow and the csv parser raise many types
        raise SourceError(f"{p}: cannot read: {err}") from None


def _schema_frame(raw: pd.DataFrame, where: str) -> pd.DataFrame:
    """Validate the Telco columns and keep the score, label and version columns the
    source has (numbers as floats, versions as text, missing ones as None)."""
    try:
        loaded = normalize_frame(raw)
    except DataSchemaError as err:
        raise SourceError(f"{where}: {err}") from None
    frame = loaded.frame
    for column in _PASSTHROUGH:
        if column in raw.columns:
            values = pd.to_numeric(raw[column], errors="coerce")
            frame = frame.assign(**{column: values.to_numpy()})
    for column in _TEXT_PASSTHROUGH:
        if column in raw.columns:
            text = [None if pd.isna(v) else str(v) for v in raw[column]]
            frame = frame.assign(**{column: np.array(text, dtype=object)})
    return frame


def load_reference(path: str | Path) -> pd.DataFrame:
    """The reference snapshot written at training time (features and, if present, scores)."""
    p = Path(path)
    if not p.exists():
        raise SourceError(
            f"{p}: reference not found (run `churn-monitor train` or `churn-monitor setup`)"
        )
    frame = _schema_frame(read_frame(p), str(p))
    if frame.empty:
        raise SourceError(f"{p}: the reference has no rows")
    return frame


def _load_files(source: CurrentSourceConfig) -> pd.DataFrame:
    pattern = str(source.path)
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths or not Path(paths[0]).exists():
        raise SourceError(f"data.current.path: no file matches {pattern}")
    frames = [_schema_frame(read_frame(p), p) for p in paths]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if source.window_rows is not None:
        frame = frame.tail(source.window_rows).reset_index(drop=True)
    return frame


def _load_sql(source: CurrentSourceConfig, now: float) -> pd.DataFrame:
    with log_engine(source) as engine:
        table = sa.Table(source.table, sa.MetaData(), autoload_with=engine)
        query = sa.select(table).order_by(
            table.c.ts.desc(), arrival_key(table, engine.dialect).desc()
        )
        if source.window_hours is not None:
            query = query.where(table.c.ts >= now - source.window_hours * 3600.0)
        if source.window_rows is not None:
            query = query.limit(source.window_rows)
        with engine.connect() as conn:
            raw = pd.read_sql(query, conn)
    shown = safe_url(source.url)
    raw = raw.rename(columns={"customer_id": schema.ID_COLUMN}).iloc[::-1]
    return _schema_frame(raw.reset_index(drop=True), f"{shown} table {source.table}")


def load_current(source: CurrentSourceConfig, now: float) -> pd.DataFrame:
    """The current window: the newest rows of the prediction log or of the files."""
    if source.kind == "file":
        return _load_files(source)
    return _load_sql(source, now)


def load_labelled(source: CurrentSourceConfig, now: float, window_hours: float) -> pd.DataFrame:
    """Predictions logged in the last `window_hours` that have feedback, with ``actual``.

    The window is by prediction time, so a label that arrives late still counts while
    its prediction is inside the window. A prediction labelled several times counts
    once, with its newest label (:func:`exporter.data.predlog.newest_labels`).
    """
    with log_engine(source) as engine:
        meta = sa.MetaData()
        query = labelled_query(
            now - window_hours * 3600.0,
            predictions_table=sa.Table(source.table, meta, autoload_with=engine),
            feedback_table=sa.Table("feedback", meta, autoload_with=engine),
        )
        with engine.connect() as conn:
            raw = pd.read_sql(query, conn)
    raw = raw.rename(columns={"customer_id": schema.ID_COLUMN})
    return _schema_frame(raw, f"{safe_url(source.url)} table {source.table} with feedback")


def shadowed(frame: pd.DataFrame, champion_version: str, challenger_version: str) -> pd.DataFrame:
    """The rows scored by both models of a comparison: logged by `champion_version`
    with a finite shadow score of `challenger_version` (none when the log predates
    shadow scoring)."""
    if VERSION not in frame.columns or CHALLENGER_VERSION not in frame.columns:
        columns = (VERSION, CHALLENGER_VERSION, CHALLENGER_SCORE)
        return frame.iloc[0:0].assign(**{column: [] for column in columns})
    keep = (
        (frame[VERSION] == champion_version)
        & (frame[CHALLENGER_VERSION] == challenger_version)
        & np.isfinite(frame[CHALLENGER_SCORE].to_numpy(dtype=float))
    )
    return frame[keep.to_numpy()].reset_index(drop=True)


@contextmanager
def log_engine(source: CurrentSourceConfig) -> Iterator[Engine]:
    """An engine on the prediction log of `source`, disposed on exit. A missing table or
    any database error inside becomes a `SourceError` naming the URL (no password) and
    the table, or the error's class and the driver's message."""
    shown = safe_url(source.url)  # in messages: no password
    engine = make_engine(source.url)
    try:
        yield engine
    except sa.exc.NoSuchTableError as err:
        raise SourceError(f"{shown}: table {str(err)!r} does not exist") from None
    except sa.exc.SQLAlchemyError as err:
        raise SourceError(f"{shown}: {_reason(err)}") from None
    finally:
        engine.dispose()


def _reason(err: sa.exc.SQLAlchemyError) -> str:
    """The error's class and the driver's message when there is one."""
    return f"{err.__class__.__name__}: {getattr(err, 'orig', None) or err}"
