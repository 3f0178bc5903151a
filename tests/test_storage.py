"""The stores on both backends: the prediction log (writes, the feedback join, the
window queries), its schema creation and migration, the history, and the incremental
reader under concurrent writers. Each test runs on SQLite and on a real PostgreSQL
server (the `backend` fixture of tests/pg_fixtures.py)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from exporter.config import parse_config
from exporter.data import history, predlog, synthetic
from exporter.data.logtail import read_since, read_window
from exporter.data.sources import load_current, load_labelled
from exporter.domain.model import ModelRef
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.snapshots import DriftSnapshot

from .pg_fixtures import Backend
from .test_summary import performance_snapshot

NOW = 1_800_000_000.0


def rows(n: int, *, ts: float, seed: int = 0, step: float = 1.0) -> list[dict[str, Any]]:
    """`n` prediction rows of synthetic customers, `step` seconds apart from `ts`."""
    frame = synthetic.generate_customers(n, seed=seed)
    out = []
    for i, rec in enumerate(frame.to_dict("records")):
        row = {k: rec[k] for k in predlog.PREDICTION_COLUMNS if k in rec}
        total = row["TotalCharges"]
        row.update(
            id=str(uuid.uuid4()),
            ts=ts + i * step,
            model="churn-model",
            version="1",
            customer_id=rec["customerID"],
            score=0.01 * (i % 100),
            predicted=int(i % 3 == 0),
            TotalCharges=None if total is None or np.isnan(total) else total,
            anomaly_score=None,
            unusual=None,
            challenger_version=None,
            challenger_score=None,
        )
        out.append(row)
    return out


def source(url: str, **current: Any):
    return parse_config({"data": {"current": {"url": url, **current}}}).data.current


def opened(url: str) -> sa.Engine:
    engine = predlog.make_engine(url)
    predlog.create_tables(engine)
    return engine


# ------------------------------------------------------------------ schema creation


def test_a_plain_postgresql_url_uses_psycopg_and_messages_hide_the_password() -> None:
    from exporter.data.sources import SourceError

    assert predlog.make_engine("postgresql://u@127.0.0.1/db").dialect.driver == "psycopg"
    with pytest.raises(SourceError) as caught:  # nothing listens on port 1
        load_current(source("postgresql+psycopg://u:s3cret@127.0.0.1:1/db"), NOW)
    assert "s3cret" not in str(caught.value) and "127.0.0.1" in str(caught.value)


def test_schema_creation_is_idempotent_and_safe_when_processes_start_at_once(
    backend: Backend,
) -> None:
    url = backend.url("log")
    # Several processes opening the stores at once (one engine each: their own
    # connections), on a new database file for SQLite.
    openers = 6
    barrier = threading.Barrier(openers)
    errors: list[BaseException] = []

    def open_stores() -> None:
        try:
            engine = predlog.make_engine(url)
            barrier.wait(10)
            predlog.create_tables(engine)
            history.open_history(url).dispose()
            engine.dispose()
        except BaseException as err:
            errors.append(err)

    for _ in range(2):  # and a second round on the existing tables
        threads = [threading.Thread(target=open_stores) for _ in range(openers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
    engine = predlog.make_engine(url)
    inspector = sa.inspect(engine)
    tables = set(inspector.get_table_names())
    assert {"predictions", "feedback", *(t.name for t in history.TABLES.values())} <= tables
    indexed = {tuple(i["column_names"]) for i in inspector.get_indexes("predictions")}
    assert ("ts",) in indexed and ("customer_id",) in indexed
    assert ("prediction_id",) in {
        tuple(i["column_names"]) for i in inspector.get_indexes("feedback")
    }
    columns = [c["name"] for c in inspector.get_columns("predictions")]
    if backend.name == "postgresql":
        assert (predlog.SEQUENCE_COLUMN,) in indexed
        assert columns == [*predlog.PREDICTION_COLUMNS, predlog.SEQUENCE_COLUMN]
    else:
        assert columns == list(predlog.PREDICTION_COLUMNS)
    assert predlog.create_tables(engine) == []
    engine.dispose()


def test_an_older_log_gains_the_added_columns_and_keeps_its_rows(backend: Backend) -> None:
    url = backend.url("old")
    engine = predlog.make_engine(url)
    old = sa.MetaData()
    first = [c for c in predlog.predictions.columns if c.name not in predlog.ADDED_COLUMNS]
    table = sa.Table("predictions", old, *(c._copy() for c in first))
    old.create_all(engine)
    before = rows(3, ts=NOW)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{k: v for k, v in r.items() if k in table.c} for r in before])
    predlog.create_tables(engine)
    present = {c["name"] for c in sa.inspect(engine).get_columns("predictions")}
    assert set(predlog.ADDED_COLUMNS) <= present
    later = rows(2, ts=NOW + 10, seed=1)
    # an old writer's tuple, without the added columns: logged with NULLs
    n_old = len(predlog.PREDICTION_COLUMNS) - len(predlog.ADDED_COLUMNS)
    predlog.log_predictions(
        engine, [tuple(r[c] for c in predlog.PREDICTION_COLUMNS[:n_old]) for r in later]
    )
    read = read_window(engine, source(url), NOW + 20)
    assert read.rows.ids == [r["id"] for r in before + later]
    assert read.row_key == 5
    with engine.connect() as conn:
        unusual = conn.execute(sa.select(predlog.predictions.c.unusual)).scalars().all()
    assert unusual == [None] * 5
    engine.dispose()


# ------------------------------------------------------------------- the prediction log


def test_writes_and_the_feedback_join(backend: Backend) -> None:
    url = backend.url("log")
    engine = opened(url)
    logged = rows(6, ts=NOW)
    logged[0].update(anomaly_score=2.5, unusual=True)
    predlog.log_predictions(engine, logged[:4])  # dicts
    predlog.log_predictions(  # tuples in column order
        engine, [tuple(r[c] for c in predlog.PREDICTION_COLUMNS) for r in logged[4:]]
    )
    predlog.ping(engine)
    ids = [r["id"] for r in logged]
    assert predlog.record_feedback(engine, actual=1, ts=NOW + 100, prediction_id=ids[0]) == ids[0]
    assert predlog.record_feedback(engine, actual=0, ts=NOW + 101, prediction_id=ids[1]) == ids[1]
    # a later label of the same prediction wins
    predlog.record_feedback(engine, actual=0, ts=NOW + 102, prediction_id=ids[0])
    # by customer id: that customer's latest prediction
    again = rows(1, ts=NOW + 50, seed=0)[0] | {"customer_id": logged[2]["customer_id"]}
    predlog.log_predictions(engine, [again])
    label_of = predlog.record_feedback(
        engine, actual=1, ts=NOW + 103, customer_id=logged[2]["customer_id"]
    )
    assert label_of == again["id"]
    with pytest.raises(predlog.UnknownPrediction):
        predlog.record_feedback(engine, actual=1, ts=NOW, prediction_id="nope")
    with pytest.raises(predlog.UnknownPrediction):
        predlog.record_feedback(engine, actual=1, ts=NOW, customer_id="nobody")
    predlog.record_shadow_scores(engine, [("2", 0.75, ids[1])])

    with engine.connect() as conn:
        joined = conn.execute(predlog.labelled_query()).mappings().all()
    assert [(r["id"], r["actual"]) for r in joined] == [(ids[0], 0), (ids[1], 0), (again["id"], 1)]
    assert joined[0]["feedback_ts"] == NOW + 102
    assert joined[0]["anomaly_score"] == 2.5 and bool(joined[0]["unusual"]) is True
    assert (joined[1]["challenger_version"], joined[1]["challenger_score"]) == ("2", 0.75)

    labelled = load_labelled(source(url), NOW + 200, window_hours=1)
    assert list(labelled["actual"]) == [0.0, 0.0, 1.0]
    assert list(labelled["customerID"]) == [
        logged[0]["customer_id"],
        logged[1]["customer_id"],
        again["customer_id"],
    ]
    # the window is by prediction time: only the later prediction in the last 160 s
    assert len(load_labelled(source(url), NOW + 200, window_hours=160 / 3600)) == 1
    engine.dispose()


def test_a_pushed_batch_is_all_or_nothing(backend: Backend) -> None:
    engine = opened(backend.url("log"))
    batch = rows(4, ts=NOW)
    labels = [(batch[0]["id"], 1), (batch[3]["id"], 0)]
    predlog.append_pushed(engine, batch, labels, label_ts=NOW + 1, client_ids=[batch[0]["id"]])
    retry = rows(2, ts=NOW + 5, seed=3)
    retry[1]["id"] = batch[0]["id"]  # already logged
    with pytest.raises(predlog.DuplicatePrediction) as caught:
        predlog.append_pushed(
            engine, retry, [(retry[0]["id"], 1)], label_ts=NOW + 6, client_ids=[retry[1]["id"]]
        )
    assert caught.value.id == batch[0]["id"]
    with engine.connect() as conn:
        n_rows = conn.execute(sa.select(sa.func.count()).select_from(predlog.predictions))
        assert n_rows.scalar() == 4
        n_labels = conn.execute(sa.select(sa.func.count()).select_from(predlog.feedback))
        assert n_labels.scalar() == 2
    engine.dispose()


def test_window_queries_last_hours_and_last_rows(backend: Backend) -> None:
    url = backend.url("log")
    engine = opened(url)
    old = rows(30, ts=NOW - 3 * 3600, seed=1)  # outside a one-hour window
    recent = rows(50, ts=NOW - 1800, seed=2, step=10.0)
    predlog.log_predictions(engine, old + recent)
    by_hours = load_current(source(url, window_hours=1), NOW)
    assert len(by_hours) == 50
    np.testing.assert_array_equal(by_hours["score"], [r["score"] for r in recent])
    by_rows = load_current(source(url, window_rows=20), NOW)
    assert list(by_rows["customerID"]) == [r["customer_id"] for r in recent[-20:]]
    both = load_current(source(url, window_rows=70, window_hours=1), NOW)
    assert len(both) == 50
    everything = load_current(source(url), NOW)
    assert list(everything["customerID"]) == [r["customer_id"] for r in old + recent]
    # the incremental reader's rebuild reads the same window
    read = read_window(engine, source(url, window_rows=20, window_hours=1), NOW)
    assert read.rows.ids == [r["id"] for r in recent[-20:]]
    engine.dispose()


def test_the_reader_sees_every_row_once_under_concurrent_writers(backend: Backend) -> None:
    """Writers on several connections append while the reader follows the log: every
    row and label is read exactly once (on PostgreSQL thanks to the append lock)."""
    url = backend.url("log")
    engine = opened(url)
    src = source(url)
    writers, batches, size = 4, 15, 5
    written: list[str] = []
    lock = threading.Lock()
    done = threading.Event()

    def write(w: int) -> None:
        own = predlog.make_engine(url)
        for b in range(batches):
            batch = rows(size, ts=NOW + b, seed=100 * w + b)
            predlog.log_predictions(own, batch)
            predlog.record_feedback(own, actual=1, ts=NOW + b, prediction_id=batch[0]["id"])
            with lock:
                written.extend(r["id"] for r in batch)
        own.dispose()

    seen: list[str] = []
    seen_labels: list[str] = []
    keys = {"row_key": 0, "label_key": 0}

    def follow() -> None:
        while True:
            finished = done.is_set()
            read = read_since(engine, src, **keys)
            seen.extend(read.rows.ids)
            seen_labels.extend(read.labels.prediction_ids)
            keys.update(row_key=read.row_key, label_key=read.label_key)
            if finished:
                return

    reader = threading.Thread(target=follow)
    reader.start()
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    reader.join(60)
    assert len(seen) == len(set(seen)) == writers * batches * size
    assert set(seen) == set(written)
    assert len(seen_labels) == len(set(seen_labels)) == writers * batches
    engine.dispose()


# ------------------------------------------------------------------------ the history


def test_history_records_and_queries_runs(backend: Backend) -> None:
    engine = history.open_history(backend.url("history"))
    reference = synthetic.generate_customers(400, seed=1)
    profile = drift.build_profile(reference, ["tenure", "MonthlyCharges"], ["Contract"])
    result = assess(
        profile,
        synthetic.generate_customers(300, seed=2),
        drift_threshold=0.15,
        min_window_rows=100,
    )
    history.record_drift(engine, DriftSnapshot(ModelRef("m", "1"), result, 0.3, 100, NOW))
    history.record_performance(engine, performance_snapshot(taken_at=NOW + 1))
    history.record_retraining(engine, ts=NOW + 2, trigger="t", decision="promoted")
    history.record_retraining(engine, ts=NOW + 3, trigger="t", decision="failed")
    (run,) = history.query(engine, "drift")
    assert (run["ts"], run["n_current"], run["version"]) == (NOW, 300, "1")
    assert run["score"] == pytest.approx(result.score)
    assert bool(run["drifted"]) == bool(result.drifted)
    metrics = {r["metric"]: r for r in history.query(engine, "performance")}
    assert metrics["accuracy"]["realized"] == 0.7 and metrics["f1"]["realized"] is None
    assert history.last_retraining(engine, ["promoted"]) == NOW + 2
    assert history.last_retraining(engine, ["kept_champion"]) is None
    assert [r["decision"] for r in history.query(engine, "retraining", since=NOW + 3)] == ["failed"]
    engine.dispose()


@pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.integration)], indirect=True
)
def test_concurrent_redeliveries_of_an_alert_make_one_row(backend: Backend) -> None:
    """PostgreSQL only: several exporters may record at once there (the advisory lock of
    `record_alerts`); on SQLite the receiver serialises its calls itself."""
    from .test_history import notification

    url = backend.url("history")
    history.open_history(url).dispose()
    records = history.parse_notification(notification())
    deliveries = 6
    barrier = threading.Barrier(deliveries)
    added: list[int] = []

    def deliver() -> None:
        engine = history.open_history(url)
        barrier.wait(10)
        added.append(history.record_alerts(engine, records, NOW))
        engine.dispose()

    threads = [threading.Thread(target=deliver) for _ in range(deliveries)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    engine = history.open_history(url)
    (row,) = history.query(engine, "alerts")
    assert sorted(added) == [0] * (deliveries - 1) + [1]
    assert row["notifications"] == deliveries
    engine.dispose()
