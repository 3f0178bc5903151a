"""The window computed in the database (exporter/data/window_query.py) against the frame
path (exporter/data/sources.py), on SQLite and on a real PostgreSQL server (the
`backend` fixture): the same rows, arrays, category counts and codes, the same drift,
multivariate and performance results from the jobs, and the frame path taking over
where the database path cannot promise that."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from exporter.config import MonitoringConfig, parse_config
from exporter.data import predlog, synthetic, window_query
from exporter.data.sources import ACTUAL, SCORE, SourceError, load_current, load_labelled
from exporter.domain import schema
from exporter.domain.model import ModelRef
from exporter.monitor import drift_job, performance_job
from exporter.monitor.drift_job import DriftJob, assess_window
from exporter.monitor.performance_job import PerformanceJob
from exporter.monitor.reference_job import ReferenceCache
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.drift.inputs import category_keys
from exporter.stats.multivariate import assess_multivariate, fit_multivariate

from .pg_fixtures import Backend

NOW = 1_800_000_000.0
NUMERIC = tuple(schema.NUMERIC_FEATURES)
CATEGORICAL = tuple(schema.CATEGORICAL_FEATURES)
#: Values the frame path normalises: stripped, blank is missing, unknown is a category.
ODD_VALUES = {"Partner": " Yes ", "Contract": "", "PaymentMethod": "Bitcoin", "gender": "Male\t"}


def log_rows(n: int, *, ts: float, seed: int, step: float = 1.0) -> list[dict[str, Any]]:
    """`n` predictions of synthetic customers `step` seconds apart from `ts`; every 7th
    row has one of `ODD_VALUES`, every 11th no TotalCharges."""
    frame = synthetic.generate_customers(n, seed=seed, scenario="gradual")
    rng = np.random.default_rng(seed)
    odd = list(ODD_VALUES.items())
    rows = []
    for i, rec in enumerate(frame.to_dict("records")):
        row = {k: rec[k] for k in predlog.PREDICTION_COLUMNS if k in rec}
        row.update(
            id=str(uuid.uuid4()),
            ts=ts + i * step,
            model="churn-model",
            version="1",
            customer_id=rec["customerID"],
            score=float(rng.uniform()),
            predicted=0,
        )
        if i % 7 == 0:
            column, value = odd[(i // 7) % len(odd)]
            row[column] = value
        if i % 11 == 0 or np.isnan(row["TotalCharges"]):
            row["TotalCharges"] = None
        rows.append(row)
    return rows


def current_source(url: str, **window: Any):
    return parse_config({"data": {"current": {"url": url, **window}}}).data.current


@pytest.fixture
def log_url(backend: Backend) -> Iterator[str]:
    """A log of 1,500 rows: 300 older than the 1-hour window, 1,200 inside it, of which
    the window keeps the newest 1,000."""
    url = backend.url("predictions")
    engine = predlog.make_engine(url)
    predlog.create_tables(engine)
    predlog.log_predictions(engine, log_rows(300, ts=NOW - 7200.0, seed=1))
    predlog.log_predictions(engine, log_rows(1200, ts=NOW - 3000.0, seed=2, step=2.0))
    engine.dispose()
    yield url


def profile_of(reference: pd.DataFrame) -> drift.ReferenceProfile:
    return drift.build_profile(reference, numeric=NUMERIC, categorical=CATEGORICAL, psi_bins=10)


# ------------------------------------------------------------------- window content


def test_the_database_window_holds_the_frame_paths_rows(log_url: str) -> None:
    source = current_source(log_url, window_rows=1000, window_hours=1.0)
    frame = load_current(source, NOW)
    window = window_query.read_window_columns(
        source, NOW, numeric=(*NUMERIC, SCORE), categorical=CATEGORICAL, rows=True
    )
    assert window is not None
    assert window.n_rows == len(frame) == 1000
    for name, values in window.numeric.items():  # the same values, oldest row first
        assert values.dtype == np.float64
        np.testing.assert_array_equal(values, frame[name].to_numpy(dtype=float), err_msg=name)
    assert np.isnan(window.numeric["TotalCharges"]).sum() > 50
    rows = window.frame()
    for name in CATEGORICAL:
        column = window.categorical[name]
        assert dict(column.counts) == category_keys(frame[name]), name
        assert column.n_missing == int(frame[name].isna().sum()), name
        codes = rows[name].cat.codes.to_numpy()
        assert codes.min() >= -1 and (codes == -1).sum() == column.n_missing
    assert window.categorical["Contract"].n_missing > 0  # the blank value is missing
    assert window.categorical["PaymentMethod"].counts["Bitcoin"] > 0
    assert "Male\t" not in window.categorical["gender"].counts
    # Each row's category, not only the counts: the multivariate encoding is the same.
    encoder = fit_multivariate(
        synthetic.generate_customers(800, seed=5), NUMERIC, CATEGORICAL
    ).encoder
    np.testing.assert_array_equal(encoder.encode(rows), encoder.encode(frame))


def test_the_drift_statistics_are_the_frame_paths(log_url: str) -> None:
    source = current_source(log_url, window_rows=1000, window_hours=1.0)
    reference = synthetic.generate_customers(1500, seed=9)
    profile = profile_of(reference)
    options: dict[str, Any] = {"rules": None, "drift_threshold": 0.3, "min_window_rows": 300}
    frame = load_current(source, NOW)
    window = window_query.read_window_columns(
        source, NOW, numeric=NUMERIC, categorical=CATEGORICAL, rows=True
    )
    assert window is not None
    got, want = assess_window(profile, window, **options), assess(profile, frame, **options)
    assert got == want
    assert got.feature("PaymentMethod").n_unseen > 0 and got.score is not None
    joint = fit_multivariate(reference, NUMERIC, CATEGORICAL)
    assert assess_multivariate(joint, window.frame(), min_window_rows=300) == (
        assess_multivariate(joint, frame, min_window_rows=300)
    )


def test_an_empty_window_and_counts_without_rows(log_url: str) -> None:
    later = NOW + 86400.0
    empty = window_query.read_window_columns(
        current_source(log_url, window_hours=1.0),
        later,
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        rows=True,
    )
    assert empty is not None and empty.n_rows == 0 and len(empty.frame()) == 0
    assert all(not c.counts and c.n_missing == 0 for c in empty.categorical.values())
    counts_only = window_query.read_window_columns(
        current_source(log_url, window_rows=10), NOW, numeric=(), categorical=("gender",)
    )
    assert counts_only is not None and counts_only.n_rows == 10
    assert sum(counts_only.categorical["gender"].counts.values()) == 10
    with pytest.raises(ValueError, match="without its rows"):
        counts_only.frame()


def test_labelled_arrays_are_the_frame_paths_labels(log_url: str) -> None:
    engine = predlog.make_engine(log_url)
    with engine.connect() as conn:
        table = predlog.predictions
        ids = list(conn.execute(sa.select(table.c.id).order_by(table.c.ts)).scalars())
    for i, pid in enumerate(ids[::5]):  # the oldest ones fall outside a 1-hour window
        predlog.record_feedback(engine, actual=i % 2, ts=NOW, prediction_id=pid)
    for pid in ids[-50::5]:  # labelled again: the newest label wins
        predlog.record_feedback(engine, actual=1, ts=NOW + 1, prediction_id=pid)
    engine.dispose()
    source = current_source(log_url)
    frame = load_labelled(source, NOW, 1.0)
    arrays = window_query.read_labelled_columns(source, NOW, 1.0, (SCORE,))
    assert arrays is not None and len(frame) == len(arrays[ACTUAL]) == 240
    np.testing.assert_array_equal(arrays[SCORE], frame[SCORE].to_numpy(dtype=float))
    np.testing.assert_array_equal(arrays[ACTUAL], frame[ACTUAL].to_numpy(dtype=float))


# ------------------------------------------------------------- where the frame path reads


def test_values_the_frame_path_rejects_leave_the_window_to_it(backend: Backend) -> None:
    url = backend.url("predictions")
    engine = predlog.make_engine(url)
    predlog.create_tables(engine)
    rows = log_rows(20, ts=NOW - 100.0, seed=3)
    rows[4]["MonthlyCharges"] = float("inf")
    predlog.log_predictions(engine, rows)
    engine.dispose()
    source = current_source(url)
    assert window_query.read_window_columns(source, NOW, numeric=NUMERIC) is None
    with pytest.raises(SourceError, match="MonthlyCharges"):
        load_current(source, NOW)  # what the job then reports, as before


def test_a_table_without_the_logs_columns_is_read_by_the_frame_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = predlog.make_engine(url)
    frame = synthetic.generate_customers(30, seed=4).drop(columns=["Churn", "customerID"])
    frame.assign(ts=NOW - np.arange(30.0)).to_sql("batch", engine)  # no id column
    with engine.begin() as conn:  # and text in a numeric column
        conn.exec_driver_sql("UPDATE batch SET tenure = 'twelve' WHERE rowid = 1")
    engine.dispose()
    source = current_source(url, table="batch")
    assert window_query.read_window_columns(source, NOW, numeric=NUMERIC) is None
    missing = current_source(url, table="absent")
    with pytest.raises(SourceError, match="does not exist"):
        window_query.read_window_columns(missing, NOW, numeric=NUMERIC)


def test_text_in_a_sqlite_numeric_column_leaves_the_window_to_the_frame_path(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    engine = predlog.make_engine(url)
    predlog.create_tables(engine)
    predlog.log_predictions(engine, log_rows(20, ts=NOW - 100.0, seed=3))
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE predictions SET TotalCharges = ' ' WHERE rowid = 2")
    engine.dispose()
    source = current_source(url)
    assert window_query.read_window_columns(source, NOW, numeric=NUMERIC) is None
    assert window_query.read_window_columns(source, NOW, numeric=(SCORE,)) is not None
    assert np.isnan(load_current(source, NOW)["TotalCharges"]).sum() >= 1  # blank: missing


# ------------------------------------------------------------------------- the jobs


class FixedModel:
    """The monitored model as the jobs see it, without a registry."""

    ref = ModelRef(name="churn-model", version="1", run_id="r")

    def refresh(self) -> bool:
        return False

    def current(self) -> ModelRef:
        return self.ref

    def baseline(self) -> Mapping[str, float]:
        return {"f1": 0.6}

    def threshold(self) -> float | None:
        return 0.4


def job_config(tmp_path: Path, url: str) -> MonitoringConfig:
    reference = synthetic.generate_customers(1500, seed=9)
    scores = np.random.default_rng(9).uniform(size=len(reference))
    reference.assign(**{SCORE: scores}).to_parquet(tmp_path / "reference.parquet")
    return parse_config(
        {
            "data": {
                "reference_path": str(tmp_path / "reference.parquet"),
                "current": {"url": url, "window_rows": 1000, "window_hours": 10_000},
            },
            "data_drift_monitoring": {"min_window_rows": 300},
            "performance_monitoring": {"min_labeled_rows": 50, "label_window_hours": 10_000},
            "reports": {"dir": str(tmp_path / "reports")},
        }
    )


def frame_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the jobs read through the frame path alone."""
    monkeypatch.setattr(drift_job, "read_window_columns", lambda *a, **k: None)
    monkeypatch.setattr(performance_job, "read_window_columns", lambda *a, **k: None)
    monkeypatch.setattr(performance_job, "read_labelled_columns", lambda *a, **k: None)


