"""Shadow scoring in the prediction API (issue 18): the challenger at
``model.challenger_alias`` scores every logged prediction beside the champion, its
version and score go to the log and never to the answer; a challenger that raises,
fails to load or does not exist changes nothing for the client; its alias is followed
on poll; ``api.shadow_scoring: false`` turns it off; an older log gets the columns.

Real components throughout: the in-process app (FastAPI's TestClient) over small real
scikit-learn pipelines, served through the registry stand-in, and a real SQLite log."""

from __future__ import annotations

import dataclasses
import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from exporter.api import create_app  # noqa: E402
from exporter.api.models import Customer  # noqa: E402
from exporter.api.scoring import feature_frame  # noqa: E402
from exporter.config import MonitoringConfig  # noqa: E402
from exporter.data import predlog, synthetic  # noqa: E402
from exporter.domain.model import ModelRef  # noqa: E402
from exporter.model import modeling  # noqa: E402

from .api_fixtures import StandInRegistry, customers, fetch_rows, make_config  # noqa: E402
from .support import wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]

#: Deadline for the app's background challenger load and polls (every 0.1 s here).
DEADLINE = 30.0
SHADOW = ("challenger_version", "challenger_score")


def _loaded(model: Any, version: str) -> Any:
    from exporter.model.registry import LoadedModel

    return LoadedModel(
        model=model,
        ref=ModelRef(name="churn-model", version=version, run_id=f"run-{version}"),
        baseline={"roc_auc": 0.8},
        threshold=0.9,  # never used: the answer is the champion's
    )


@pytest.fixture(scope="module")
def challenger() -> Any:
    """A real pipeline unlike the champion (other data, strong regularisation)."""
    frame = synthetic.generate_customers(1200, seed=31)
    pipeline = modeling.build_pipeline({"model": modeling.LOGISTIC, "lr_C": 0.02}, seed=0)
    pipeline.fit(modeling.prepare_features(frame), (frame["Churn"] == "Yes").astype(int))
    return _loaded(pipeline, "7")


@pytest.fixture(scope="module")
def broken_challenger() -> Any:
    """A real fitted pipeline that needs a column the API never has: every
    ``predict_proba`` raises (and its fast path fails its check, so none is used)."""
    frame = modeling.prepare_features(synthetic.generate_customers(300, seed=5))
    frame["Extra"] = np.arange(len(frame), dtype=float)
    pipeline = Pipeline(
        [
            ("preprocess", ColumnTransformer([("num", StandardScaler(), ["tenure", "Extra"])])),
            ("classifier", LogisticRegression()),
        ]
    )
    pipeline.fit(frame, np.arange(len(frame)) % 2)
    return _loaded(pipeline, "9")


def _app(config: MonitoringConfig, registry: StandInRegistry) -> TestClient:
    app = create_app(config, model_loader=registry.load, model_watch=registry.watch)
    return TestClient(app, raise_server_exceptions=False)


def _holder(client: TestClient) -> Any:
    return client.app.state.challenger  # type: ignore[attr-defined]


def _wait_for_challenger(client: TestClient, version: str | None) -> None:
    def holding() -> bool:
        current = _holder(client).current
        return (current.ref.version if current is not None else None) == version

    wait_until(holding, DEADLINE, f"the challenger holder at version {version}")


def _rows(config: MonitoringConfig) -> dict[str, dict[str, Any]]:
    rows = fetch_rows(config.data.current.url, sa.select(predlog.predictions))
    return {r["id"]: r for r in rows}


def _wait_shadowed(config: MonitoringConfig, ids: list[str]) -> None:
    """Poll until the shadow worker wrote the challenger columns of these rows."""

    def written() -> bool:
        rows = _rows(config)
        return all(rows[i]["challenger_score"] is not None for i in ids)

    wait_until(written, DEADLINE, f"the shadow scores of {len(ids)} rows")


