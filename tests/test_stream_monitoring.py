"""Streaming mode: the incremental reader of the prediction log and the streaming job,
on a real SQLite log, against the full run's window and statistics. The reader's tests
and the streaming job's main ones also run on PostgreSQL (`both_setup`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError, MonitoringConfig, parse_config
from exporter.data import predlog, synthetic
from exporter.data.logtail import read_since, read_window
from exporter.data.sources import SCORE, load_current, load_reference
from exporter.data.window_query import read_window_columns
from exporter.domain.model import UNRESOLVED, ModelRef
from exporter.monitor.collector import STREAMING_BUILDERS, SnapshotCollector
from exporter.monitor.reference_job import ReferenceCache
from exporter.monitor.store import SnapshotStore
from exporter.monitor.stream_job import StreamJob
from exporter.monitor.wiring import build_monitor, streaming
from exporter.stats import drift
from exporter.stats.decision import DatasetDrift, assess
from exporter.stats.performance import realized_metrics
from exporter.stats.snapshots import DriftSnapshot

from .pg_fixtures import Backend

THRESHOLD = 0.4


class FixedModel:
    """The monitored model as the jobs see it, without a registry."""

    def __init__(self, version: str = "1") -> None:
        self.ref = ModelRef(name="churn-model", version=version, run_id="r")

    def refresh(self) -> bool:
        return False

    def current(self) -> ModelRef:
        return self.ref

    def baseline(self) -> Mapping[str, float]:
        return {}

    def threshold(self) -> float | None:
        return THRESHOLD


class Log:
    """A real prediction log the tests append synthetic predictions to."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = predlog.make_engine(url)
        predlog.create_tables(self.engine)
        self._seed = 0
        self._last_ts = 0.0
        self.ids: list[str] = []

    def predict(
        self, n: int, *, scenario: str = "none", ts: float | None = None, spacing: float = 1e-3
    ) -> list[str]:
        """Log `n` customers, `spacing` seconds apart from `ts` (default: about now,
        after the rows logged before)."""
        self._seed += 1
        frame = synthetic.generate_customers(n, seed=self._seed, scenario=scenario)
        rng = np.random.default_rng(self._seed)
        if ts is None:  # increasing across calls, so log order is time order
            ts = max(time.time() - 1.0, self._last_ts + 1e-3)
            self._last_ts = ts + (n - 1) * spacing
        rows = []
        for i, rec in enumerate(frame.to_dict("records")):
            row = {k: rec[k] for k in predlog.PREDICTION_COLUMNS if k in rec}
            row.update(
                id=str(uuid.uuid4()),
                ts=ts + i * spacing,
                model="churn-model",
                version="1",
                customer_id=rec["customerID"],
                score=float(rng.uniform()),
                predicted=0,
            )
            if row["TotalCharges"] is not None and np.isnan(row["TotalCharges"]):
                row["TotalCharges"] = None
            rows.append(row)
        predlog.log_predictions(self.engine, rows)
        ids = [r["id"] for r in rows]
        self.ids.extend(ids)
        return ids

    def label(self, ids: list[str], seed: int = 0) -> dict[str, int]:
        rng = np.random.default_rng(seed)
        labels = {pid: int(rng.integers(0, 2)) for pid in ids}
        for pid, actual in labels.items():
            predlog.record_feedback(self.engine, actual=actual, ts=time.time(), prediction_id=pid)
        return labels


def _setup(tmp_path: Path, url: str) -> tuple[MonitoringConfig, Log]:
    reference = tmp_path / "reference.parquet"
    synthetic.generate_customers(1500, seed=99).to_parquet(reference)
    config = parse_config(
        {
            "data": {
                "reference_path": str(reference),
                "current": {"url": url, "window_rows": 400, "window_hours": 1},
            },
            "data_drift_monitoring": {"update_seconds": 1, "min_window_rows": 100},
        }
    )
    return config, Log(url)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[MonitoringConfig, Log]:
    """A SQLite log."""
    return _setup(tmp_path, f"sqlite:///{tmp_path / 'predictions.db'}")


@pytest.fixture
def both_setup(tmp_path: Path, backend: Backend) -> Iterator[tuple[MonitoringConfig, Log]]:
    """A SQLite log, then a PostgreSQL one (the `backend` fixture)."""
    config, log = _setup(tmp_path, backend.url("predictions"))
    yield config, log
    log.engine.dispose()


def stream_job(config: MonitoringConfig) -> StreamJob:
    return StreamJob(config, ReferenceCache(config.data.reference_path), model=FixedModel())


