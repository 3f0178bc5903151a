"""The Streamlit prediction form: its pure helpers, and the page run by Streamlit's
AppTest against the real prediction API (a uvicorn process over a real MLflow store),
against no API at all, and against a stand-in API that answers 422."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import httpx  # noqa: E402
import pandas as pd  # noqa: E402

from exporter.config import parse_config  # noqa: E402
from exporter.domain import schema  # noqa: E402
from exporter.ui import explain, form  # noqa: E402
from exporter.ui.apiclient import unlogged_batch_in_spec  # noqa: E402
from exporter.ui.launch import CONFIG_JSON_ENV, load_ui_config, streamlit_command  # noqa: E402

from .api_fixtures import LiveApi, count_rows  # noqa: E402
from .support import free_port  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]

APP = Path(__file__).resolve().parents[1] / "exporter" / "ui" / "app.py"
#: Seconds one script run may take (the first imports Streamlit, pandas and MLflow).
RUN_TIMEOUT = 120


# --------------------------------------------------------------------- pure helpers


def test_reference_defaults_are_modes_and_medians_kept_consistent() -> None:
    frame = pd.DataFrame(
        {
            "gender": ["Female", "Female", "Male"],
            "SeniorCitizen": [0, 1, 1],
            "tenure": [1, 10, 40],
            "PhoneService": ["No", "Yes", "Yes"],
            "MultipleLines": [schema.NO_PHONE, "Yes", "Yes"],
            # Most customers have no internet, but those who do mostly have OnlineSecurity.
            "InternetService": ["No", "No", "DSL"],
            "OnlineSecurity": [schema.NO_INTERNET, schema.NO_INTERNET, "Yes"],
            "MonthlyCharges": [20.0, 30.0, 100.0],
            "TotalCharges": [20.0, None, 4000.0],
        }
    )
    ref = form.reference_from_frame(frame, "test frame")
    assert ref.typical["gender"] == "Female"
    assert ref.typical["SeniorCitizen"] == 1
    assert ref.typical["tenure"] == 10
    assert ref.typical["MonthlyCharges"] == 30.0
    assert ref.typical["TotalCharges"] == 2010.0  # median ignores the blank
    assert ref.typical["MultipleLines"] == "Yes"
    assert ref.typical["InternetService"] == "No"
    assert all(ref.typical[a] == schema.NO_INTERNET for a in schema.INTERNET_ADDONS)
    assert ref.with_service["OnlineSecurity"] == "Yes"
    assert ref.typical["Contract"] == form.BUILTIN_TYPICAL["Contract"]  # column absent

    customer = {**ref.typical, "InternetService": "Fiber optic"}
    fixed = form.consistent(customer, ref.with_service)
    assert fixed["OnlineSecurity"] == "Yes" and fixed["OnlineBackup"] == "No"
    assert form.options("OnlineSecurity", fixed) == schema.YES_NO
    assert form.options("OnlineSecurity", ref.typical) == (schema.NO_INTERNET,)


def test_missing_reference_falls_back_to_builtin_defaults(tmp_path: Path) -> None:
    ref = form.load_reference(tmp_path / "absent.parquet")
    assert ref.typical == form.BUILTIN_TYPICAL
    assert ref.note is not None and "absent.parquet" in ref.note


def test_counterfactuals_stay_valid_customers_and_sentences_read_well() -> None:
    ref = form.builtin_reference()
    customer = {
        **ref.typical,
        "InternetService": "No",
        **dict.fromkeys(schema.INTERNET_ADDONS, schema.NO_INTERNET),
        "Contract": "Two year",
    }
    variants = dict(explain.counterfactuals(customer, ref))
    assert set(variants) == {"InternetService", "Contract"}  # add-ons need internet
    assert variants["InternetService"]["InternetService"] == "Fiber optic"
    assert all(variants["InternetService"][a] == "No" for a in schema.INTERNET_ADDONS)

    effect = explain.Effect("Contract", "Month-to-month", "Two year", 0.1234)
    assert explain.sentence(effect) == (
        "Month-to-month contract raises the churn probability by 12 points compared "
        "with a typical customer's two-year contract."
    )
    small = explain.Effect("tenure", 1, 29, -0.031)
    assert explain.sentence(small) == (
        "Tenure of 1 month lowers the churn probability by 3.1 points compared with a "
        "typical customer's tenure of 29 months."
    )
    charges = explain.Effect("MonthlyCharges", 99.5, 70.35, 0.05)
    assert explain.sentence(charges).startswith(
        "Monthly charges of $99.50 raise the churn probability by 5.0 points"
    )
    assert explain.top_sentences([explain.Effect("gender", "Male", "Female", 0.001)]) == []


@pytest.mark.parametrize(
    ("p", "t", "level"),
    [(0.41, 0.4, "low"), (0.55, 0.4, "medium"), (0.95, 0.4, "high"), (0.05, 0.4, "high")],
)
def test_confidence_is_the_distance_from_the_threshold(p: float, t: float, level: str) -> None:
    assert explain.confidence(p, t).level == level


def test_launch_runs_streamlit_headless_without_usage_stats_and_passes_the_config(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    command = streamlit_command("127.0.0.1", 8599)
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    assert command[2:5] == ["streamlit", "run", str(APP)]
    assert flags["--server.headless"] == "true"
    assert flags["--browser.gatherUsageStats"] == "false"
    assert flags["--server.port"] == "8599" and flags["--server.address"] == "127.0.0.1"
    config = parse_config({"api": {"url": "http://api:8000"}, "model": {"name": "m"}})
    monkeypatch.setenv(CONFIG_JSON_ENV, config.model_dump_json())
    assert load_ui_config() == config


def test_the_unusual_warning_states_score_and_cutoff_only_when_unusual() -> None:
    assert explain.unusual_warning(True, 3.781, 2.7612) == (
        "This customer is unlike the customers the model was trained on (anomaly score "
        "3.78, cut-off 2.76): treat the prediction with care."
    )
    assert explain.unusual_warning(True, 3.781, None) == (
        "This customer is unlike the customers the model was trained on (anomaly score "
        "3.78): treat the prediction with care."
    )
    assert explain.unusual_warning(False, 1.2, 2.76) is None
    assert explain.unusual_warning(None, None, None) is None


def _answer(**fields: Any) -> dict[str, Any]:
    return {
        "prediction_id": "p",
        "customerID": None,
        "churn_probability": 0.25,
        "predicted": 0,
        "churn": "No",
        "threshold": 0.4,
        "model_name": "churn-model",
        "model_version": "3",
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"anomaly_score": 3.5, "unusual": True, "anomaly_cutoff": 2.5}, (3.5, True, 2.5)),
        ({"anomaly_score": None, "unusual": None, "anomaly_cutoff": None}, (None, None, None)),
        ({}, (None, None, None)),  # an API that predates the fields
    ],
)
def test_the_client_reads_the_anomaly_fields(
    fields: dict[str, Any], expected: tuple[Any, ...]
) -> None:
    from exporter.ui.apiclient import ApiClient

    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=_answer(**fields)))
    result = ApiClient("http://api.invalid", transport=transport).predict({})
    assert (result.anomaly_score, result.unusual, result.anomaly_cutoff) == expected
    assert result.churn_probability == 0.25


def test_unlogged_batch_is_detected_from_the_openapi_document() -> None:
    param = {"name": "log", "in": "query", "schema": {"type": "boolean"}}
    assert unlogged_batch_in_spec({"paths": {"/predict/batch": {"post": {"parameters": [param]}}}})
    assert not unlogged_batch_in_spec({"paths": {"/predict/batch": {"post": {}}}})
    assert not unlogged_batch_in_spec({})


# ----------------------------------------------------------------------- the page


def _app(monkeypatch: pytest.MonkeyPatch, api_url: str, config: dict[str, Any]) -> Any:
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CHURN_API_URL", api_url)
    monkeypatch.setenv(CONFIG_JSON_ENV, json.dumps(config))
    at = AppTest.from_file(str(APP), default_timeout=RUN_TIMEOUT).run()
    assert not at.exception
    return at


def _text(at: Any) -> str:
    return "\n".join(str(m.value) for m in at.markdown)


@pytest.mark.integration
@pytest.mark.slow
def test_submitting_shows_what_the_api_answers_for_the_same_input(
    monkeypatch: pytest.MonkeyPatch, live_api: LiveApi
) -> None:
    import yaml

    raw = yaml.safe_load(live_api.config_path.read_text())
    at = _app(monkeypatch, live_api.url, raw)
    reference = form.load_reference(raw["data"]["reference_path"])
    assert at.selectbox(key="in_Contract").value == reference.typical["Contract"]

    at.selectbox(key="in_InternetService").select("No").run()
    addon = at.selectbox(key="in_OnlineSecurity")
    assert addon.disabled and addon.value == schema.NO_INTERNET
    at.selectbox(key="in_Contract").select("One year")
    at.selectbox(key="in_SeniorCitizen").select(1)
    at.selectbox(key="in_PaymentMethod").select("Mailed check")
    at.number_input(key="in_tenure").set_value(5)
    at.number_input(key="in_MonthlyCharges").set_value(25.5).run()
    assert at.number_input(key="in_TotalCharges").value == pytest.approx(127.5)

    logged = count_rows(live_api.db_url)
    at.button(key="predict").click().run()
    assert not at.exception and not at.error

    expected = form.customer_payload(
        form.consistent(
            {
                **reference.typical,
                "InternetService": "No",
                "Contract": "One year",
                "SeniorCitizen": 1,
                "PaymentMethod": "Mailed check",
                "tenure": 5,
                "MonthlyCharges": 25.5,
                "TotalCharges": 127.5,
            },
            reference.with_service,
        )
    )
    api = httpx.post(f"{live_api.url}/predict", json=expected, timeout=30).json()
    outcome = at.session_state["outcome"]
    assert outcome.payload == expected
    assert outcome.prediction.churn_probability == pytest.approx(api["churn_probability"], abs=1e-9)
    text = _text(at)
    assert f"Churn probability **{api['churn_probability']:.4f}**" in text
    assert f"threshold **{api['threshold']:.4f}**" in text
    assert at.metric[0].value == f"{api['churn_probability']:.1%}"
    assert at.metric[2].value == f"{api['model_name']} v{api['model_version']}"
    assert "confidence: the probability is" in text
    # The what-if variants were scored without entering the prediction log: the page's
    # request and the test's own are the only new rows.
    assert count_rows(live_api.db_url) == logged + 2
    assert "compared with a typical customer's" in text
    assert at.get("vega_lite_chart"), "the importance chart is missing"


def test_api_down_says_so_and_keeps_the_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = {"data": {"reference_path": str(tmp_path / "none.parquet")}}
    at = _app(monkeypatch, f"http://127.0.0.1:{free_port()}", config)
    at.number_input(key="in_tenure").set_value(7)
    at.selectbox(key="in_Contract").select("Two year").run()
    at.button(key="predict").click().run()
    assert not at.exception
    assert len(at.error) == 1 and "is not reachable" in at.error[0].value
    assert at.number_input(key="in_tenure").value == 7
    assert at.selectbox(key="in_Contract").value == "Two year"
    assert not at.metric


class _Rejecting(BaseHTTPRequestHandler):
    """Answers every POST as the API answers an invalid field."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.dumps(
            {
                "detail": [{"type": "less_than_equal", "loc": ["body", "tenure"], "msg": "..."}],
                "message": "1 invalid field: tenure: Input should be less than or equal to 72",
            }
        ).encode()
        self.send_response(422)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def rejecting_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rejecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_422_names_the_field_and_keeps_the_input(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rejecting_api: str
) -> None:
    config = {"data": {"reference_path": str(tmp_path / "none.parquet")}}
    at = _app(monkeypatch, rejecting_api, config)
    at.number_input(key="in_tenure").set_value(12).run()
    at.button(key="predict").click().run()
    assert not at.exception
    assert len(at.error) == 1
    message = at.error[0].value
    assert "rejected the input (HTTP 422)" in message and "tenure" in message
    assert at.number_input(key="in_tenure").value == 12
