"""The exporter's window read: the frame path (pandas) against the database path.

    python benchmarks/window_read.py                    # 100,000 and 1,000,000 rows
    python benchmarks/window_read.py --rows 100000 --repeat 3

For each size the prediction log is filled with that many synthetic predictions (SQLite:
``executemany`` in one transaction; PostgreSQL: binary ``COPY FROM STDIN``) and the whole
log is the window (``window_rows`` = the size, ``window_hours`` covering every row).
Measured in one run, on SQLite and on a throwaway PostgreSQL server (``initdb`` and
``pg_ctl`` on a free loopback port, as tests/pg_fixtures.py starts it; skipped when
PostgreSQL is not installed):

* ``pandas``: today's path, :func:`exporter.data.sources.load_current` (``read_sql`` of
  every column, then the schema normalisation), which both jobs used;
* ``db drift+rows``: :func:`exporter.data.window_query.read_window_columns` as the drift
  job calls it with the multivariate methods on (the default): 3 numeric arrays, the
  counts of 16 categorical features by ``GROUP BY`` and each row's category codes;
* ``db drift``: the same without the per-row codes (multivariate off);
* ``db performance``: the scores and monthly charges the performance job reads.

Times are wall clock, best of ``--repeat``; each database path's ratio is the pandas
time divided by its own (above 1: faster than pandas). The window sizes of both paths
are checked to agree. Not part of the tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from exporter.config import CurrentSourceConfig, parse_config
from exporter.data import predlog, synthetic
from exporter.data.sources import SCORE, load_current
from exporter.data.window_query import read_window_columns
from exporter.domain import schema
from tests.pg_fixtures import postgres_bindir, throwaway_server

NOW = 1_800_000_000.0
NUMERIC = tuple(schema.NUMERIC_FEATURES)
CATEGORICAL = tuple(schema.CATEGORICAL_FEATURES)


def log_tuples(n: int, seed: int = 1) -> list[tuple[Any, ...]]:
    """`n` prediction rows in `predlog.PREDICTION_COLUMNS` order, one a second up to NOW."""
    frame = synthetic.generate_customers(n, seed=seed, scenario="gradual")
    rng = np.random.default_rng(seed)
    total = frame["TotalCharges"].to_numpy(dtype=float)
    columns: dict[str, Any] = {
        "id": [str(uuid.uuid4()) for _ in range(n)],
        "ts": NOW - n + np.arange(n, dtype=float),
        "model": ["churn-model"] * n,
        "version": ["1"] * n,
        "customer_id": frame[schema.ID_COLUMN].tolist(),
        **{name: frame[name].tolist() for name in schema.FEATURES if name != "TotalCharges"},
        "TotalCharges": [None if np.isnan(v) else float(v) for v in total],
        SCORE: rng.uniform(size=n).tolist(),
        "predicted": rng.integers(0, 2, size=n).tolist(),
    }
    added = [None] * n
    ordered = [columns.get(name, added) for name in predlog.PREDICTION_COLUMNS]
    return [
        tuple(float(v) if isinstance(v, np.floating) else v for v in row)
        for row in zip(*ordered, strict=True)
    ]


def fill(url: str, rows: list[tuple[Any, ...]]) -> None:
    """Create the log at `url` and append `rows` in one bulk write."""
    engine = predlog.make_engine(url)
    predlog.create_tables(engine)
    try:
        if engine.dialect.name == "sqlite":
            predlog.log_predictions(engine, rows)  # executemany, one transaction
            return
        names = ", ".join(f'"{c}"' for c in predlog.PREDICTION_COLUMNS)
        with engine.begin() as conn:
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY predictions ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            conn.exec_driver_sql("ANALYZE predictions")
    finally:
        engine.dispose()


def best(func: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """The fastest of `repeat` runs of `func` (seconds) and its last result."""
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(source: CurrentSourceConfig, n: int, repeat: int) -> dict[str, float]:
    """Seconds of each path on the log of `source` (every row in the window)."""
    paths: dict[str, Callable[[], Any]] = {
        "pandas": lambda: load_current(source, NOW),
        "db drift+rows": lambda: read_window_columns(
            source, NOW, numeric=NUMERIC, categorical=CATEGORICAL, rows=True
        ),
        "db drift": lambda: read_window_columns(
            source, NOW, numeric=NUMERIC, categorical=CATEGORICAL
        ),
        "db performance": lambda: read_window_columns(
            source, NOW, numeric=(SCORE, "MonthlyCharges")
        ),
    }
    seconds = {}
    for name, func in paths.items():
        seconds[name], result = best(func, repeat)
        rows = len(result) if name == "pandas" else result.n_rows
        if rows != n:
            raise SystemExit(f"{name}: read {rows} rows, expected {n}")
    return seconds


@contextmanager
def backends(tmp: Path, postgres: bool) -> Iterator[dict[str, Callable[[str], str]]]:
    """Backend name -> a function making a fresh database URL for a label."""
    with ExitStack() as stack:
        found: dict[str, Callable[[str], str]] = {
            "sqlite": lambda label: f"sqlite:///{tmp / label}.db"
        }
        if postgres:
            server = stack.enter_context(throwaway_server())

            def pg(label: str) -> str:
                import sqlalchemy as sa

                admin = sa.create_engine(server.url(), isolation_level="AUTOCOMMIT")
                with admin.connect() as conn:
                    conn.exec_driver_sql(f'CREATE DATABASE "{label}"')
                admin.dispose()
                return server.url(label)

            found["postgresql"] = pg
        yield found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="runs per path (best kept)")
    args = parser.parse_args()
    postgres = postgres_bindir() is not None
    print(
        f"# {dt.date.today().isoformat()}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {platform.platform()}"
    )
    if not postgres:
        print("# PostgreSQL is not installed (initdb, pg_ctl): SQLite only")
    header = f"{'backend':<11} {'rows':>9} {'path':<15} {'seconds':>9} {'vs pandas':>10}"
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="window-read-") as tmp,
        backends(Path(tmp), postgres) as found,
    ):
        for n in sorted(args.rows):
            rows = log_tuples(n)
            for backend, make_url in found.items():
                url = make_url(f"log_{n}")
                start = time.perf_counter()
                fill(url, rows)
                print(f"# {backend}: {n:,} rows logged in {time.perf_counter() - start:.1f} s")
                window = {"url": url, "window_rows": n, "window_hours": 10 * n / 3600 + 1}
                source = parse_config({"data": {"current": window}}).data.current
                results.append((backend, n, measure(source, n, args.repeat)))
    print(header)
    for backend, n, seconds in results:
        for path, value in seconds.items():
            ratio = seconds["pandas"] / value
            print(f"{backend:<11} {n:>9,} {path:<15} {value:>9.3f} {ratio:>9.1f}x")


if __name__ == "__main__":
    main()
