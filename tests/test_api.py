"""The prediction API in process (FastAPI's TestClient): validation, logging, feedback,
health, metrics, model switch and the database failing, with a small real model."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import sqlalchemy as sa  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from exporter.api import create_app  # noqa: E402
from exporter.api.errors import field_path  # noqa: E402
from exporter.api.models import Customer  # noqa: E402
from exporter.api.scoring import feature_frame  # noqa: E402
from exporter.data import predlog  # noqa: E402
from exporter.domain import schema  # noqa: E402

from .api_fixtures import (  # noqa: E402
    CUSTOMER,
    StandInRegistry,
    count_rows,
    customer,
    customers,
    fetch_rows,
    make_config,
)
from .support import wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]


def _db(client: TestClient) -> str:
    return client.app.state.config.data.current.url  # type: ignore[attr-defined]


# ----------------------------------------------------------------------- predict


def test_predict_answers_and_logs_every_field(client: TestClient, tiny_model: Any) -> None:
    response = client.post("/predict", json=CUSTOMER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "prediction_id",
        "customerID",
        "churn_probability",
        "predicted",
        "churn",
        "threshold",
        "model_name",
        "model_version",
        "anomaly_score",
        "unusual",
        "anomaly_cutoff",
    }
    # The config's reference snapshot does not exist: no anomaly score (test_api_anomaly).
    assert body["anomaly_score"] is None and body["unusual"] is None
    assert body["anomaly_cutoff"] is None
    assert body["customerID"] == "7590-VHVEG"
    assert body["model_name"] == "churn-model" and body["model_version"] == "1"
    assert body["threshold"] == pytest.approx(0.4)
    expected = tiny_model.score(feature_frame([Customer(**CUSTOMER)]))[0]
    assert body["churn_probability"] == pytest.approx(expected)
    assert body["predicted"] == int(expected >= 0.4)
    assert body["churn"] == ("Yes" if body["predicted"] else "No")

    rows = fetch_rows(_db(client), sa.select(predlog.predictions))
    assert len(rows) == 1
    row = rows[0]
    assert row["id"] == body["prediction_id"]
    assert row["customer_id"] == "7590-VHVEG"
    assert row["model"] == "churn-model" and row["version"] == "1"
    assert row["score"] == pytest.approx(body["churn_probability"])
    assert row["predicted"] == body["predicted"]
    assert row["anomaly_score"] is None and row["unusual"] is None
    for name in schema.FEATURES:
        assert row[name] == CUSTOMER[name], name
    assert row["ts"] > 0


@pytest.mark.parametrize("blank", [None, "", " "])
def test_total_charges_may_be_blank_for_new_customers(client: TestClient, blank: Any) -> None:
    body = customer(tenure=0, TotalCharges=blank, customerID="0000-NEWCU")
    response = client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    rows = fetch_rows(_db(client), sa.select(predlog.predictions.c.TotalCharges))
    assert rows == [{"TotalCharges": None}]


def test_customer_id_is_optional(client: TestClient) -> None:
    response = client.post("/predict", json=customer(customerID=...))
    assert response.status_code == 200
    assert response.json()["customerID"] is None


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (customer(tenure=...), "tenure", "Field required"),
        (customer(PaymentMethod="Digital wallet"), "PaymentMethod", "Electronic check"),
        (customer(gender="female"), "gender", "'Female' or 'Male'"),
        (customer(tenure=-1), "tenure", "greater than or equal to 0"),
        (customer(tenure=73), "tenure", "less than or equal to 72"),
        (customer(tenure=1.5), "tenure", "fractional part"),
        (customer(MonthlyCharges="cheap"), "MonthlyCharges", "number, not a string"),
        (customer(MonthlyCharges="29.85"), "MonthlyCharges", "number, not a string"),
        (customer(tenure=True), "tenure", "number, not a boolean"),
        (customer(SeniorCitizen=2), "SeniorCitizen", "0 or 1"),
        (customer(MonthlyCharges=-5), "MonthlyCharges", "greater than or equal to 0"),
        (customer(TotalCharges="n/a"), "TotalCharges", "number, null or blank"),
        (customer(Churn="Yes"), "Churn", "Extra inputs are not permitted"),
        (customer(customerID=""), "customerID", "at least 1 character"),
    ],
)
def test_invalid_customer_is_422_naming_the_field_and_writes_nothing(
    client: TestClient, body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/predict", json=body)
    assert response.status_code == 422, response.text
    payload = response.json()
    assert any(e["loc"] == ["body", field] for e in payload["detail"]), payload
    assert f"{field}: " in payload["message"] and words in payload["message"], payload
    assert count_rows(_db(client)) == 0


def test_several_errors_are_all_named(client: TestClient) -> None:
    response = client.post("/predict", json=customer(tenure=-1, Contract="Weekly", gender=...))
    assert response.status_code == 422
    message = response.json()["message"]
    assert message.startswith("3 invalid fields: ")
    for name in ("tenure", "Contract", "gender"):
        assert f"{name}: " in message


def test_non_finite_numbers_are_refused(client: TestClient) -> None:
    raw = json.dumps(customer()).replace('"MonthlyCharges": 29.85', '"MonthlyCharges": NaN')
    response = client.post("/predict", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert "MonthlyCharges" in response.json()["message"]


def test_empty_body_and_malformed_json_are_client_errors(client: TestClient) -> None:
    empty = client.post("/predict", content=b"", headers={"content-type": "application/json"})
    assert empty.status_code == 422
    assert "request body is empty" in empty.json()["message"]
    broken = client.post(
        "/predict", content=b'{"gender": "Male",', headers={"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert "not valid JSON" in broken.json()["detail"]
    form = client.post(
        "/predict", content=json.dumps(CUSTOMER), headers={"content-type": "text/plain"}
    )
    assert form.status_code == 415
    assert "Content-Type: application/json (got 'text/plain')" in form.json()["detail"]
    listed = client.post("/predict", json=[CUSTOMER])
    assert listed.status_code == 422
    assert "valid dictionary" in listed.json()["message"]
    assert count_rows(_db(client)) == 0


def test_body_over_the_size_limit_is_413(tmp_path: Path, stand_in: StandInRegistry) -> None:
    config = make_config(tmp_path, max_body_bytes=2048)
    app = create_app(config, model_loader=stand_in.load, model_watch=stand_in.watch)
    with TestClient(app) as test_client:
        big = customer(customerID="x" * 3000)
        response = test_client.post("/predict", json=big)
        assert response.status_code == 413
        assert "2048 bytes" in response.json()["detail"]

        def chunks() -> Any:
            data = json.dumps(big).encode()
            for i in range(0, len(data), 500):
                yield data[i : i + 500]

        chunked = test_client.post(
            "/predict", content=chunks(), headers={"content-type": "application/json"}
        )
        assert chunked.status_code == 413
        small = test_client.post("/predict", json=customer())
        assert small.status_code == 200
        metrics = test_client.get("/metrics").text
        assert 'churn_api_requests_total{method="POST",route="/predict",status="413"} 2.0' in (
            metrics
        )
    assert count_rows(config.data.current.url) == 1


# ------------------------------------------------------------------------- batch


def test_batch_scores_and_logs_every_customer(client: TestClient) -> None:
    batch = customers(20, seed=5)
    response = client.post("/predict/batch", json={"customers": batch})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["count"] == 20 and len(body["predictions"]) == 20
    assert [p["customerID"] for p in body["predictions"]] == [c["customerID"] for c in batch]
    ids = {p["prediction_id"] for p in body["predictions"]}
    assert len(ids) == 20
    rows = fetch_rows(_db(client), sa.select(predlog.predictions))
    assert {r["id"] for r in rows} == ids
    assert len({r["ts"] for r in rows}) == 1  # one transaction, one timestamp


def test_batch_error_names_item_and_field_and_writes_nothing(client: TestClient) -> None:
    batch = customers(6, seed=6)
    batch[3]["tenure"] = -4
    batch[5]["PaymentMethod"] = "Digital wallet"
    response = client.post("/predict/batch", json={"customers": batch})
    assert response.status_code == 422
    body = response.json()
    locs = [e["loc"] for e in body["detail"]]
    assert ["body", "customers", 3, "tenure"] in locs
    assert ["body", "customers", 5, "PaymentMethod"] in locs
    assert (
        "customers[3].tenure: Input should be greater than or equal to 0 (got -4)"
        in (body["message"])
    )
    assert count_rows(_db(client)) == 0


def test_batch_limits(client: TestClient) -> None:
    too_many = client.post("/predict/batch", json={"customers": customers(21)})
    assert too_many.status_code == 413
    assert "21 customers, the limit is 20" in too_many.json()["detail"]
    empty = client.post("/predict/batch", json={"customers": []})
    assert empty.status_code == 422
    assert "customers: List should have at least 1 item" in empty.json()["message"]
    missing = client.post("/predict/batch", json=CUSTOMER)
    assert missing.status_code == 422
    assert count_rows(_db(client)) == 0


def test_field_path() -> None:
    assert field_path(("body", "customers", 3, "tenure")) == "customers[3].tenure"
    assert field_path(("body",)) == "body"
    assert field_path(("body", "tenure")) == "tenure"


# ---------------------------------------------------------------------- feedback


def test_feedback_by_prediction_id_and_by_customer(client: TestClient) -> None:
    first = client.post("/predict", json=customer(customerID="1111-AAAAA")).json()
    second = client.post("/predict", json=customer(customerID="1111-AAAAA", tenure=5)).json()
    other = client.post("/predict", json=customer(customerID="2222-BBBBB")).json()

    by_id = client.post("/feedback", json={"prediction_id": first["prediction_id"], "actual": 1})
    assert by_id.status_code == 201, by_id.text
    assert by_id.json() == {"prediction_id": first["prediction_id"], "actual": 1}

    by_customer = client.post("/feedback", json={"customerID": "1111-AAAAA", "actual": "No"})
    assert by_customer.status_code == 201
    assert by_customer.json() == {"prediction_id": second["prediction_id"], "actual": 0}

    yes = client.post("/feedback", json={"prediction_id": other["prediction_id"], "actual": "Yes"})
    assert yes.json()["actual"] == 1

    labelled = fetch_rows(_db(client), predlog.labelled_query())
    assert {r["id"]: r["actual"] for r in labelled} == {
        first["prediction_id"]: 1,
        second["prediction_id"]: 0,
        other["prediction_id"]: 1,
    }
    # A second label for the same prediction replaces the first in the labelled view.
    client.post("/feedback", json={"prediction_id": other["prediction_id"], "actual": 0})
    labelled = fetch_rows(_db(client), predlog.labelled_query())
    assert {r["id"]: r["actual"] for r in labelled}[other["prediction_id"]] == 0
    assert count_rows(_db(client), "feedback") == 4


def test_feedback_for_unknown_ids_is_404_naming_them(client: TestClient) -> None:
    response = client.post("/feedback", json={"prediction_id": "no-such-id", "actual": 1})
    assert response.status_code == 404
    assert "no-such-id" in response.json()["detail"]
    response = client.post("/feedback", json={"customerID": "9999-ZZZZZ", "actual": 0})
    assert response.status_code == 404
    assert "customerID '9999-ZZZZZ'" in response.json()["detail"]
    assert count_rows(_db(client), "feedback") == 0


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"actual": 1}, "exactly one of prediction_id and customerID"),
        ({"prediction_id": "a", "customerID": "b", "actual": 1}, "exactly one of"),
        ({"prediction_id": "a", "actual": 2}, "actual: Input should be 0, 1, 'Yes' or 'No'"),
        ({"prediction_id": "a"}, "actual: Field required"),
        ({"prediction_id": "a", "actual": 1, "extra": 1}, "extra: Extra inputs"),
    ],
)
def test_invalid_feedback_is_422(client: TestClient, body: dict[str, Any], words: str) -> None:
    response = client.post("/feedback", json=body)
    assert response.status_code == 422
    assert words in response.json()["message"]


# ------------------------------------------------------------ health, model, docs


def test_health_and_model(client: TestClient, tiny_model: Any) -> None:
    health = client.get("/health")
    assert health.status_code == 200
    body = health.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert body["model"]["version"] == "1"
    model = client.get("/model").json()
    assert model["name"] == "churn-model"
    assert model["version"] == "1" and model["run_id"] == "run-one"
    assert model["threshold"] == pytest.approx(0.4)
    assert model["baseline"] == tiny_model.baseline


def test_without_a_model_everything_is_a_clear_503(
    api_config: Any, stand_in: StandInRegistry
) -> None:
    stand_in.unavailable = "models:/churn-model@champion: alias not found"
    app = create_app(api_config, model_loader=stand_in.load, model_watch=stand_in.watch)
    with TestClient(app) as test_client:
        health = test_client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable"
        assert "alias not found" in health.json()["model_error"]
        for response in (
            test_client.post("/predict", json=CUSTOMER),
            test_client.post("/predict/batch", json={"customers": [CUSTOMER]}),
            test_client.get("/model"),
        ):
            assert response.status_code == 503
            assert "no model is being served" in response.json()["detail"]
            assert "alias not found" in response.json()["detail"]
        # The champion appears later: the poller loads it without a restart.
        stand_in.unavailable = None
        wait_until(lambda: test_client.get("/health").status_code == 200, 10, "the model")
        assert test_client.post("/predict", json=CUSTOMER).status_code == 200
    assert count_rows(api_config.data.current.url) == 1


def test_openapi_documents_the_schema(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/feedback", "/health", "/model", "/metrics"} <= set(
        spec["paths"]
    )
    props = spec["components"]["schemas"]["Customer"]["properties"]
    assert props["PaymentMethod"]["enum"] == list(schema.CATEGORIES["PaymentMethod"])
    assert props["tenure"]["maximum"] == 72
    batch = spec["components"]["schemas"]["BatchRequest"]["properties"]["customers"]
    assert batch["maxItems"] == 20


def _conforms(spec: dict[str, Any], component: str, instance: Any) -> bool:
    """Whether `instance` is valid for ``#/components/schemas/<component>`` of `spec`."""
    import jsonschema

    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


