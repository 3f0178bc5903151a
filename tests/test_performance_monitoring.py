"""The performance job end to end: a trained champion, a real prediction log, a real scrape.

Predictions are written to the log the way the API writes them (scores of the champion,
feedback later), then the exporter's jobs run and `/metrics` is scraped over HTTP.

The tests share one trained store, which none of them changes: the test that promotes a
new champion works on its own copy, so the tests pass in any order.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from sklearn import metrics as skm

from exporter.config import MonitoringConfig, parse_config
from exporter.data import predlog, synthetic
from exporter.domain import schema
from exporter.model.registry import LoadedModel, load_champion
from exporter.monitor.httpserver import ExporterServer
from exporter.monitor.server import make_app
from exporter.monitor.wiring import build_monitor
from exporter.training.pipeline import train

from .support import copy_store, http_get

pytestmark = pytest.mark.slow
DAY = 86400.0


def make_config(tmp: Path, **performance: object) -> MonitoringConfig:
    return parse_config(
        {
            "model": {"tracking_uri": f"sqlite:///{tmp}/mlruns/mlflow.db"},
            "data": {
                "reference_path": str(tmp / "reference.parquet"),
                "current": {"url": f"sqlite:///{tmp}/predictions.db", "window_rows": 2000},
            },
            "optuna": {"storage": f"sqlite:///{tmp}/optuna.db"},
            "reports": {"dir": str(tmp / "reports")},
            "history": {"url": f"sqlite:///{tmp}/history.db"},
            "performance_monitoring": {"min_labeled_rows": 50, **performance},
        }
    )


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LoadedModel]:
    """A champion trained on 6,000 synthetic customers into a temp MLflow store."""
    tmp = tmp_path_factory.mktemp("perf")
    data = tmp / "train.csv"
    synthetic.generate_customers(6000, seed=3).to_csv(data, index=False)
    config = make_config(tmp)
    train(config, data=data, trials=2, seed=1, progress=False)
    return tmp, load_champion(config)


def with_fresh_log(store: Path, tmp_path: Path) -> MonitoringConfig:
    """The config of the store in `store` with a fresh prediction log (tables created),
    reports and history in `tmp_path`."""
    base = make_config(store)
    current = base.data.current.model_copy(update={"url": f"sqlite:///{tmp_path}/pred.db"})
    config = base.model_copy(
        update={
            "data": base.data.model_copy(update={"current": current}),
            "reports": base.reports.model_copy(update={"dir": str(tmp_path / "reports")}),
            "history": base.history.model_copy(update={"url": f"sqlite:///{tmp_path}/history.db"}),
        }
    )
    engine = predlog.make_engine(current.url)
    predlog.create_tables(engine)
    engine.dispose()
    return config


@pytest.fixture
def log_db(champion: tuple[Path, LoadedModel], tmp_path: Path) -> Iterator[MonitoringConfig]:
    """A config whose prediction log is a fresh SQLite file of this test."""
    tmp, _ = champion
    yield with_fresh_log(tmp, tmp_path)


def log_window(
    config: MonitoringConfig,
    model: LoadedModel,
    frame: pd.DataFrame,
    *,
    ts: float,
    labels: bool = True,
) -> list[str]:
    """Log `frame`'s customers as predictions at `ts` (and their outcome as feedback)."""
    scores = model.score(frame)
    ids = [str(uuid.uuid4()) for _ in range(len(frame))]
    rows = []
    for i, (pid, record) in enumerate(zip(ids, frame.to_dict("records"), strict=True)):
        row = {name: record[name] for name in schema.FEATURES}
        if row["TotalCharges"] != row["TotalCharges"]:
            row["TotalCharges"] = None
        row.update(
            id=pid,
            ts=ts,
            model=model.ref.name,
            version=model.ref.version,
            customer_id=record["customerID"],
            score=float(scores[i]),
            predicted=int(scores[i] >= model.threshold),
        )
        rows.append(row)
    engine = predlog.make_engine(config.data.current.url)
    try:
        predlog.log_predictions(engine, rows)
        if labels:
            for pid, outcome in zip(ids, frame["Churn"], strict=True):
                predlog.record_feedback(
                    engine, prediction_id=pid, actual=int(outcome == "Yes"), ts=ts + 60
                )
    finally:
        engine.dispose()
    return ids


