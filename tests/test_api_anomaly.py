"""Unusual inputs in the prediction API (issue 17): each prediction's anomaly score and
unusual flag against the reference snapshot, in the answer and in the log; no
reference, a disabled check or a failing computation give nulls, never an error; a
log created before the columns existed keeps working.

Real components throughout: the in-process app (FastAPI's TestClient) over a small
real model, a real reference file, and the statistics package computing the expected
scores on its own."""

from __future__ import annotations

import dataclasses
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from exporter.api import create_app  # noqa: E402
from exporter.api.anomaly import AnomalyModel  # noqa: E402
from exporter.api.champion import _check_sample  # noqa: E402
from exporter.api.models import Customer  # noqa: E402
from exporter.api.scoring import feature_columns  # noqa: E402
from exporter.config import MonitoringConfig  # noqa: E402
from exporter.data import predlog, sources, synthetic  # noqa: E402
from exporter.data.reference_key import file_key  # noqa: E402
from exporter.domain import customers as examples  # noqa: E402
from exporter.domain import schema  # noqa: E402
from exporter.model import modeling  # noqa: E402
from exporter.stats.multivariate import MultivariateProfile, fit_multivariate  # noqa: E402

from .api_fixtures import StandInRegistry, customers, fetch_rows, make_config  # noqa: E402
from .support import wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]

#: A long-standing customer who pays little yet has been charged a lot: each value is
#: within the schema, their combination is unlike any customer of the reference.
EXTREME: dict[str, Any] = {
    **examples.TYPICAL,
    "customerID": "9999-XTREM",
    "tenure": 72,
    "MonthlyCharges": 20.0,
    "TotalCharges": 8000.0,
}
TYPICAL: dict[str, Any] = {**examples.TYPICAL, "customerID": "0000-TYPIC"}
FIELDS = ("anomaly_score", "unusual", "anomaly_cutoff")


def _write_reference(path: Path, n: int, seed: int) -> None:
    """A reference snapshot as training writes one (Telco columns), replaced atomically."""
    frame = synthetic.generate_customers(n, seed=seed)
    partial = path.with_name(path.name + ".partial")
    frame.to_parquet(partial, index=False)
    os.replace(partial, path)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("anomaly-reference") / "reference.parquet"
    _write_reference(path, 1500, seed=21)
    return path


def _profile(config: MonitoringConfig) -> MultivariateProfile:
    """The profile the API should use, fitted here by the statistics package itself."""
    settings = config.data_drift_monitoring.multivariate
    return fit_multivariate(
        sources.load_reference(config.data.reference_path),
        config.features.numeric,
        config.features.categorical,
        variance_share=settings.variance_share,
        unusual_rate=settings.unusual_rate,
    )


def _app(config: MonitoringConfig, stand_in: StandInRegistry) -> TestClient:
    app = create_app(config, model_loader=stand_in.load, model_watch=stand_in.watch)
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def scored_config(tmp_path: Path, reference: Path) -> MonitoringConfig:
    return make_config(tmp_path, reference=reference)


def _rows(config: MonitoringConfig) -> dict[str, dict[str, Any]]:
    rows = fetch_rows(config.data.current.url, sa.select(predlog.predictions))
    return {r["id"]: r for r in rows}


# ------------------------------------------------------------------- the answers


def test_predict_gives_the_score_and_flags_the_extreme_customer_only(
    scored_config: MonitoringConfig, stand_in: StandInRegistry
) -> None:
    expected = _profile(scored_config).row_scores(pd.DataFrame([TYPICAL, EXTREME]))
    assert expected.unusual.tolist() == [False, True]  # the premise of the test
    with _app(scored_config, stand_in) as client:
        typical = client.post("/predict", json=TYPICAL)
        extreme = client.post("/predict", json=EXTREME)
    assert typical.status_code == 200 and extreme.status_code == 200, extreme.text
    cutoff = _profile(scored_config).unusual_cutoff
    for answer, score, unusual in zip(
        (typical.json(), extreme.json()), expected.score, expected.unusual, strict=True
    ):
        assert answer["anomaly_score"] == pytest.approx(score, rel=1e-9)
        assert answer["unusual"] is bool(unusual)
        assert answer["anomaly_cutoff"] == pytest.approx(cutoff, rel=1e-12)
    assert extreme.json()["anomaly_score"] > cutoff > typical.json()["anomaly_score"]

    rows = _rows(scored_config)
    for answer in (typical.json(), extreme.json()):
        row = rows[answer["prediction_id"]]
        assert row["anomaly_score"] == pytest.approx(answer["anomaly_score"], rel=1e-12)
        assert row["unusual"] is answer["unusual"]