@pytest.mark.parametrize(
    "body",
    [
        {"prediction_id": "no-such-id", "actual": 1},
        {"customerID": "9999-ZZZZZ", "actual": "No"},
        {"prediction_id": None, "customerID": "9999-ZZZZZ", "actual": 0},
        {"prediction_id": "no-such-id", "customerID": None, "actual": "Yes"},
        {"prediction_id": "no-such-id", "customerID": "9999-ZZZZZ", "actual": 1},
        {"actual": 1},
        {"prediction_id": None, "customerID": None, "actual": 1},
    ],
)
def test_openapi_feedback_key_rule_is_what_the_api_enforces(
    client: TestClient, body: dict[str, Any]
) -> None:
    spec = client.get("/openapi.json").json()
    response = client.post("/feedback", json=body)
    keys = [k for k in ("prediction_id", "customerID") if body.get(k) is not None]
    assert _conforms(spec, "Feedback", body) == (len(keys) == 1)
    if len(keys) == 1:
        assert response.status_code == 404, response.text  # valid, but names nothing
    else:
        assert response.status_code == 422
        assert "exactly one of prediction_id and customerID" in response.json()["message"]


def test_openapi_declares_each_status_with_the_body_the_api_sends(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    declared = {
        f"{method.upper()} {path}": set(operation["responses"])
        for path, item in spec["paths"].items()
        for method, operation in item.items()
    }
    scoring = {"200", "400", "413", "415", "422", "500", "503"}
    assert declared == {
        "POST /predict": scoring,
        "POST /predict/batch": scoring,
        "POST /feedback": {"201", "400", "404", "413", "415", "422", "503"},
        "GET /health": {"200", "503"},
        "GET /model": {"200", "503"},
        "GET /metrics": {"200"},
    }
    assert "securitySchemes" not in spec["components"] and "security" not in spec
    batch = spec["paths"]["/predict/batch"]["post"]["responses"]
    assert "api.max_batch" in batch["413"]["description"]
    answers = {
        413: client.post("/predict/batch", json={"customers": customers(21)}),
        422: client.post("/predict", json=customer(tenure=-1)),
        400: client.post("/predict", content=b"{", headers={"content-type": "application/json"}),
        415: client.post("/feedback", content=b"{}", headers={"content-type": "text/plain"}),
        404: client.post("/feedback", json={"prediction_id": "no-such-id", "actual": 1}),
    }
    for status, response in answers.items():
        assert response.status_code == status, response.text
        operation = response.request.url.path
        schema = spec["paths"][operation]["post"]["responses"][str(status)]["content"]
        component = schema["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert component == ("ValidationErrorBody" if status == 422 else "ErrorBody")
        assert _conforms(spec, component, response.json()), (status, response.text)


def test_openapi_declares_basic_auth_when_users_are_configured(
    api_config: Any, stand_in: StandInRegistry
) -> None:
    import bcrypt

    from exporter.web.webconfig import WebConfig

    hashed = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4))
    web = WebConfig(users={"scorer": hashed})
    app = create_app(api_config, model_loader=stand_in.load, model_watch=stand_in.watch, web=web)
    spec = app.openapi()
    assert spec["components"]["securitySchemes"] == {
        "basicAuth": {"type": "http", "scheme": "basic"}
    }
    assert spec["security"] == [{"basicAuth": []}]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if path == "/health":  # open for liveness probes (webconfig.OPEN_PATHS)
                assert operation["security"] == [] and "401" not in operation["responses"]
            else:
                assert "security" not in operation, (method, path)  # the document's
                assert "401" in operation["responses"], (method, path)
    with TestClient(app) as test_client:
        refused = test_client.get("/model")
        assert refused.status_code == 401
        assert _conforms(spec, "ErrorBody", refused.json())
        assert test_client.get("/model", auth=("scorer", "secret")).status_code == 200