def scrape_once(config: MonitoringConfig) -> dict[tuple[str, tuple], float]:
    """Run every job once and scrape the exporter's HTTP endpoint."""
    monitor = build_monitor(config)
    outcome = monitor.run_once()
    assert outcome["performance"], monitor.store.health()["performance"].last_error
    server = ExporterServer(make_app(monitor.registry, monitor.store), "127.0.0.1", 0)
    server.start()
    try:
        status, body = http_get(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
    assert status == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def gauge(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted({"model": "churn-model", **labels}.items()))))


def joined_rows(config: MonitoringConfig) -> pd.DataFrame:
    engine = predlog.make_engine(config.data.current.url)
    with engine.connect() as conn:
        frame = pd.read_sql(predlog.labelled_query(), conn)
    engine.dispose()
    return frame


def test_realized_metrics_equal_sklearn_through_a_real_scrape(champion, log_db) -> None:
    _, model = champion
    now = time.time()
    frame = synthetic.generate_customers(600, seed=21, id_offset=10_000)
    log_window(log_db, model, frame.iloc[:400], ts=now - 3600)
    log_window(log_db, model, frame.iloc[400:], ts=now - 1800, labels=False)

    samples = scrape_once(log_db)

    rows = joined_rows(log_db)
    assert len(rows) == 400
    y, s = rows["actual"].to_numpy(), rows["score"].to_numpy()
    pred = (s >= model.threshold).astype(int)
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "precision": skm.precision_score(y, pred),
        "recall": skm.recall_score(y, pred),
        "f1": skm.f1_score(y, pred),
        "roc_auc": skm.roc_auc_score(y, s),
    }
    for metric, value in expected.items():
        got = gauge(samples, "churn_model_performance", metric=metric)
        assert got == pytest.approx(value, abs=1e-12), metric
        baseline = gauge(samples, "churn_model_performance_baseline", metric=metric)
        assert baseline == pytest.approx(model.baseline[metric])
        assert gauge(samples, "churn_model_performance_threshold_min", metric=metric) > 0
    assert gauge(samples, "churn_model_labeled_rows") == 400
    assert gauge(samples, "churn_model_degradation_threshold") == 0.05
    # prediction drift and business view on the whole window (600 rows)
    all_scores = model.score(frame)
    assert gauge(samples, "churn_prediction_positive_ratio") == pytest.approx(
        float(np.mean(all_scores >= model.threshold))
    )
    assert gauge(samples, "churn_revenue_at_risk") == pytest.approx(
        float(np.dot(frame["MonthlyCharges"], all_scores)), rel=1e-9
    )
    assert gauge(samples, "churn_prediction_drift_psi") is not None
    info = [k for k in samples if k[0] == "churn_model_info"]
    assert info == [
        (
            "churn_model_info",
            (("model", "churn-model"), ("run_id", model.ref.run_id), ("version", "1")),
        )
    ]


def test_runs_appear_in_the_history_with_the_exported_values(champion, log_db) -> None:
    from exporter.data.history import open_history, query

    _, model = champion
    frame = synthetic.generate_customers(800, seed=22, scenario="sudden", id_offset=20_000)
    log_window(log_db, model, frame, ts=time.time() - 60)
    samples = scrape_once(log_db)
    engine = open_history(log_db.history.url)
    drift_rows = query(engine, "drift")
    perf_rows = query(engine, "performance")
    engine.dispose()
    assert len(drift_rows) == 1
    row = drift_rows[0]
    assert row["score"] == gauge(samples, "churn_data_drift_score")
    assert row["n_current"] == gauge(samples, "churn_window_rows")
    drifted = sorted(
        dict(labels)["feature"]
        for (name, labels), value in samples.items()
        if name == "churn_feature_drifted" and value == 1.0
    )
    assert drifted and sorted(json.loads(row["drifted_columns"])) == drifted
    assert len(perf_rows) == 5
    for r in perf_rows:
        assert r["realized"] == gauge(samples, "churn_model_performance", metric=r["metric"])
        assert r["estimated"] == gauge(
            samples, "churn_model_performance_estimated", metric=r["metric"]
        )
        assert r["labeled_rows"] == gauge(samples, "churn_model_labeled_rows")
        assert r["version"] == model.ref.version