def full_run(config: MonitoringConfig) -> tuple[pd.DataFrame, DatasetDrift]:
    """The full run's window and drift (what `DriftJob` computes), now."""
    features = config.features
    profile = drift.build_profile(
        load_reference(config.data.reference_path),
        numeric=features.numeric,
        categorical=features.categorical,
        psi_bins=config.data_drift_monitoring.psi_bins,
    )
    current = load_current(config.data.current, time.time())
    cfg = config.data_drift_monitoring
    result = assess(
        profile,
        current,
        rules=features.overrides,
        drift_threshold=cfg.drift_threshold,
        min_window_rows=cfg.min_window_rows,
    )
    return current, result


def assert_same_drift(got: DatasetDrift, want: DatasetDrift) -> None:
    """Equal to a full recomputation: counts exactly, statistics to 1e-12 relative."""
    assert got.n_current == want.n_current
    assert got.n_reference == want.n_reference
    assert got.score == pytest.approx(want.score, rel=1e-12)
    assert got.drifted == want.drifted
    for g, w in zip(got.features, want.features, strict=True):
        assert g.feature == w.feature
        assert (g.n_current, g.n_nan, g.drifted) == (w.n_current, w.n_nan, w.drifted), g.feature
        for attr in ("ks_statistic", "ks_pvalue", "psi", "wasserstein", "jensen_shannon"):
            a, b = getattr(g, attr), getattr(w, attr)
            if b is None or (isinstance(b, float) and np.isnan(b)):
                assert a is None or np.isnan(a), (g.feature, attr)
            else:
                assert a == pytest.approx(b, rel=1e-12, abs=1e-300), (g.feature, attr)


# ------------------------------------------------------------------------ the reader


def test_reader_returns_only_new_rows_and_labels(both_setup) -> None:
    config, log = both_setup
    source = config.data.current
    first = log.predict(50)
    start = read_window(log.engine, source, time.time())
    assert start.rows.ids == first
    assert (start.row_key, start.label_key) == (50, 0)
    monitored = {*config.features.numeric, *config.features.categorical}
    assert set(start.rows.features) == monitored | {SCORE}  # the full run's columns
    assert start.rows.features["tenure"].dtype.kind in "if"
    assert start.rows.features["Contract"].dtype == object

    nothing = read_since(log.engine, source, row_key=start.row_key, label_key=start.label_key)
    assert (len(nothing.rows), len(nothing.labels)) == (0, 0)
    assert (nothing.row_key, nothing.label_key) == (50, 0)

    second = log.predict(20)
    labels = log.label(first[:5] + second[:2])
    log.label(first[:1], seed=5)  # a second label of one prediction: read in order
    new = read_since(log.engine, source, row_key=start.row_key, label_key=start.label_key)
    assert new.rows.ids == second
    assert new.row_key == 70
    assert new.labels.prediction_ids == [*first[:5], *second[:2], first[0]]
    assert new.label_key == 8
    assert new.labels.actual[:7].tolist() == [float(labels[p]) for p in first[:5] + second[:2]]

    chunk = read_since(log.engine, source, row_key=start.row_key, label_key=8, limit=15)
    assert chunk.rows.ids == second[:15]
    assert chunk.row_key == 65


def test_reader_rebuild_is_the_full_runs_window(both_setup) -> None:
    config, log = both_setup
    log.predict(100, ts=time.time() - 2 * 3600)  # older than window_hours
    log.predict(500)  # more than window_rows
    current = load_current(config.data.current, time.time())
    read = read_window(log.engine, config.data.current, time.time())
    assert len(read.rows) == len(current) == 400
    assert read.rows.ids == log.ids[-400:]
    for name, values in read.rows.features.items():
        np.testing.assert_array_equal(values, current[name].to_numpy(), err_msg=name)
    np.testing.assert_array_equal(read.rows.scores, current["score"].to_numpy())


def test_a_push_between_the_rebuilds_two_key_reads_loses_no_label(both_setup) -> None:
    config, log = both_setup
    source = config.data.current
    now = time.time()
    log.predict(50, ts=now - 60)
    pushed: list[str] = []
    reader = predlog.make_engine(log.url)

    def push_once(*_: Any) -> None:
        """Right after the rebuild's first statement, a push commits rows older than the
        window's oldest (as POST /ingest may) together with their labels."""
        if not pushed:
            pushed.extend(log.predict(5, ts=now - 1800))
            log.label(pushed)

    sa.event.listen(reader, "after_cursor_execute", push_once)
    try:
        start = read_window(reader, source, now)
    finally:
        sa.event.remove(reader, "after_cursor_execute", push_once)
        reader.dispose()
    assert pushed
    later = read_since(log.engine, source, row_key=start.row_key, label_key=start.label_key)
    rows = start.rows.ids + later.rows.ids
    labelled = start.labels.prediction_ids + later.labels.prediction_ids
    assert set(pushed) <= set(rows)
    assert set(pushed) <= set(labelled)