def test_batch_scores_each_customer_logged_or_not(
    scored_config: MonitoringConfig, stand_in: StandInRegistry
) -> None:
    batch = [*customers(18, seed=31), EXTREME, TYPICAL]
    batch[3]["TotalCharges"] = None  # a new customer: a blank counts as the mean
    batch[3]["tenure"] = 0
    expected = _profile(scored_config).row_scores(pd.DataFrame(batch))
    with _app(scored_config, stand_in) as client:
        logged = client.post("/predict/batch", json={"customers": batch})
        unlogged = client.post("/predict/batch", params={"log": "false"}, json={"customers": batch})
    for response in (logged, unlogged):
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        scores = [p["anomaly_score"] for p in predictions]
        assert scores == pytest.approx(expected.score.tolist(), rel=1e-9)
        assert [p["unusual"] for p in predictions] == expected.unusual.tolist()
    assert logged.json()["predictions"][-2]["unusual"] is True
    rows = _rows(scored_config)
    assert len(rows) == len(batch)
    for p in logged.json()["predictions"]:
        assert rows[p["prediction_id"]]["anomaly_score"] == pytest.approx(p["anomaly_score"])
        assert rows[p["prediction_id"]]["unusual"] is p["unusual"]


def test_openapi_documents_the_fields(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    prediction = spec["components"]["schemas"]["Prediction"]["properties"]
    for field in FIELDS:
        assert field in prediction, field
        assert "description" in prediction[field], field
        kinds = {option.get("type") for option in prediction[field]["anyOf"]}
        assert "null" in kinds, field
    assert "unlike the customers the model was trained on" in prediction["unusual"]["description"]


# --------------------------------------------------------------- nulls, not errors


def test_no_reference_gives_nulls_and_200s(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="churn_monitor.api")
    holder = client.app.state.holder  # type: ignore[attr-defined]
    for _ in range(3):
        holder.poll()  # the background poll runs too: each checks the reference
    single = client.post("/predict", json=EXTREME)
    batch = client.post("/predict/batch", json={"customers": customers(3)})
    assert single.status_code == 200 and batch.status_code == 200
    for answer in (single.json(), *batch.json()["predictions"]):
        assert all(answer[field] is None for field in FIELDS), answer
    row = _rows(client.app.state.config)[single.json()["prediction_id"]]  # type: ignore[attr-defined]
    assert row["anomaly_score"] is None and row["unusual"] is None
    # The fixture's app logged the missing reference when it loaded the model (before
    # caplog was set here); polling the same missing file says nothing more.
    assert not [r for r in caplog.records if "no anomaly score" in r.getMessage()]


def test_missing_reference_is_logged_once(
    tmp_path: Path, stand_in: StandInRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="churn_monitor.api")
    config = make_config(tmp_path)
    with _app(config, stand_in) as client:
        for _ in range(3):
            client.app.state.holder.poll()  # type: ignore[attr-defined]
        assert client.post("/predict", json=TYPICAL).status_code == 200
    said = [r for r in caplog.records if "no anomaly score" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "no-reference.parquet" in said[0].getMessage()


def test_disabled_check_gives_nulls(
    scored_config: MonitoringConfig, stand_in: StandInRegistry
) -> None:
    drift = scored_config.data_drift_monitoring
    off = drift.multivariate.model_copy(update={"enabled": False})
    config = scored_config.model_copy(
        update={"data_drift_monitoring": drift.model_copy(update={"multivariate": off})}
    )
    with _app(config, stand_in) as client:
        answer = client.post("/predict", json=EXTREME)
    assert answer.status_code == 200
    assert all(answer.json()[field] is None for field in FIELDS)


def test_unreadable_reference_gives_nulls(tmp_path: Path, stand_in: StandInRegistry) -> None:
    broken = tmp_path / "reference.parquet"
    broken.write_bytes(b"not a parquet file")
    with _app(make_config(tmp_path, reference=broken), stand_in) as client:
        answer = client.post("/predict", json=EXTREME)
    assert answer.status_code == 200
    assert all(answer.json()[field] is None for field in FIELDS)


def test_a_failing_computation_gives_nulls_and_the_prediction(
    scored_config: MonitoringConfig, stand_in: StandInRegistry
) -> None:
    class Failing:
        cutoff = 1.0

        def scores(self, columns: Any, n: int) -> Any:
            raise FloatingPointError("boom")

    with _app(scored_config, stand_in) as client:
        holder = client.app.state.holder  # type: ignore[attr-defined]
        holder.current = dataclasses.replace(holder.current, anomaly=Failing())
        answer = client.post("/predict", json=EXTREME)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert 0.0 <= body["churn_probability"] <= 1.0
    assert all(body[field] is None for field in FIELDS)


# ----------------------------------------------------------- following the file


def test_profile_is_refitted_only_when_the_reference_changes(
    tmp_path: Path, stand_in: StandInRegistry
) -> None:
    path = tmp_path / "reference.parquet"
    config = make_config(tmp_path, reference=path)
    with _app(config, stand_in) as client:
        holder = client.app.state.holder  # type: ignore[attr-defined]
        assert client.post("/predict", json=EXTREME).json()["anomaly_score"] is None

        # The file appears (a promotion replaces it after moving the alias): the next
        # poll fits it, without a model load.
        loads = stand_in.loads
        _write_reference(path, 1200, seed=41)
        wait_until(
            lambda: client.post("/predict", json=EXTREME).json()["unusual"] is True,
            30,
            "the API to score against the new reference",
        )
        assert stand_in.loads == loads
        first = holder.current.anomaly
        assert first.key == file_key(path)
        holder.poll()
        holder.poll()
        assert holder.current.anomaly is first  # unchanged file: no refit

        _write_reference(path, 1300, seed=42)
        wait_until(lambda: holder.current.anomaly is not first, 30, "the refit")
        second = holder.current.anomaly
        assert second.profile.n_rows == 1300
        expected = _profile(config).row_scores(pd.DataFrame([TYPICAL]))
        answer = client.post("/predict", json=TYPICAL).json()
        assert answer["anomaly_score"] == pytest.approx(expected.score[0], rel=1e-9)

        # A new champion keeps the profile of the unchanged file.
        stand_in.promote("2")
        wait_until(lambda: holder.current.ref.version == "2", 30, "version 2")
        assert holder.current.anomaly is second


# ---------------------------------------------------------- the direct encoding


@pytest.mark.parametrize("n", [1, 7, 48, 49, 300])
def test_direct_encoding_equals_the_profiles_encoder(reference: Path, n: int) -> None:
    raw = synthetic.generate_customers(n, seed=50 + n, scenario="new_payment_method")
    raw.loc[: max(0, n // 10), "TotalCharges"] = float("nan")
    frame = modeling.prepare_features(raw)
    profile = fit_multivariate(
        sources.load_reference(reference), schema.NUMERIC_FEATURES, schema.CATEGORICAL_FEATURES
    )
    model = AnomalyModel.build(file_key(reference), profile, _check_sample())
    assert model.direct
    expected = profile.encoder.encode(frame)
    as_lists = {name: frame[name].tolist() for name in schema.FEATURES}
    np.testing.assert_array_equal(model.encode(as_lists, n), expected)
    known = frame[frame["PaymentMethod"].isin(schema.CATEGORIES["PaymentMethod"])]
    if len(known):  # the API's own columns (only known categories pass its validation)
        bodies = known.astype(object).where(known.notna(), None).to_dict("records")
        api_columns = feature_columns([Customer(**b) for b in bodies])
        np.testing.assert_array_equal(
            model.encode(api_columns, len(known)), profile.encoder.encode(known)
        )
    scores, unusual = model.scores(as_lists, n)
    want = profile.row_scores(frame)
    assert scores == pytest.approx(want.score.tolist(), rel=1e-12, abs=1e-12)
    assert unusual == want.unusual.tolist()


# ------------------------------------------------------------- the older log


#: The `predictions` table as the previous version created it (before the anomaly
#: columns), with its indexes and the feedback table.
OLD_SCHEMA = """
CREATE TABLE predictions (
    id VARCHAR(36) NOT NULL, ts FLOAT NOT NULL, model VARCHAR(200) NOT NULL,
    version VARCHAR(50) NOT NULL, customer_id VARCHAR(100), gender VARCHAR(50) NOT NULL,
    "SeniorCitizen" INTEGER NOT NULL, "Partner" VARCHAR(50) NOT NULL,
    "Dependents" VARCHAR(50) NOT NULL, tenure INTEGER NOT NULL,
    "PhoneService" VARCHAR(50) NOT NULL, "MultipleLines" VARCHAR(50) NOT NULL,
    "InternetService" VARCHAR(50) NOT NULL, "OnlineSecurity" VARCHAR(50) NOT NULL,
    "OnlineBackup" VARCHAR(50) NOT NULL, "DeviceProtection" VARCHAR(50) NOT NULL,
    "TechSupport" VARCHAR(50) NOT NULL, "StreamingTV" VARCHAR(50) NOT NULL,
    "StreamingMovies" VARCHAR(50) NOT NULL, "Contract" VARCHAR(50) NOT NULL,
    "PaperlessBilling" VARCHAR(50) NOT NULL, "PaymentMethod" VARCHAR(50) NOT NULL,
    "MonthlyCharges" FLOAT NOT NULL, "TotalCharges" FLOAT, score FLOAT NOT NULL,
    predicted INTEGER NOT NULL, PRIMARY KEY (id)
);
CREATE INDEX ix_predictions_ts ON predictions (ts);
CREATE INDEX ix_predictions_customer_id ON predictions (customer_id);
CREATE TABLE feedback (
    id INTEGER NOT NULL, prediction_id VARCHAR(36) NOT NULL, ts FLOAT NOT NULL,
    actual INTEGER NOT NULL, PRIMARY KEY (id),
    FOREIGN KEY(prediction_id) REFERENCES predictions (id)
);
CREATE INDEX ix_feedback_ts ON feedback (ts);
CREATE INDEX ix_feedback_prediction_id ON feedback (prediction_id);
"""


def _old_log(url: str, ts: float) -> str:
    """A SQLite log with the old schema and one labelled prediction; its id."""
    database = sa.engine.make_url(url).database
    assert database is not None
    old = sqlite3.connect(database)
    try:
        old.executescript(OLD_SCHEMA)
        values = [TYPICAL[name] for name in schema.FEATURES]
        marks = ", ".join("?" * (7 + len(values)))
        old.execute(
            f"INSERT INTO predictions VALUES ({marks})",
            ["old-prediction", ts, "churn-model", "1", "1234-OLDCU", *values, 0.3, 0],
        )
        old.execute(
            "INSERT INTO feedback (prediction_id, ts, actual) VALUES (?, ?, ?)",
            ("old-prediction", ts + 1, 1),
        )
        old.commit()
    finally:
        old.close()
    return "old-prediction"


def _columns(url: str) -> list[str]:
    engine = sa.create_engine(url)
    try:
        return [c["name"] for c in sa.inspect(engine).get_columns("predictions")]
    finally:
        engine.dispose()


def test_a_log_of_the_previous_version_gets_the_columns_and_keeps_working(
    scored_config: MonitoringConfig, stand_in: StandInRegistry
) -> None:
    url = scored_config.data.current.url
    now = time.time()
    old_id = _old_log(url, now - 60)
    assert "anomaly_score" not in _columns(url)

    with _app(scored_config, stand_in) as client:
        answer = client.post("/predict", json=EXTREME).json()
        assert answer["unusual"] is True
        labelled = client.post(
            "/feedback", json={"prediction_id": answer["prediction_id"], "actual": 0}
        )
        assert labelled.status_code == 201
    assert _columns(url)[-4:] == list(predlog.ADDED_COLUMNS)

    rows = _rows(scored_config)
    assert rows[old_id]["anomaly_score"] is None and rows[old_id]["unusual"] is None
    assert rows[old_id]["score"] == pytest.approx(0.3)
    new = rows[answer["prediction_id"]]
    assert new["unusual"] is True
    assert new["anomaly_score"] == pytest.approx(answer["anomaly_score"])

    # Idempotent: a second start (and the guard's check) adds nothing.
    engine = predlog.make_engine(url)
    try:
        assert predlog.create_tables(engine) == []
    finally:
        engine.dispose()

    # Every reader of the log: the labelled view, the drift window, the labelled window.
    labelled_rows = fetch_rows(url, predlog.labelled_query())
    assert {r["id"]: r["actual"] for r in labelled_rows} == {old_id: 1, answer["prediction_id"]: 0}
    current = sources.load_current(scored_config.data.current, now + 60)
    assert len(current) == 2 and "anomaly_score" not in current.columns
    assert current[schema.ID_COLUMN].tolist() == ["1234-OLDCU", EXTREME["customerID"]]
    window = sources.load_labelled(scored_config.data.current, now + 60, 1.0)
    assert sorted(window["actual"].tolist()) == [0, 1]


def test_rows_without_the_new_columns_are_logged_with_nulls(tmp_path: Path) -> None:
    engine = predlog.make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    predlog.create_tables(engine)
    try:
        features = {name: TYPICAL[name] for name in schema.FEATURES}
        base = {"ts": 1.0, "model": "m", "version": "1", "customer_id": None, **features}
        predlog.log_predictions(engine, [{"id": "as-dict", **base, "score": 0.1, "predicted": 0}])
        old_layout = [c for c in predlog.PREDICTION_COLUMNS if c not in predlog.ADDED_COLUMNS]
        row = {"id": "as-tuple", **base, "score": 0.2, "predicted": 0}
        predlog.log_predictions(engine, [tuple(row[c] for c in old_layout)])
        full = {**row, "id": "full", "anomaly_score": 1.5, "unusual": False}
        full_layout = [c for c in predlog.PREDICTION_COLUMNS if c in full]
        predlog.log_predictions(engine, [tuple(full[c] for c in full_layout)])
        with engine.connect() as conn:
            got = {
                r.id: (r.anomaly_score, r.unusual)
                for r in conn.execute(sa.select(predlog.predictions))
            }
    finally:
        engine.dispose()
    assert got == {"as-dict": (None, None), "as-tuple": (None, None), "full": (1.5, False)}