def test_estimate_tracks_realized_under_covariate_shift_but_not_concept_drift(champion) -> None:
    """Windows of 2,000 labelled rows from the simulator's generator."""
    from exporter.monitor.performance_job import PerformanceJob
    from exporter.monitor.reference_job import ReferenceCache
    from exporter.stats.performance import estimated_metrics, realized_metrics

    tmp, model = champion
    config = make_config(tmp)
    job = PerformanceJob(config, ReferenceCache(config.data.reference_path), model=None)  # type: ignore[arg-type]
    calibrator = job.score_reference(model.ref.version, model.threshold).calibrator
    assert calibrator is not None
    for scenario, seed in (("sudden", 31), ("gradual", 32), ("none", 33)):
        frame = synthetic.generate_customers(2000, seed=seed, scenario=scenario)
        s = model.score(frame)
        y = (frame["Churn"] == "Yes").to_numpy(int)
        est = estimated_metrics(s, model.threshold, calibrator).values
        real = realized_metrics(y, s, model.threshold).values
        for metric in ("accuracy", "roc_auc"):
            assert abs(est[metric] - real[metric]) <= 0.03, (scenario, metric, est, real)

    frame = synthetic.generate_customers(2000, seed=34, scenario="concept")
    s = model.score(frame)
    y = (frame["Churn"] == "Yes").to_numpy(int)
    est = estimated_metrics(s, model.threshold, calibrator).values
    real = realized_metrics(y, s, model.threshold).values
    assert real["accuracy"] < est["accuracy"] - 0.05
    assert real["roc_auc"] < est["roc_auc"] - 0.05


def test_concept_drift_degradation_is_visible_as_series(champion, log_db) -> None:
    _, model = champion
    frame = synthetic.generate_customers(2000, seed=41, scenario="concept", id_offset=50_000)
    log_window(log_db, model, frame, ts=time.time() - 600)
    samples = scrape_once(log_db)
    baseline = gauge(samples, "churn_model_performance_baseline", metric="accuracy")
    realized = gauge(samples, "churn_model_performance", metric="accuracy")
    threshold = gauge(samples, "churn_model_degradation_threshold")
    assert baseline - realized > threshold
    estimated = gauge(samples, "churn_model_performance_estimated", metric="accuracy")
    assert abs(estimated - baseline) < threshold  # the estimate cannot see concept drift


def test_no_labels_yet(champion, log_db) -> None:
    _, model = champion
    log_window(
        log_db, model, synthetic.generate_customers(400, seed=51), ts=time.time(), labels=False
    )
    samples = scrape_once(log_db)
    assert gauge(samples, "churn_model_labeled_rows") == 0
    assert not [k for k in samples if k[0] == "churn_model_performance"]
    assert gauge(samples, "churn_model_performance_estimated", metric="accuracy") is not None


def test_fewer_than_the_minimum_labelled_rows(champion, log_db) -> None:
    _, model = champion
    frame = synthetic.generate_customers(400, seed=52)
    log_window(log_db, model, frame.iloc[:30], ts=time.time())
    log_window(log_db, model, frame.iloc[30:], ts=time.time(), labels=False)
    samples = scrape_once(log_db)
    assert gauge(samples, "churn_model_labeled_rows") == 30
    assert not [k for k in samples if k[0] == "churn_model_performance"]