# ------------------------------------------------------------------ the streaming job


def test_stream_job_follows_the_log_and_equals_the_full_run(both_setup) -> None:
    config, log = both_setup
    job = stream_job(config)
    snap = job.run()
    assert isinstance(snap, DriftSnapshot)
    assert snap.result.n_current == 0 and snap.result.score is None
    assert snap.multivariate is None

    log.predict(150)
    snap = job.run()
    assert_same_drift(snap.result, full_run(config)[1])
    assert snap.result.drifted is False

    log.predict(120, scenario="sudden")
    log.predict(300, scenario="sudden")  # evicts by count: the window keeps 400 rows
    snap = job.run()
    current, want = full_run(config)
    assert_same_drift(snap.result, want)
    assert snap.result.n_current == len(current) == 400
    assert snap.result.drifted is True
    assert job.window is not None and job.window.ids() == log.ids[-400:]
    assert job.rebuilds == 1  # one read of the whole window, then only new rows


def test_the_score_as_a_monitored_feature_equals_the_full_run(setup) -> None:
    config, log = setup
    reference = load_reference(config.data.reference_path)
    reference[SCORE] = np.random.default_rng(3).uniform(size=len(reference))
    reference.to_parquet(config.data.reference_path)
    numeric = (*config.features.numeric, SCORE)
    config = config.model_copy(
        update={"features": config.features.model_copy(update={"numeric": numeric})}
    )
    job = stream_job(config)
    log.predict(150)
    job.run()
    log.predict(30)
    snap = job.run()
    assert SCORE in [f.feature for f in snap.result.features]
    assert_same_drift(snap.result, full_run(config)[1])


def test_rows_of_equal_time_at_the_window_edge_are_kept_alike_by_every_path(
    both_setup,
) -> None:
    """The newest 400 rows cut through 300 rows of one ts (a pushed batch without
    times): the stream, the frame path and the database path keep the same rows, the
    later arrivals."""
    config, log = both_setup
    source = config.data.current
    now = time.time()
    tied = log.predict(300, ts=now - 60, spacing=0.0, scenario="sudden")
    newer = log.predict(200, ts=now - 30)
    job = stream_job(config)
    snap = job.run()
    kept = [*tied[-200:], *newer]
    assert job.window is not None and sorted(job.window.ids()) == sorted(kept)
    frame = load_current(source, time.time())
    assert len(frame) == 400
    assert_same_drift(snap.result, full_run(config)[1])
    window = read_window_columns(source, time.time(), numeric=config.features.numeric)
    assert window is not None
    for name, values in window.numeric.items():
        np.testing.assert_array_equal(values, frame[name].to_numpy(dtype=float), err_msg=name)


def test_labels_arrive_incrementally_and_before_their_rows_are_read(setup) -> None:
    config, log = setup
    job = stream_job(config)
    early = log.predict(200)
    job.run()
    labels = log.label(early[:80])
    late = log.predict(50)
    labels |= log.label(late[:30], seed=1)  # labelled before the job reads the rows
    labels |= log.label(early[:10], seed=2)  # relabelled: the newest label wins
    job.run()
    window = job.window
    assert window is not None
    ids = window.ids()
    scores = load_current(config.data.current, time.time())["score"].to_numpy()
    y = np.array([labels.get(pid, np.nan) for pid in ids], dtype=float)
    keep = np.isfinite(y)
    want = realized_metrics(y[keep], scores[keep], THRESHOLD)
    assert window.realized().values == pytest.approx(want.values, rel=1e-12)
    assert window.confusion.n == int(keep.sum()) == 110


def test_restart_rebuilds_the_same_window(both_setup) -> None:
    config, log = both_setup
    job = stream_job(config)
    for step in range(4):
        ids = log.predict(130, scenario="sudden" if step % 2 else "none")
        log.label(ids[:40], seed=step)
        job.run()
    before = job.window
    assert before is not None

    restarted = stream_job(config)  # a new process: the window is read from the log
    snap = restarted.run()
    after = restarted.window
    assert after is not None
    assert after.ids() == before.ids() == log.ids[-400:]
    assert after.confusion == before.confusion
    assert after.realized().values == pytest.approx(before.realized().values, rel=1e-12)
    assert_same_drift(snap.result, job.run().result)
    assert_same_drift(snap.result, full_run(config)[1])


