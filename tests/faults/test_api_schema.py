"""The API's OpenAPI document says what the API enforces: schemathesis with every check
against a live API finds no difference between the two.

Each case starts a real uvicorn process (``serve_api``, as ``churn-monitor api`` runs
it) and runs the schemathesis command line, ``schemathesis run --checks all``, against
its ``/openapi.json``: all four phases (examples, coverage, fuzzing, stateful), with
derandomized generation, no example database, one worker and a fixed number of
examples per operation, so a run is repeatable and bounded. The cases: the trained
champion served openly; the same behind basic auth (the document declares the scheme
and the 401s); and no model at all (the declared 503s).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import bcrypt  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from ..api_fixtures import LiveApi, TrainedStore, start_api  # noqa: E402
from ..support import wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: The batch limit of the served APIs: small, so over-limit batches are cheap to send.
MAX_BATCH = 20
#: Examples per operation and phase (schemathesis' --max-examples).
MAX_EXAMPLES = 50
#: Fewer for the variants, whose extra statuses show within a few examples.
VARIANT_EXAMPLES = 20
#: Bound of one schemathesis run; a run takes 5-15 s on 2 cores.
RUN_TIMEOUT = 300
USER = "scorer"
OPERATIONS = {
    "POST /predict",
    "POST /predict/batch",
    "POST /feedback",
    "GET /health",
    "GET /model",
    "GET /metrics",
}


def _schemathesis_config() -> str:
    """schemathesis.toml: the statuses `negative_data_rejection` accepts as a rejection
    of a schema-violating request are a fixed list, not read from the document; POST
    /predict/batch declares 413 for more customers than ``maxItems`` (api.max_batch),
    so that operation, and only it, adds 413 to the list."""
    from schemathesis.config import ChecksConfig

    statuses = [*ChecksConfig().negative_data_rejection.expected_statuses, "413"]
    return (
        "[[operations]]\n"
        'include-name = "POST /predict/batch"\n'
        f"checks.negative_data_rejection.expected-statuses = {json.dumps(statuses)}\n"
    )


@dataclass(frozen=True)
class Run:
    """One finished schemathesis run: its report and what the API counted meanwhile."""

    report: dict[str, Any]
    output: str
    statuses: Counter[int]
    seconds: float

    @property
    def cases(self) -> int:
        return int(self.report["test_cases"]["generated"])

    def shown_statuses(self) -> str:
        return ", ".join(f"{n} × {code}" for code, n in sorted(self.statuses.items()))


def _answered(api: LiveApi, auth: tuple[str, str] | None) -> Counter[int]:
    """Answers by status so far, from the API's own ``churn_api_requests_total`` (these
    scrapes and schemathesis' fetch of the document included)."""
    text = httpx.get(f"{api.url}/metrics", auth=auth, timeout=10).text
    counts: Counter[int] = Counter()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "churn_api_requests_total":
                counts[int(sample.labels["status"])] += int(sample.value)
    return counts


def _run_schemathesis(
    api: LiveApi,
    workdir: Path,
    max_examples: int,
    *,
    auth: tuple[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> Run:
    """``schemathesis run --checks all`` against `api`; fails with its output unless it
    found nothing."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "schemathesis.toml"
    config.write_text(_schemathesis_config())
    report = workdir / "report.json"
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(config),
        "run",
        f"{api.url}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        str(max_examples),
        "--generation-deterministic",
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--no-color",
        "--report",
        "json",
        "--report-json-path",
        str(report),
        *(["--auth", f"{auth[0]}:{auth[1]}"] if auth else []),
        *extra,
    ]
    before = _answered(api, auth)
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    seconds = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"schemathesis exited {done.returncode}:\n{output[-12000:]}"
    data = json.loads(report.read_text())
    assert data["complete"] and data["stop_reason"] == "completed", data
    assert data["failures"] == [] and data["errors"] == [], output[-12000:]
    assert data["test_cases"]["with_failures"] == 0, data["test_cases"]
    assert data["operations"]["tested"] == len(OPERATIONS), data["operations"]
    phases = {name: phase["status"] for name, phase in data["phases"].items()}
    assert phases == dict.fromkeys(("examples", "coverage", "fuzzing", "stateful"), "success")
    return Run(data, output, _answered(api, auth) - before, seconds)


def _spec(api: LiveApi, auth: tuple[str, str] | None = None) -> dict[str, Any]:
    response = httpx.get(f"{api.url}/openapi.json", auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    spec: dict[str, Any] = response.json()
    labels = {f"{m.upper()} {p}" for p, item in spec["paths"].items() for m in item}
    assert labels == OPERATIONS, labels
    return spec


def _serve(store: TrainedStore, tmp: Path, api: dict[str, Any]) -> LiveApi:
    """`serve_api` over the champion of `store`, once /health says it serves it."""
    raw = {
        **store.config_raw,
        "data": {
            **store.config_raw["data"],
            "current": {"url": f"sqlite:///{tmp / 'predictions.db'}"},
        },
        "api": {"model_poll_seconds": 0.5, "max_batch": MAX_BATCH, **api},
    }
    live = start_api(tmp, raw)
    try:
        wait_until(
            lambda: httpx.get(f"{live.url}/health", timeout=2).status_code == 200,
            60,
            "the API to load the champion",
        )
    except BaseException:
        live.process.stop()
        raise
    return live


@pytest.fixture(scope="module")
def open_api(
    mlflow_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    live = _serve(mlflow_store, tmp_path_factory.mktemp("schema-api"), {})
    try:
        yield live
    finally:
        live.process.stop()
    assert "Traceback" not in live.process.output()


@pytest.fixture(scope="module")
def auth_api(
    mlflow_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApi, tuple[str, str]]]:
    """Basic auth (plain HTTP: TLS is test_security's), with a cheap bcrypt hash."""
    tmp = tmp_path_factory.mktemp("schema-auth-api")
    password = secrets.token_urlsafe(16)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    web = tmp / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {USER: hashed}}))
    live = _serve(mlflow_store, tmp, {"web_config_file": str(web)})
    try:
        yield live, (USER, password)
    finally:
        live.process.stop()
    assert "Traceback" not in live.process.output()