def test_one_class_leaves_roc_auc_out(champion, log_db) -> None:
    _, model = champion
    frame = synthetic.generate_customers(1500, seed=53)
    stayers = frame[frame["Churn"] == "No"].iloc[:300]
    log_window(log_db, model, stayers, ts=time.time())
    samples = scrape_once(log_db)
    assert gauge(samples, "churn_model_performance", metric="accuracy") is not None
    assert gauge(samples, "churn_model_performance", metric="roc_auc") is None
    assert gauge(samples, "churn_model_performance", metric="recall") is None


def test_labels_arriving_after_the_window_moved_do_not_count(champion, log_db) -> None:
    _, model = champion
    frame = synthetic.generate_customers(500, seed=54)
    now = time.time()
    old_ids = log_window(log_db, model, frame.iloc[:200], ts=now - 40 * DAY, labels=False)
    log_window(log_db, model, frame.iloc[200:], ts=now - DAY)
    engine = predlog.make_engine(log_db.data.current.url)
    for pid in old_ids:  # labels arrive today for predictions of 40 days ago
        predlog.record_feedback(engine, prediction_id=pid, actual=1, ts=now)
    with engine.connect() as conn:
        labelled = conn.execute(sa.select(sa.func.count()).select_from(predlog.feedback)).scalar()
    engine.dispose()
    assert labelled == 500
    samples = scrape_once(log_db)
    assert gauge(samples, "churn_model_labeled_rows") == 300  # the 30-day window by prediction time


def test_optuna_families_equal_what_optuna_reports(champion, log_db) -> None:
    import optuna

    tmp, _ = champion
    log_window(log_db, champion[1], synthetic.generate_customers(300, seed=61), ts=time.time())
    samples = scrape_once(log_db)
    storage = f"sqlite:///{tmp}/optuna.db"
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        labels = {"study": study.study_name}
        key = ("churn_optuna_best_value", tuple(sorted(labels.items())))
        assert samples[key] == pytest.approx(study.best_value, abs=0)
        trials = study.get_trials(deepcopy=False)
        for state in optuna.trial.TrialState:
            want = sum(t.state == state for t in trials)
            got = samples[("churn_optuna_trials", (("state", state.name), *labels.items()))]
            assert got == want, state
        for param, value in study.best_params.items():
            key = ("churn_optuna_best_param", (("param", param), *labels.items()))
            if isinstance(value, int | float) and not isinstance(value, bool):
                assert samples[key] == pytest.approx(float(value), abs=0)
            else:
                assert key not in samples
        newest = max(t.datetime_complete for t in trials if t.datetime_complete)
        key = ("churn_optuna_last_trial_timestamp_seconds", tuple(labels.items()))
        assert samples[key] == pytest.approx(newest.timestamp(), abs=1e-3)


def test_a_new_champion_is_reported_after_the_next_run(champion, tmp_path: Path) -> None:
    """Moves the alias, in a copy of the shared store."""
    shared, model = champion
    tmp = copy_store(shared, tmp_path / "store")
    log_db = with_fresh_log(tmp, tmp_path)
    log_window(log_db, model, synthetic.generate_customers(300, seed=71), ts=time.time())
    monitor = build_monitor(log_db)
    monitor.run_once()
    assert monitor.model().version == "1"
    data = tmp / "train2.csv"
    synthetic.generate_customers(2000, seed=72).to_csv(data, index=False)
    result = train(make_config(tmp), data=data, trials=1, seed=2, progress=False)
    assert result.version == "2"
    assert monitor.model().version == "1"  # nothing changes before the next run
    outcome = monitor.run_once()
    # comparison: no challenger is registered, which is a successful run of its own
    assert outcome == {"drift": True, "performance": True, "optuna": True, "comparison": True}
    assert monitor.model() == load_champion(log_db).ref
    assert monitor.model().version == "2"
    perf = monitor.store.snapshots()["performance"]
    assert perf.model.version == "2"
    assert perf.baseline == pytest.approx(result.metrics)
    # the shared store still serves version 1 to the module's other tests
    assert load_champion(make_config(shared)).ref.version == "1"
