"""The prediction API as a real uvicorn process over a real MLflow store and SQLite log.

The server is started the way ``churn-monitor api`` starts it (``serve_api`` with the
config from ``$CHURN_MONITOR_CONFIG``), on a free port, and stopped by pid.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import httpx  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from exporter.config import CurrentSourceConfig  # noqa: E402
from exporter.data import predlog  # noqa: E402
from exporter.domain import schema  # noqa: E402

from .api_fixtures import (  # noqa: E402
    CUSTOMER,
    SERVE_WITHOUT_REGISTRY,
    LiveApi,
    TrainedStore,
    count_rows,
    customer,
    customers,
    fetch_rows,
    register_new_version,
    start_api,
)
from .support import wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _rows_by_id(api: LiveApi, ids: list[str]) -> dict[str, dict[str, Any]]:
    table = predlog.predictions
    rows: dict[str, dict[str, Any]] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for row in fetch_rows(api.db_url, sa.select(table).where(table.c.id.in_(chunk))):
            rows[row["id"]] = row
    return rows


def test_predictions_are_logged_with_every_field_and_feedback_joins(
    live_api: LiveApi, mlflow_store: TrainedStore
) -> None:
    health = httpx.get(f"{live_api.url}/health").json()
    assert health["status"] == "ok"
    assert health["model"]["run_id"] == mlflow_store.run_id
    model = httpx.get(f"{live_api.url}/model").json()
    assert set(model["baseline"]) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert 0 < model["threshold"] < 1

    body = customer(customerID="3668-QPYBK")
    single = httpx.post(f"{live_api.url}/predict", json=body)
    assert single.status_code == 200, single.text
    answer = single.json()
    assert answer["model_name"] == mlflow_store.model_name
    assert answer["predicted"] == int(answer["churn_probability"] >= model["threshold"])

    batch = customers(50, seed=11, id_offset=500_000)
    many = httpx.post(f"{live_api.url}/predict/batch", json={"customers": batch})
    assert many.status_code == 200, many.text
    answers = [answer, *many.json()["predictions"]]
    sent = [body, *batch]

    rows = _rows_by_id(live_api, [a["prediction_id"] for a in answers])
    assert len(rows) == 51
    for request, reply in zip(sent, answers, strict=True):
        row = rows[reply["prediction_id"]]
        assert row["customer_id"] == request["customerID"]
        assert row["score"] == pytest.approx(reply["churn_probability"])
        assert row["predicted"] == reply["predicted"]
        assert row["version"] == reply["model_version"]
        for name in schema.FEATURES:
            assert row[name] == request[name], name

    labels = {a["prediction_id"]: i % 2 for i, a in enumerate(answers[:10])}
    for pid, label in labels.items():
        reply = httpx.post(f"{live_api.url}/feedback", json={"prediction_id": pid, "actual": label})
        assert reply.status_code == 201, reply.text
    by_customer = httpx.post(
        f"{live_api.url}/feedback", json={"customerID": "3668-QPYBK", "actual": "Yes"}
    )
    assert by_customer.json()["prediction_id"] == answer["prediction_id"]
    labels[answer["prediction_id"]] = 1
    joined = fetch_rows(live_api.db_url, predlog.labelled_query())
    got = {r["id"]: r["actual"] for r in joined if r["id"] in labels}
    assert got == labels
    missing = httpx.post(f"{live_api.url}/feedback", json={"prediction_id": "nope", "actual": 1})
    assert missing.status_code == 404 and "nope" in missing.json()["detail"]


@pytest.mark.parametrize(
    ("path", "payload", "status", "words"),
    [
        ("/predict", customer(Contract=...), 422, "Contract: Field required"),
        ("/predict", customer(PaymentMethod="Digital wallet"), 422, "PaymentMethod: Input should"),
        ("/predict", customer(tenure=-3), 422, "tenure: Input should be greater than or equal"),
        ("/predict", customer(MonthlyCharges="abc"), 422, "MonthlyCharges: Input should be a"),
        ("/predict", b"", 422, "request body is empty"),
        ("/predict", b"{not json", 400, "not valid JSON"),
        ("/predict/batch", {"customers": [CUSTOMER] * 1001}, 413, "limit is 1000"),
        (
            "/predict/batch",
            {"customers": [CUSTOMER, customer(SeniorCitizen="yes")]},
            422,
            "customers[1].SeniorCitizen",
        ),
    ],
)
def test_invalid_payloads_are_4xx_naming_the_field_and_write_nothing(
    live_api: LiveApi, path: str, payload: Any, status: int, words: str
) -> None:
    before = count_rows(live_api.db_url)
    if isinstance(payload, bytes):
        response = httpx.post(
            f"{live_api.url}{path}", content=payload, headers={"content-type": "application/json"}
        )
    else:
        response = httpx.post(f"{live_api.url}{path}", json=payload)
    assert response.status_code == status, response.text
    body = response.json()
    assert words in (body.get("message") or body["detail"])
    assert count_rows(live_api.db_url) == before


def test_oversized_body_is_413(live_api: LiveApi) -> None:
    before = count_rows(live_api.db_url)
    response = httpx.post(
        f"{live_api.url}/predict/batch",
        content=b"x" * 2_000_001,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "api.max_body_bytes" in response.json()["detail"]
    assert count_rows(live_api.db_url) == before


def test_concurrent_clients_every_2xx_has_exactly_one_row(live_api: LiveApi) -> None:
    """2,000 single predictions from 32 concurrent clients: no 5xx, one row per answer."""
    clients, per_client = 32, 63  # 2,016 requests
    bodies = customers(clients * per_client, seed=21, id_offset=1_000_000)
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    problems: list[str] = []
    lock = threading.Lock()

    def worker(k: int) -> None:
        mine = bodies[k * per_client : (k + 1) * per_client]
        with httpx.Client(base_url=live_api.url, timeout=30) as http:
            for body in mine:
                try:
                    response = http.post("/predict", json=body)
                except httpx.HTTPError as err:
                    with lock:
                        problems.append(repr(err))
                    continue
                with lock:
                    statuses[response.status_code] += 1
                    if response.status_code == 200:
                        ids.append(response.json()["prediction_id"])

    before = count_rows(live_api.db_url)
    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    elapsed = time.monotonic() - started
    assert not problems, problems[:3]
    assert not any(t.is_alive() for t in threads)
    assert statuses == {200: clients * per_client}, statuses
    assert len(set(ids)) == len(ids)
    rows = _rows_by_id(live_api, ids)
    assert set(rows) == set(ids)
    assert count_rows(live_api.db_url) == before + len(ids)
    print(f"{len(ids)} predictions from {clients} clients in {elapsed:.1f}s")


def test_exporter_reads_the_log_as_its_current_window(live_api: LiveApi) -> None:
    """The exporter's SQL source (sources.load_current) reads the rows the API logs."""
    from exporter.data.sources import load_current

    answers = httpx.post(
        f"{live_api.url}/predict/batch", json={"customers": customers(5, seed=31)}
    ).json()["predictions"]
    frame = load_current(
        CurrentSourceConfig(url=live_api.db_url, window_hours=1, window_rows=5), time.time()
    )
    assert len(frame) == 5
    assert set(frame[schema.ID_COLUMN]) == {a["customerID"] for a in answers}
    assert frame["score"].tolist() == pytest.approx([a["churn_probability"] for a in answers])