# ------------------------------------------------------------------ model switch


def test_new_champion_is_served_without_restart(
    client: TestClient, stand_in: StandInRegistry
) -> None:
    assert client.post("/predict", json=CUSTOMER).json()["model_version"] == "1"
    stand_in.promote("2", threshold=0.0)
    wait_until(lambda: client.get("/model").json()["version"] == "2", 10, "version 2")
    after = client.post("/predict", json=CUSTOMER).json()
    assert after["model_version"] == "2" and after["predicted"] == 1

    # The swap serves version 2 first, then the poller thread updates the gauge.
    def info_of_version_2() -> str | None:
        text = client.get("/metrics").text
        return text if 'churn_api_model_info{model="churn-model",version="2"} 1.0' in text else None

    metrics = wait_until(info_of_version_2, 30, "churn_api_model_info of version 2")
    assert 'version="1"' not in metrics
    versions = fetch_rows(_db(client), sa.select(predlog.predictions.c.version))
    assert sorted(r["version"] for r in versions) == ["1", "2"]


def test_failed_reload_keeps_serving_the_old_model(
    client: TestClient, stand_in: StandInRegistry
) -> None:
    attempts = stand_in.attempts
    stand_in.unavailable = "artifact missing"
    stand_in.promote("3")
    wait_until(lambda: stand_in.attempts >= attempts + 2, 10, "two failed reloads")
    assert client.get("/health").status_code == 200
    assert client.get("/model").json()["version"] == "1"
    assert client.post("/predict", json=CUSTOMER).json()["model_version"] == "1"