def database_path_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the frame path fail, so a job that still uses it fails."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the frame path was read")

    for module in (drift_job, performance_job):
        monkeypatch.setattr(module, "load_current", refuse)
    monkeypatch.setattr(performance_job, "load_labelled", refuse)


def test_the_jobs_read_the_database_path_and_publish_the_frame_paths_results(
    tmp_path: Path, log_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = predlog.make_engine(log_url)
    with engine.connect() as conn:
        ids = list(conn.execute(sa.select(predlog.predictions.c.id)).scalars())
    for i, pid in enumerate(ids[::3]):
        predlog.record_feedback(engine, actual=i % 2, ts=time.time(), prediction_id=pid)
    engine.dispose()
    config = job_config(tmp_path, log_url)

    def run_both() -> tuple[Any, Any]:
        reference = ReferenceCache(config.data.reference_path)
        drift_snapshot = DriftJob(config, reference, model=FixedModel()).run()
        perf = PerformanceJob(config, reference, model=FixedModel()).run()
        return replace(drift_snapshot, taken_at=0.0), replace(perf, taken_at=0.0)

    with monkeypatch.context() as patched:
        database_path_only(patched)
        by_database = run_both()
    with monkeypatch.context() as patched:
        frame_path_only(patched)
        by_frame = run_both()
    drift_db, perf_db = by_database
    assert drift_db.result.n_current == 1000 and drift_db.multivariate is not None
    assert drift_db.multivariate.reconstruction_error is not None
    assert perf_db.window_rows == 1000 and perf_db.realized.values  # labels were joined
    assert by_database == by_frame


def test_counts_and_rows_come_from_one_snapshot_while_the_api_writes(backend: Backend) -> None:
    """A writer appends while windows are read: each window's per-row categories still
    add up to its counts (both statements saw the same rows)."""
    url = backend.url("predictions")
    engine = predlog.make_engine(url)
    predlog.create_tables(engine)
    predlog.log_predictions(engine, log_rows(200, ts=NOW - 1000.0, seed=6))
    batches = [log_rows(50, ts=NOW - 500.0 + k, seed=7 + k, step=1e-3) for k in range(40)]
    stop = threading.Event()

    def write() -> None:
        for batch in batches:
            if stop.is_set():
                return
            predlog.log_predictions(engine, batch)

    writer = threading.Thread(target=write)
    writer.start()
    source = current_source(url, window_rows=150)
    try:
        while writer.is_alive():
            window = window_query.read_window_columns(
                source, NOW, numeric=("ts",), categorical=CATEGORICAL, rows=True
            )
            assert window is not None and window.n_rows == 150
            for name, column in window.categorical.items():
                assert column.codes is not None
                per_row = np.bincount(column.codes[column.codes >= 0], minlength=len(column.keys))
                assert per_row.tolist() == [column.counts[k] for k in column.keys], name
    finally:
        stop.set()
        writer.join()
        engine.dispose()