def test_new_champion_version_is_served_without_restart(
    live_api: LiveApi, mlflow_store: TrainedStore
) -> None:
    old = httpx.get(f"{live_api.url}/model").json()["version"]
    new = register_new_version(mlflow_store)
    assert new != old

    def serving_new() -> bool:
        response = httpx.post(f"{live_api.url}/predict", json=CUSTOMER)
        return response.status_code == 200 and response.json()["model_version"] == new

    wait_until(serving_new, 30, f"the API to serve version {new}")
    assert httpx.get(f"{live_api.url}/model").json()["version"] == new
    # The swap serves the new version first, then the poller logs it and sets the gauge.
    info = f'churn_api_model_info{{model="{mlflow_store.model_name}",version="{new}"}} 1.0'
    wait_until(
        lambda: info in httpx.get(f"{live_api.url}/metrics").text, 30, "the new model's info"
    )
    switched = f"switched model {mlflow_store.model_name} from version {old} to version {new}"
    wait_until(lambda: switched in live_api.process.output(), 30, "the switch in the log")
    assert live_api.process.alive()


def test_without_a_model_the_process_answers_503(modelless_api: LiveApi) -> None:
    api = modelless_api
    health = httpx.get(f"{api.url}/health")
    assert health.status_code == 503
    assert health.json()["status"] == "unavailable"
    assert "does not exist" in health.json()["model_error"]
    predict = httpx.post(f"{api.url}/predict", json=CUSTOMER)
    assert predict.status_code == 503
    assert "no model is being served" in predict.json()["detail"]
    assert api.process.alive()


def test_sigterm_shuts_down_gracefully(tmp_path: Path) -> None:
    raw = {"data": {"current": {"url": f"sqlite:///{tmp_path / 'predictions.db'}"}}}
    api = start_api(tmp_path, raw, code=SERVE_WITHOUT_REGISTRY)
    assert httpx.get(f"{api.url}/health").status_code == 503
    status = api.process.stop()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught.
    assert status in (0, -15), status
    output = api.process.log_path.read_text()
    assert "Application shutdown complete" in output
    assert "Traceback" not in output