# ----------------------------------------------------------------------- metrics


def test_metrics_families(client: TestClient) -> None:
    client.post("/predict", json=CUSTOMER)
    client.post("/predict/batch", json={"customers": customers(5)})
    client.post("/predict", json=customer(tenure=-1))
    client.get("/nowhere")
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for line in (
        'churn_api_requests_total{method="POST",route="/predict",status="200"} 1.0',
        'churn_api_requests_total{method="POST",route="/predict",status="422"} 1.0',
        'churn_api_requests_total{method="POST",route="/predict/batch",status="200"} 1.0',
        'churn_api_requests_total{method="GET",route="unmatched",status="404"} 1.0',
        'churn_api_request_duration_seconds_count{method="POST",route="/predict"} 2.0',
        'churn_api_prediction_score_count{model="churn-model"} 6.0',
        'churn_api_model_info{model="churn-model",version="1"} 1.0',
    ):
        assert line in text, line
    predicted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("churn_api_predictions_total{")
    )
    assert predicted == 6
    assert 'churn_api_inference_duration_seconds_count{model="churn-model"}' in text


# -------------------------------------------------------------- database failures


def test_locked_database_is_503_and_writes_nothing(
    api_config: Any, stand_in: StandInRegistry
) -> None:
    url = api_config.data.current.url
    engine = predlog.make_engine(url, busy_timeout_ms=200)
    predlog.create_tables(engine)
    app = create_app(
        api_config, model_loader=stand_in.load, model_watch=stand_in.watch, engine=engine
    )
    with TestClient(app) as test_client:
        locker = sqlite3.connect(sa.engine.make_url(url).database, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            single = test_client.post("/predict", json=CUSTOMER)
            batch = test_client.post("/predict/batch", json={"customers": customers(3)})
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        for response in (single, batch):
            assert response.status_code == 503
            assert "prediction log unavailable: database is locked" in response.json()["detail"]
        assert count_rows(url) == 0
        assert test_client.post("/predict", json=CUSTOMER).status_code == 200
    engine.dispose()
    assert count_rows(url) == 1


def test_unreachable_database_is_503_in_health_and_predict(
    tmp_path: Path, stand_in: StandInRegistry
) -> None:
    folder = tmp_path / "a-folder"
    folder.mkdir()
    config = make_config(tmp_path)
    config = config.model_copy(
        update={
            "data": config.data.model_copy(
                update={
                    "current": config.data.current.model_copy(update={"url": f"sqlite:///{folder}"})
                }
            )
        }
    )
    app = create_app(config, model_loader=stand_in.load, model_watch=stand_in.watch)
    with TestClient(app) as test_client:
        health = test_client.get("/health")
        assert health.status_code == 503
        assert health.json()["database"] == "unavailable"
        assert "unable to open database file" in health.json()["database_error"]
        response = test_client.post("/predict", json=CUSTOMER)
        assert response.status_code == 503
        assert "prediction log unavailable" in response.json()["detail"]


def test_a_model_that_raises_is_a_json_500(api_config: Any, stand_in: StandInRegistry) -> None:
    class Broken:
        classes_ = (0, 1)

        def predict_proba(self, frame: Any) -> Any:
            raise ValueError("boom")

    from dataclasses import replace

    stand_in.champion = replace(stand_in.champion, model=Broken())
    app = create_app(api_config, model_loader=stand_in.load, model_watch=stand_in.watch)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        response = test_client.post("/predict", json=CUSTOMER)
        assert response.status_code == 500
        assert "failed: boom" in response.json()["detail"]
    assert count_rows(api_config.data.current.url) == 0


# ----------------------------------------------------------------- micro-batching


def test_concurrent_requests_share_model_calls(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Concurrent single predictions are scored together; each gets its own row.

    The first model call is held until every other request waits in the queue, so the
    batching is seen on any machine, not only when the threads happen to overlap.
    """
    bodies = customers(64, seed=9)
    results: list[Any] = [None] * len(bodies)
    scorer = client.app.state.scorer
    process = scorer._process
    held = threading.Event()

    def first_call_waits_for_the_rest(jobs: Any) -> Any:
        if not held.is_set():
            held.set()
            queue = scorer._queue
            # This first batch took what was queued when the worker woke; the rest of
            # the 64 requests queue behind it.
            wait_until(lambda: len(jobs) + queue.qsize() >= len(bodies), 60, "every request queued")
        return process(jobs)

    monkeypatch.setattr(scorer, "_process", first_call_waits_for_the_rest)

    def send(i: int) -> None:
        results[i] = client.post("/predict", json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r is not None and r.status_code == 200 for r in results)
    ids = [r.json()["prediction_id"] for r in results]
    assert len(set(ids)) == 64
    rows = fetch_rows(
        _db(client), sa.select(predlog.predictions.c.id, predlog.predictions.c.customer_id)
    )
    assert {r["id"]: r["customer_id"] for r in rows} == {
        r.json()["prediction_id"]: b["customerID"] for r, b in zip(results, bodies, strict=True)
    }
    metrics = client.get("/metrics").text
    calls = next(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("churn_api_inference_duration_seconds_count")
    )
    # The held first batch, then one call for every request that queued behind it (one
    # call in all if the worker woke only after all 64 had queued).
    assert calls <= 2


def test_feature_frame_matches_training_dtypes() -> None:
    frame = feature_frame([Customer(**customer(TotalCharges=None))])
    assert list(frame.columns) == list(schema.FEATURES)
    assert frame["tenure"].dtype == "float64" and frame["SeniorCitizen"].dtype == "float64"
    assert frame["TotalCharges"].isna().all()


# --------------------------------------------------------------------- fast path


def _sample(n: int = 300) -> tuple[dict[str, list[Any]], Any]:
    from exporter.data import synthetic
    from exporter.model import modeling

    raw = synthetic.generate_customers(n, seed=12, scenario="new_payment_method")
    raw.loc[:4, "TotalCharges"] = float("nan")
    frame = modeling.prepare_features(raw)
    return {name: frame[name].tolist() for name in schema.FEATURES}, frame


@pytest.mark.parametrize("family", ["logistic_regression", "hist_gradient_boosting"])
@pytest.mark.parametrize("wrapped", [False, True])
def test_fast_path_equals_the_pipeline(family: str, wrapped: bool) -> None:
    from sklearn.model_selection import FixedThresholdClassifier

    from exporter.api.fastpath import compile_fast_path
    from exporter.data import synthetic
    from exporter.model import modeling

    params: dict[str, Any] = {"model": family, "lr_C": 0.5}
    if family == "hist_gradient_boosting":
        params = {
            "model": family,
            "hgb_learning_rate": 0.1,
            "hgb_max_iter": 20,
            "hgb_max_leaf_nodes": 8,
            "hgb_min_samples_leaf": 20,
            "hgb_l2_regularization": 0.1,
        }
    train = synthetic.generate_customers(800, seed=13)
    model: Any = modeling.build_pipeline(params, seed=0).fit(
        modeling.prepare_features(train), (train["Churn"] == "Yes").astype(int)
    )
    if wrapped:
        model = FixedThresholdClassifier(model, threshold=0.3)
    fast = compile_fast_path(model)
    assert fast is not None
    columns, frame = _sample()
    expected = model.predict_proba(frame)[:, 1]
    assert fast(columns, len(frame)) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    one = {name: values[:1] for name, values in columns.items()}
    assert fast(one, 1) == pytest.approx(expected[:1], rel=1e-9, abs=1e-12)


def test_fast_path_declines_other_models_and_disagreement(tiny_model: Any) -> None:
    from sklearn.linear_model import LogisticRegression

    from exporter.api.fastpath import compile_fast_path, verified_fast_path

    assert compile_fast_path(LogisticRegression()) is None
    columns, frame = _sample(50)
    assert verified_fast_path(tiny_model.model, 1, columns, frame) is not None

    class Skewed:
        """predict_proba of the real pipeline, shifted: the check must refuse."""

        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.steps = inner.steps
            self.classes_ = inner.classes_

        def predict_proba(self, x: Any) -> Any:
            return self.inner.predict_proba(x) * 0.5

    skewed = Skewed(tiny_model.model)
    type(skewed).__name__ = "Pipeline"
    assert compile_fast_path(skewed) is not None
    assert verified_fast_path(skewed, 1, columns, frame) is None


def test_the_app_serves_through_the_fast_path(client: TestClient) -> None:
    served = client.app.state.holder.current  # type: ignore[attr-defined]
    assert served is not None and served.fast is not None