def test_schemathesis_all_checks_find_no_failure(
    open_api: LiveApi, tmp_path: Path, reliability: Any
) -> None:
    spec = _spec(open_api)
    feedback = spec["components"]["schemas"]["Feedback"]
    assert [b["required"] for b in feedback["oneOf"]] == [["prediction_id"], ["customerID"]]
    batch = spec["paths"]["/predict/batch"]["post"]
    assert "413" in batch["responses"], batch["responses"]
    assert (
        spec["components"]["schemas"]["BatchRequest"]["properties"]["customers"]["maxItems"]
        == MAX_BATCH
    )

    run = _run_schemathesis(open_api, tmp_path, MAX_EXAMPLES)

    assert {200, 201, 413, 422} <= set(run.statuses), run.statuses  # both rules were hit
    assert not any(code >= 500 for code in run.statuses), run.statuses
    reliability.record(
        "API against its own OpenAPI document: schemathesis run --checks all (examples, "
        f"coverage, fuzzing, stateful; {MAX_EXAMPLES} examples per operation, "
        f"deterministic) on a live API with the champion, api.max_batch {MAX_BATCH}",
        "bad input",
        "0 failures: the document states what the API enforces (feedback: exactly one of "
        "prediction_id and customerID, as oneOf; batch over maxItems: the declared 413) "
        "and every answer has a declared status, content type and body",
        f"{run.cases} test cases on {len(OPERATIONS)} operations in {run.seconds:.0f} s, "
        f"0 failures; the API answered {run.shown_statuses()}",
    )


def test_schemathesis_all_checks_behind_basic_auth(
    auth_api: tuple[LiveApi, tuple[str, str]], tmp_path: Path, reliability: Any
) -> None:
    api, credentials = auth_api
    spec = _spec(api, credentials)
    assert spec["components"]["securitySchemes"]["basicAuth"]["scheme"] == "basic"
    assert spec["paths"]["/health"]["get"]["security"] == []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            declared = "401" in operation["responses"]
            assert declared == (path != "/health"), (method, path)

    # With --auth every request carries the credentials, so a generated negative case
    # "Authorization header missing" would be sent with it and misreported; the
    # ignored_auth check sends the requests without and with wrong credentials.
    run = _run_schemathesis(
        api,
        tmp_path,
        VARIANT_EXAMPLES,
        auth=credentials,
        extra=("--generation-with-security-parameters", "false"),
    )

    assert {200, 401} <= set(run.statuses), run.statuses
    assert not any(code >= 500 for code in run.statuses), run.statuses
    reliability.record(
        "API behind basic auth against its own OpenAPI document: schemathesis run "
        f"--checks all --auth ({VARIANT_EXAMPLES} examples per operation, deterministic)",
        "security",
        "0 failures: the document declares the basic scheme on every operation but "
        "/health and the 401 it answers without or with wrong credentials (ignored_auth)",
        f"{run.cases} test cases in {run.seconds:.0f} s, 0 failures; the API answered "
        f"{run.shown_statuses()}",
    )


def test_schemathesis_without_a_model_finds_only_declared_503s(
    modelless_api: LiveApi, tmp_path: Path, reliability: Any
) -> None:
    """`modelless_api` (api_fixtures): a tracking store that does not exist."""
    _spec(modelless_api)
    wait_until(
        lambda: httpx.get(f"{modelless_api.url}/health", timeout=2).status_code == 503,
        60,
        "/health to answer 503",
    )
    # Every scoring request is a 503 by design here, so not_a_server_error is left out;
    # every other check runs, status_code_conformance among them.
    run = _run_schemathesis(
        modelless_api,
        tmp_path,
        VARIANT_EXAMPLES,
        extra=("--exclude-checks", "not_a_server_error"),
    )

    assert 503 in run.statuses and 500 not in run.statuses, run.statuses
    reliability.record(
        "API without a model against its own OpenAPI document: schemathesis run "
        f"--checks all but not_a_server_error ({VARIANT_EXAMPLES} examples per operation)",
        "bad input",
        "0 failures: the 503 of /predict, /predict/batch, /model and /health is declared "
        "with its body",
        f"{run.cases} test cases in {run.seconds:.0f} s, 0 failures; the API answered "
        f"{run.shown_statuses()}",
    )