def _sample(client: TestClient, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with `labels` in the app's /metrics (None: absent)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def _failures(client: TestClient, stage: str) -> float | None:
    return _sample(client, "churn_api_shadow_failures_total", model="churn-model", stage=stage)


def _traffic(client: TestClient, bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Three single predictions, then the rest as one batch; every answer."""
    answers = []
    for body in bodies[:3]:
        response = client.post("/predict", json=body)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    response = client.post("/predict/batch", json={"customers": bodies[3:]})
    assert response.status_code == 200, response.text
    return answers + response.json()["predictions"]


def _without_ids(answers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in a.items() if k != "prediction_id"} for a in answers]


def _scores(model: Any, bodies: list[dict[str, Any]]) -> np.ndarray:
    return np.asarray(model.score(feature_frame([Customer(**b) for b in bodies])))


# ------------------------------------------------------------------ with a challenger


def test_the_challenger_scores_every_logged_prediction_and_the_answer_is_the_champions(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    bodies = customers(8, seed=3)
    alone = StandInRegistry(tiny_model)
    with _app(make_config(tmp_path / "alone"), alone) as client:
        champion_only = _traffic(client, bodies)

    config = make_config(tmp_path / "shadow")
    registry = StandInRegistry(tiny_model)
    registry.challenger = challenger
    with _app(config, registry) as client:
        _wait_for_challenger(client, "7")
        answers = _traffic(client, bodies)
        what_if = client.post("/predict/batch?log=false", json={"customers": bodies[:2]})
        assert what_if.status_code == 200
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["challenger_version"] == "7"
        _wait_shadowed(config, [a["prediction_id"] for a in answers])
        assert _sample(client, "churn_api_shadow_score_count", model="churn-model") == 8
        assert _sample(client, "churn_api_prediction_score_count", model="churn-model") == 8
        info = _sample(client, "churn_api_shadow_model_info", model="churn-model", version="7")
        assert info == 1
        assert _failures(client, "load") == 0 and _failures(client, "score") == 0

    assert _without_ids(answers) == _without_ids(champion_only)
    assert all(set(a) == set(champion_only[0]) for a in answers)  # no new answer fields
    rows = _rows(config)
    assert len(rows) == 8
    logged = [rows[a["prediction_id"]] for a in answers]
    expected = _scores(challenger, bodies)
    assert not np.allclose(expected, _scores(tiny_model, bodies))  # the premise
    assert [r["challenger_version"] for r in logged] == ["7"] * 8
    assert [r["challenger_score"] for r in logged] == pytest.approx(expected.tolist(), rel=1e-9)
    assert [r["score"] for r in logged] == pytest.approx([a["churn_probability"] for a in answers])
    assert registry.challenger_loads >= 1 and registry.loads >= 1


def test_the_first_challenger_load_does_not_delay_readiness(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    release = threading.Event()

    class SlowChallenger(StandInRegistry):
        def _load_challenger(self, config: MonitoringConfig) -> Any:
            release.wait(DEADLINE)
            return super()._load_challenger(config)

    registry = SlowChallenger(tiny_model)
    registry.challenger = challenger
    config = make_config(tmp_path)
    with _app(config, registry) as client:
        try:
            assert client.get("/health").status_code == 200
            first = client.post("/predict", json=customers(1, seed=4)[0]).json()
        finally:
            release.set()
        _wait_for_challenger(client, "7")
        second = client.post("/predict", json=customers(1, seed=5)[0]).json()
    rows = _rows(config)
    assert rows[first["prediction_id"]]["challenger_score"] is None
    assert rows[second["prediction_id"]]["challenger_version"] == "7"


# ------------------------------------------------------------------------ failures


def test_a_challenger_that_raises_changes_nothing_for_the_client(
    tmp_path: Path,
    tiny_model: Any,
    broken_challenger: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bodies = customers(6, seed=8)
    config = make_config(tmp_path)
    registry = StandInRegistry(tiny_model)
    registry.challenger = broken_challenger
    with caplog.at_level(logging.INFO, logger="churn_monitor.api"), _app(config, registry) as c:
        _wait_for_challenger(c, "9")
        assert _holder(c).current.fast is None  # predict_proba itself raises
        answers = []
        for k, body in enumerate(bodies, start=1):  # each request its own shadow round
            response = c.post("/predict", json=body)
            assert response.status_code == 200, response.text
            answers.append(response.json())
            wait_until(lambda k=k: _failures(c, "score") == k, DEADLINE, f"failure {k}")
        assert _failures(c, "load") == 0
        assert _sample(c, "churn_api_shadow_score_count", model="churn-model") == 0
    expected = _scores(tiny_model, bodies)
    assert [a["churn_probability"] for a in answers] == pytest.approx(expected.tolist())
    rows = _rows(config)
    assert len(rows) == 6
    assert all(r[c] is None for r in rows.values() for c in SHADOW)
    said = [r for r in caplog.records if "failed (score)" in r.getMessage()]
    assert len(said) == 1 and "version 9" in said[0].getMessage()
    assert said[0].exc_info is not None


class _HeldModel:
    """A real pipeline whose ``predict_proba`` waits on `release` once `armed` (after
    the load's checks), saying so in `entered`: a challenger held at a known point."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.classes_ = pipeline.classes_
        self.armed = False
        self.entered = threading.Event()
        self.release = threading.Event()

    def predict_proba(self, frame: Any) -> Any:
        if self.armed:
            self.entered.set()
            assert self.release.wait(DEADLINE), "never released"
        return self.pipeline.predict_proba(frame)


def test_a_challenger_held_mid_scoring_never_holds_a_request(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    """While the challenger is stuck inside predict_proba, requests are answered and
    logged; released, it fills in the rows it was given and the ones queued meanwhile."""
    held = _HeldModel(challenger.model)
    config = make_config(tmp_path)
    registry = StandInRegistry(tiny_model)
    registry.challenger = dataclasses.replace(challenger, model=held)
    bodies = customers(6, seed=13)
    with _app(config, registry) as client:
        _wait_for_challenger(client, "7")
        held.armed = True
        first = client.post("/predict", json=bodies[0])
        assert first.status_code == 200
        assert held.entered.wait(DEADLINE), "the challenger never started scoring"
        later = [client.post("/predict", json=body) for body in bodies[1:]]  # while held
        assert [r.status_code for r in later] == [200] * 5
        ids = [r.json()["prediction_id"] for r in (first, *later)]
        rows = _rows(config)
        assert all(rows[i]["challenger_score"] is None for i in ids)  # still held
        held.release.set()
        _wait_shadowed(config, ids)
    rows = _rows(config)
    expected = _scores(challenger, bodies)
    assert [rows[i]["challenger_score"] for i in ids] == pytest.approx(expected.tolist())


def test_a_challenger_that_fails_to_load_is_counted_and_requests_are_served(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    config = make_config(tmp_path)
    registry = StandInRegistry(tiny_model)
    registry.challenger = challenger
    registry.challenger_unavailable = "cannot download the artifacts"
    with _app(config, registry) as client:
        wait_until(lambda: (_failures(client, "load") or 0) >= 1, DEADLINE, "a load failure")
        answer = client.post("/predict", json=customers(1, seed=2)[0])
        assert answer.status_code == 200
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["challenger_version"] is None
        assert _failures(client, "score") == 0
        assert _sample(client, "churn_api_shadow_model_info", model="churn-model") is None
        failed = _failures(client, "load")
        assert failed is not None and failed <= registry.challenger_attempts
        # The version becomes loadable: the next poll loads it.
        registry.challenger_unavailable = None
        _wait_for_challenger(client, "7")
        later = client.post("/predict", json=customers(1, seed=3)[0]).json()
    rows = _rows(config)
    assert all(rows[answer.json()["prediction_id"]][c] is None for c in SHADOW)
    assert rows[later["prediction_id"]]["challenger_version"] == "7"


def test_without_a_challenger_alias_nothing_fails_and_the_columns_are_null(
    tmp_path: Path, stand_in: StandInRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    config = make_config(tmp_path)
    with caplog.at_level(logging.INFO, logger="churn_monitor.api"), _app(config, stand_in) as c:
        # The first load and at least two polls asked for the alias.
        wait_until(lambda: stand_in.challenger_attempts >= 3, DEADLINE, "three attempts")
        answers = _traffic(c, customers(5, seed=6))
        assert _failures(c, "load") == 0 and _failures(c, "score") == 0
        assert _sample(c, "churn_api_shadow_model_info", model="churn-model") is None
        assert c.get("/health").json()["challenger_version"] is None
    rows = _rows(config)
    assert len(rows) == len(answers) == 5
    assert all(r[c] is None for r in rows.values() for c in SHADOW)
    said = [r for r in caplog.records if r.getMessage().startswith("no challenger at alias")]
    assert len(said) == 1 and said[0].levelno == logging.INFO


def test_shadow_scoring_off_never_asks_for_the_challenger(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    config = make_config(tmp_path, shadow_scoring=False)
    registry = StandInRegistry(tiny_model)
    registry.challenger = challenger
    with _app(config, registry) as client:
        assert _holder(client) is None
        _traffic(client, customers(5, seed=1))
        assert _sample(client, "churn_api_shadow_score_count", model="churn-model") == 0
    assert registry.challenger_attempts == 0
    assert all(r[c] is None for r in _rows(config).values() for c in SHADOW)


# ------------------------------------------------------------------- following the alias


def test_the_challenger_alias_is_followed_moved_and_removed(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    config = make_config(tmp_path)
    registry = StandInRegistry(tiny_model)
    registry.challenger = challenger
    body = customers(1, seed=12)[0]
    with _app(config, registry) as client:
        _wait_for_challenger(client, "7")
        seven = client.post("/predict", json=body).json()
        _wait_shadowed(config, [seven["prediction_id"]])

        # Retraining registers a new challenger: the next poll swaps it in.
        registry.challenger = dataclasses.replace(
            tiny_model, ref=ModelRef(name="churn-model", version="8", run_id="run-8")
        )
        _wait_for_challenger(client, "8")
        eight = client.post("/predict", json=body).json()
        _wait_shadowed(config, [eight["prediction_id"]])
        assert _sample(client, "churn_api_shadow_model_info", version="8") == 1
        assert _sample(client, "churn_api_shadow_model_info", version="7") is None

        # A promotion removes the alias: the challenger is dropped, not kept.
        registry.challenger = None
        _wait_for_challenger(client, None)
        none = client.post("/predict", json=body).json()
        assert _sample(client, "churn_api_shadow_model_info", model="churn-model") is None
        assert _failures(client, "load") == 0
    rows = _rows(config)
    assert rows[seven["prediction_id"]]["challenger_version"] == "7"
    assert rows[seven["prediction_id"]]["challenger_score"] == pytest.approx(
        _scores(challenger, [body])[0], rel=1e-9
    )
    assert rows[eight["prediction_id"]]["challenger_version"] == "8"
    assert rows[eight["prediction_id"]]["challenger_score"] == pytest.approx(
        eight["churn_probability"], rel=1e-9
    )
    assert all(rows[none["prediction_id"]][c] is None for c in SHADOW)


def test_a_holder_poll_swaps_the_challenger_at_once(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    """`poll` itself, without the app's background task (a long poll interval)."""
    config = make_config(tmp_path, model_poll_seconds=3600)
    registry = StandInRegistry(tiny_model)
    with _app(config, registry) as client:
        holder = _holder(client)
        wait_until(  # the background first load found no alias, and sleeps now
            lambda: "alias not found" in (holder.error or ""), DEADLINE, "the first load"
        )
        registry.challenger = challenger
        assert holder.poll() is True and holder.current.ref.version == "7"
        assert holder.poll() is False  # the alias did not move
        registry.challenger = dataclasses.replace(
            challenger, ref=ModelRef(name="churn-model", version="8", run_id="run-8")
        )
        assert holder.poll() is True and holder.current.ref.version == "8"
        registry.challenger = None
        assert holder.poll() is True and holder.current is None
        assert holder.poll() is False and holder.current is None


# ------------------------------------------------------------------------ an older log


def test_a_log_without_the_challenger_columns_gets_them_and_old_rows_read_null(
    tmp_path: Path, tiny_model: Any, challenger: Any
) -> None:
    config = make_config(tmp_path)
    url = config.data.current.url
    engine = predlog.make_engine(url)
    try:
        predlog.create_tables(engine)
        with engine.begin() as conn:  # the previous release's table
            for name in SHADOW:
                conn.exec_driver_sql(f"ALTER TABLE predictions DROP COLUMN {name}")
        old_row = {
            "id": "old-prediction",
            "ts": 1.0,
            "model": "churn-model",
            "version": "1",
            "customer_id": "1234-OLDCU",
            **{k: v for k, v in customers(1, seed=2)[0].items() if k != "customerID"},
            "score": 0.3,
            "predicted": 0,
            "anomaly_score": None,
            "unusual": None,
        }
        with engine.begin() as conn:
            conn.execute(sa.table("predictions", *map(sa.column, old_row)).insert(), old_row)
            conn.exec_driver_sql(
                "INSERT INTO feedback (prediction_id, ts, actual) VALUES ('old-prediction', 2, 1)"
            )
        assert "challenger_score" not in {
            c["name"] for c in sa.inspect(engine).get_columns("predictions")
        }
    finally:
        engine.dispose()

    registry = StandInRegistry(tiny_model)
    registry.challenger = challenger
    with _app(config, registry) as client:
        _wait_for_challenger(client, "7")
        new = client.post("/predict", json=customers(1, seed=9)[0]).json()
        labelled = client.post(
            "/feedback", json={"prediction_id": new["prediction_id"], "actual": 0}
        )
        assert labelled.status_code == 201

    engine = predlog.make_engine(url)
    try:
        columns = [c["name"] for c in sa.inspect(engine).get_columns("predictions")]
        assert columns[-4:] == list(predlog.ADDED_COLUMNS)
        assert predlog.create_tables(engine) == []  # idempotent
    finally:
        engine.dispose()
    rows = {r["id"]: r for r in fetch_rows(url, predlog.labelled_query())}
    assert set(rows) == {"old-prediction", new["prediction_id"]}
    assert all(rows["old-prediction"][c] is None for c in SHADOW)
    assert rows["old-prediction"]["score"] == pytest.approx(0.3)
    assert rows[new["prediction_id"]]["challenger_version"] == "7"
    assert rows[new["prediction_id"]]["challenger_score"] is not None


def test_rows_with_the_anomaly_columns_only_are_logged_with_null_shadow_columns(
    tmp_path: Path,
) -> None:
    """A writer of the previous release's layout (tuples that stop before the
    challenger columns) still logs."""
    engine = predlog.make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    try:
        predlog.create_tables(engine)
        body = customers(1, seed=2)[0]
        row = {
            "id": "previous-layout",
            "ts": 1.0,
            "model": "churn-model",
            "version": "1",
            "customer_id": body["customerID"],
            **{k: v for k, v in body.items() if k != "customerID"},
            "score": 0.2,
            "predicted": 0,
            "anomaly_score": 1.0,
            "unusual": False,
        }
        layout = [c for c in predlog.PREDICTION_COLUMNS if c not in SHADOW]
        predlog.log_predictions(engine, [tuple(row[c] for c in layout)])
        with engine.connect() as conn:
            got = conn.execute(sa.select(predlog.predictions)).one()._mapping
    finally:
        engine.dispose()
    assert got["anomaly_score"] == 1.0 and got["challenger_version"] is None
    assert got["challenger_score"] is None