def test_a_new_model_version_rebuilds_the_window(setup) -> None:
    config, log = setup
    model = FixedModel("1")
    job = StreamJob(config, ReferenceCache(config.data.reference_path), model=model)
    log.predict(120)
    job.run()
    job.run()
    assert job.rebuilds == 1
    model.ref = ModelRef(name="churn-model", version="2", run_id="r2")
    log.predict(10)
    assert job.run().result.n_current == 130
    assert job.rebuilds == 2


class UnresolvedModel(FixedModel):
    """A model whose alias no job has resolved yet; `refresh` resolves it (or fails
    while `down`)."""

    def __init__(self) -> None:
        super().__init__(UNRESOLVED)
        self.refreshes = 0
        self.down = False

    def refresh(self) -> bool:
        self.refreshes += 1
        if self.down:
            raise ConnectionError("registry down")
        changed = self.ref.version == UNRESOLVED
        self.ref = ModelRef(name="churn-model", version="1", run_id="r")
        return changed


def test_the_first_run_resolves_the_model_so_the_window_is_built_once(setup) -> None:
    config, log = setup
    model = UnresolvedModel()
    job = StreamJob(config, ReferenceCache(config.data.reference_path), model=model)
    log.predict(120)
    assert job.run().model.version == "1"
    log.predict(10)
    job.run()
    assert (model.refreshes, job.rebuilds) == (1, 1)  # later runs leave it to the full jobs


def test_with_the_registry_down_the_window_is_built_and_rebuilt_once_it_answers(setup) -> None:
    config, log = setup
    model = UnresolvedModel()
    model.down = True
    job = StreamJob(config, ReferenceCache(config.data.reference_path), model=model)
    log.predict(120)
    assert job.run().model.version == UNRESOLVED
    model.down = False
    assert job.run().model.version == "1"
    assert (model.refreshes, job.rebuilds) == (2, 2)


def test_a_failed_update_is_not_served_and_the_next_run_rebuilds(setup) -> None:
    config, log = setup
    job = stream_job(config)
    log.predict(120)
    job.run()
    with log.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE predictions RENAME TO gone")
    with pytest.raises(Exception, match="predictions"):
        job.run()
    assert job.window is None
    with log.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE gone RENAME TO predictions")
    log.predict(5)
    assert job.run().result.n_current == 125
    assert job.rebuilds == 2


# ------------------------------------------------------------- config and wiring


def test_update_seconds_is_off_by_default_and_validated() -> None:
    assert parse_config({}).data_drift_monitoring.update_seconds is None
    assert parse_config({"data_drift_monitoring": {"update_seconds": 2.5}})
    for bad in (0, -1, "soon"):
        with pytest.raises(ConfigError, match=r"data_drift_monitoring\.update_seconds"):
            parse_config({"data_drift_monitoring": {"update_seconds": bad}})


def test_wiring_adds_the_stream_job_only_when_streaming(
    setup, caplog: pytest.LogCaptureFixture
) -> None:
    config, _log = setup
    off = {"optuna": {"enabled": False}, "history": {"enabled": False}}
    raw: dict[str, Any] = {**config.model_dump(mode="json"), **off}
    monitor = build_monitor(parse_config(raw))
    assert [job.name for job in monitor.streams] == ["stream"]
    assert monitor.streams[0].interval_seconds == 1.0
    assert "stream" not in [job.name for job in monitor.jobs]  # `run` (one pass) skips it
    assert monitor.builders is STREAMING_BUILDERS

    raw["data_drift_monitoring"]["update_seconds"] = None
    assert build_monitor(parse_config(raw)).streams == []

    raw["data_drift_monitoring"]["update_seconds"] = 1
    raw["data"]["current"] = {"kind": "file", "path": "x.csv"}
    assert not streaming(parse_config(raw))
    assert "update_seconds is ignored" in caplog.text


def test_streaming_gauges_come_from_the_stream_snapshot_once(setup) -> None:
    """With streaming on, one family per name: the stream's univariate drift, the full
    run's multivariate drift."""
    config, log = setup
    log.predict(150, scenario="sudden")
    stream = stream_job(config).run()
    full = DriftSnapshot(
        model=stream.model,
        result=full_run(config)[1],
        critical_threshold=0.3,
        min_window_rows=100,
        taken_at=0.0,
        multivariate=None,
    )
    store = SnapshotStore()
    store.publish("drift", full)
    store.publish("stream", stream)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(store, builders=STREAMING_BUILDERS))
    text = generate_latest(registry).decode()
    names = [f.name for f in text_string_to_metric_families(text)]
    assert len(names) == len(set(names))
    assert "churn_data_drift_score" in names and "churn_feature_drift_psi" in names
    score = next(
        s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "churn_data_drift_score"
    )
    assert score == stream.result.score
