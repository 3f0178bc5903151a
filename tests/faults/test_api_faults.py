"""Faults under the prediction API: the prediction log locked, moved away or replaced,
and the model registry unreachable when the API starts.

Each case runs a real uvicorn process (``serve_api`` with the config from
``$CHURN_MONITOR_CONFIG``) over a real SQLite log and a real MLflow store, and checks
the answer (status and JSON body), the rows in the log (a batch is all or nothing) and
the recovery once the fault is gone.
"""

from __future__ import annotations

import shutil
import sqlite3
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import httpx  # noqa: E402

from ..api_fixtures import (  # noqa: E402
    CUSTOMER,
    LiveApi,
    TrainedStore,
    count_rows,
    customers,
    start_api,
)
from ..support import free_port, wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: predlog.DEFAULT_BUSY_TIMEOUT_MS: how long a write waits for a lock.
BUSY_TIMEOUT_S = 5.0


def _json_error(response: httpx.Response) -> str:
    """The `detail` of a JSON error body; fails on anything else (an HTML page, a trace)."""
    assert response.headers["content-type"].startswith("application/json"), response.text
    assert "Traceback" not in response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    return detail


@pytest.fixture(scope="module")
def api(mlflow_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """The champion served over a log in a folder of its own (``data/``), which the
    tests lock, move away and replace."""
    tmp = tmp_path_factory.mktemp("api-faults")
    raw = {
        **mlflow_store.config_raw,
        "data": {
            **mlflow_store.config_raw["data"],
            "current": {"url": f"sqlite:///{tmp / 'data' / 'predictions.db'}"},
        },
        "api": {"model_poll_seconds": 0.5, "max_batch": 100},
    }
    live = start_api(tmp, raw)
    try:
        wait_until(
            lambda: httpx.get(f"{live.url}/health", timeout=2).status_code == 200,
            60,
            "the API to load the champion",
        )
        yield live
    finally:
        live.process.stop()
    assert "Traceback" not in live.process.output()


def _db_path(api: LiveApi) -> Path:
    return Path(api.db_url.removeprefix("sqlite:///"))


def _batch(api: LiveApi, n: int, seed: int, **params: str) -> httpx.Response:
    return httpx.post(
        f"{api.url}/predict/batch",
        json={"customers": customers(n, seed=seed, id_offset=seed * 1000)},
        params=params,
        timeout=60,
    )


def test_locked_log_answers_503_writes_nothing_and_recovers(api: LiveApi, reliability: Any) -> None:
    """Another connection holds the write lock (BEGIN EXCLUSIVE) past the busy timeout."""
    known = _batch(api, 1, seed=90).json()["predictions"][0]["prediction_id"]
    before = count_rows(api.db_url)
    holder = sqlite3.connect(_db_path(api), timeout=0, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    answers: dict[str, httpx.Response] = {}

    took: dict[str, float] = {}

    def call(name: str, send: Any) -> None:
        start = time.monotonic()
        answers[name] = send()
        took[name] = time.monotonic() - start

    calls = {
        "batch": lambda: _batch(api, 20, seed=91),
        "single": lambda: httpx.post(f"{api.url}/predict", json=CUSTOMER, timeout=60),
        "feedback": lambda: httpx.post(
            f"{api.url}/feedback", json={"prediction_id": known, "actual": 1}, timeout=60
        ),
        "unlogged": lambda: _batch(api, 5, seed=92, log="false"),
    }
    try:
        threads = [threading.Thread(target=call, args=item) for item in calls.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        health = httpx.get(f"{api.url}/health", timeout=10)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    for name in ("batch", "single", "feedback"):
        assert answers[name].status_code == 503, (name, answers[name].text)
        detail = _json_error(answers[name])
        assert detail.startswith("prediction log unavailable: database is locked"), detail
    # Scoring without logging does not need the log.
    assert answers["unlogged"].status_code == 200, answers["unlogged"].text
    assert health.status_code == 200  # readers are not blocked in WAL mode
    assert count_rows(api.db_url) == before  # nothing of the 20-customer batch

    recovered = _batch(api, 20, seed=93)
    assert recovered.status_code == 200, recovered.text
    assert count_rows(api.db_url) == before + 20
    reliability.record(
        "prediction log locked: another connection holds BEGIN EXCLUSIVE past the "
        f"{BUSY_TIMEOUT_S:.0f} s busy timeout",
        "fault",
        "503 with a JSON body naming the cause; no partial batch; log=false scoring "
        "unaffected; 200 again once the lock is released",
        "batch of 20, single and feedback sent together: 503 `prediction log unavailable: "
        f"database is locked` after {min(took.values()):.1f}-{max(took.values()):.1f} s (the "
        "scorer writes one micro-batch at a time, each waits the busy timeout); "
        "rows before = after (0 of 20 written); log=false batch 200; /health 200 "
        "(reads unblocked); next batch 200 with its 20 rows",
    )


def test_log_folder_moved_away_answers_503_and_recovers_when_back(
    api: LiveApi, reliability: Any
) -> None:
    """The folder holding the log disappears (an unmounted volume) and comes back."""
    folder = _db_path(api).parent
    away = folder.with_name("data-away")
    before = count_rows(api.db_url)
    folder.rename(away)
    try:
        batch = _batch(api, 20, seed=94)
        health = httpx.get(f"{api.url}/health", timeout=10)
        unlogged = _batch(api, 3, seed=95, log="false")
    finally:
        away.rename(folder)
    assert batch.status_code == 503, batch.text
    detail = _json_error(batch)
    assert detail.startswith("prediction log unavailable:") and "is missing" in detail, detail
    assert health.status_code == 503
    assert health.json()["database"] == "unavailable"
    assert "is missing" in health.json()["database_error"]
    assert unlogged.status_code == 200, unlogged.text
    # Nothing went into the moved file through the connections opened before.
    assert count_rows(api.db_url) == before

    wait_until(lambda: _batch(api, 1, seed=96).status_code == 200, 30, "the API to log again")
    after = _batch(api, 20, seed=97)
    assert after.status_code == 200, after.text
    assert count_rows(api.db_url) == before + 21
    assert httpx.get(f"{api.url}/health", timeout=10).status_code == 200
    reliability.record(
        "prediction log folder moved away (volume gone), then back",
        "fault",
        "503 with a JSON body naming the missing file, /health 503; no row written into "
        "the detached file; 200 again once the folder is back",
        f"batch of 20: 503 `{detail.replace(str(folder), '…/data')}`; /health 503 database "
        "unavailable; rows "
        "unchanged; log=false scoring 200; first write after the folder returned: 200, "
        "rows +21 for 21 predictions",
    )


def test_log_deleted_then_restored_from_a_backup(api: LiveApi, reliability: Any) -> None:
    """The log file is deleted, then a backup copy is put in its place (a new inode)."""
    path = _db_path(api)
    backup = path.with_name("backup.db")
    source = sqlite3.connect(path)
    target = sqlite3.connect(backup)
    source.backup(target)
    source.close()
    target.close()
    backed_up = count_rows(f"sqlite:///{backup}")
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    deleted = _batch(api, 20, seed=98)
    assert deleted.status_code == 503, deleted.text
    assert "is missing" in _json_error(deleted)
    assert not path.exists()  # the API did not create an empty log behind the operator

    shutil.move(backup, path)
    wait_until(lambda: _batch(api, 1, seed=99).status_code == 200, 30, "the restored log")
    after = _batch(api, 20, seed=100)
    assert after.status_code == 200, after.text
    assert count_rows(api.db_url) == backed_up + 21
    reliability.record(
        "prediction log file deleted, then a backup copy restored in its place",
        "fault",
        "503 while the file is missing (no empty log created behind the operator); the "
        "restored file is reopened and written to",
        f"batch of 20 while deleted: 503; restored file ({backed_up:,} rows) reopened on the "
        "next write: 200, and its rows grew by exactly the 21 predictions answered",
    )


def test_registry_missing_at_start_then_created(
    mlflow_store: TrainedStore, tmp_path: Path, reliability: Any
) -> None:
    """The tracking URI names a SQLite store that does not exist yet; later it does."""
    store = tmp_path / "registry" / "mlflow.db"
    raw = {
        **mlflow_store.config_raw,
        "model": {"tracking_uri": f"sqlite:///{store}"},
        "data": {
            **mlflow_store.config_raw["data"],
            "current": {"url": f"sqlite:///{tmp_path / 'predictions.db'}"},
        },
        "api": {"model_poll_seconds": 0.5},
    }
    api = start_api(tmp_path, raw)
    try:
        health = httpx.get(f"{api.url}/health", timeout=10)
        predict = httpx.post(f"{api.url}/predict", json=CUSTOMER, timeout=10)
        batch = _batch(api, 5, seed=101)
        assert health.status_code == 503
        assert health.headers["content-type"].startswith("application/json")
        reason = health.json()["model_error"]
        assert "does not exist" in reason and str(store) in reason, reason
        for response in (predict, batch):
            assert response.status_code == 503, response.text
            assert _json_error(response).startswith("no model is being served:")
        assert not store.exists()  # reported, never created empty
        assert count_rows(api.db_url) == 0

        store.parent.mkdir()
        source = sqlite3.connect(Path(mlflow_store.config_raw["model"]["tracking_uri"][10:]))
        target = sqlite3.connect(store)
        source.backup(target)
        source.close()
        target.close()
        wait_until(
            lambda: httpx.get(f"{api.url}/health", timeout=10).status_code == 200,
            60,
            "the API to load the champion once the store exists",
        )
        served = httpx.post(f"{api.url}/predict", json=CUSTOMER, timeout=10)
        assert served.status_code == 200, served.text
    finally:
        api.process.stop(60)
    assert api.process.popen.returncode in (0, -15)
    assert "Traceback" not in api.process.output()
    reliability.record(
        "model registry missing at API start (tracking URI names an absent SQLite store)",
        "fault",
        "the API starts, /health 503 with the reason, predictions 503 with a JSON body; "
        "serves once the store exists, without a restart",
        f"/health 503 `{reason.replace(str(tmp_path), '…')}`; /predict and /predict/batch "
        "503 `no model is "
        "being served: …`; no store created; champion loaded on the next poll after the "
        "store appeared, /predict 200",
    )


#: serve_api's app with a short start-up wait for the model (serve_api waits 30 s).
SERVE_SHORT_WAIT = textwrap.dedent(
    """
    import logging, sys
    import uvicorn
    from exporter.api import create_app
    from exporter.config import load_config
    logging.basicConfig(level="INFO")
    app = create_app(load_config(), model_wait_seconds=1.0)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None,
                timeout_graceful_shutdown=10)
    """
)


def test_registry_on_a_closed_port_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reliability: Any
) -> None:
    """The tracking URI is an HTTP server that is not there (connection refused).

    MLflow retries (here twice, with back-off: a few seconds); the API listens after
    its start-up wait regardless, reports the model as not loaded yet, then the reason.
    """
    closed = f"http://127.0.0.1:{free_port()}"
    raw = {
        "model": {"tracking_uri": closed},
        "data": {"current": {"url": f"sqlite:///{tmp_path / 'predictions.db'}"}},
        "api": {"model_poll_seconds": 30},
    }
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    started = time.monotonic()
    api = start_api(tmp_path, raw, code=SERVE_SHORT_WAIT)
    try:
        listening = time.monotonic() - started
        first = httpx.get(f"{api.url}/health", timeout=10)
        assert first.status_code == 503
        predict = httpx.post(f"{api.url}/predict", json=CUSTOMER, timeout=10)
        assert predict.status_code == 503
        assert _json_error(predict).startswith("no model is being served:")

        def reason() -> str | None:
            body = httpx.get(f"{api.url}/health", timeout=10).json()
            error = body["model_error"] or ""
            return error if "not been loaded yet" not in error else None

        why = wait_until(reason, 60, "the failed load's reason in /health")
        assert closed in why and "Connection refused" in why, why
        later = httpx.post(f"{api.url}/predict", json=CUSTOMER, timeout=10)
        assert later.status_code == 503
        assert "Connection refused" in _json_error(later)
    finally:
        stopping = time.monotonic()
        api.process.stop(60)
    stopped = time.monotonic() - stopping
    assert api.process.popen.returncode in (0, -15)
    output = api.process.output()
    assert "Traceback" not in output
    reliability.record(
        "model registry unreachable at API start (tracking URI on a closed port)",
        "fault",
        "the API listens after its start-up wait whatever MLflow's retries take; /health "
        "503 with the reason, predictions 503 with a JSON body; no traceback",
        f"listening {listening:.1f} s after launch (imports, then the 1 s start-up wait); "
        "/health 503 `the model has not been loaded yet`, then the reason "
        f"`{why[:45]}… Connection refused`; /predict 503 JSON; SIGTERM stopped it in "
        f"{stopped:.1f} s",
    )


def test_unlogged_batch_writes_no_row_and_counts_no_prediction(client: Any) -> None:
    """``POST /predict/batch?log=false`` (the form's what-if scoring): same answer
    shape, no row, no prediction metric; documented in the OpenAPI document."""
    from exporter.ui.apiclient import unlogged_batch_in_spec

    assert unlogged_batch_in_spec(client.get("/openapi.json").json())
    db = client.app.state.config.data.current.url
    body = {"customers": customers(5, seed=7)}
    unlogged = client.post("/predict/batch", params={"log": "false"}, json=body)
    logged = client.post("/predict/batch", json=body)
    assert unlogged.status_code == logged.status_code == 200, unlogged.text
    assert set(unlogged.json()) == set(logged.json())
    assert [p["churn_probability"] for p in unlogged.json()["predictions"]] == [
        p["churn_probability"] for p in logged.json()["predictions"]
    ]
    assert count_rows(db) == 5  # only the logged batch
    metrics = client.get("/metrics").text
    counted = sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("churn_api_predictions_total{")
    )
    assert counted == 5
    assert client.post("/predict/batch", params={"log": "maybe"}, json=body).status_code == 422
