"""Security: TLS and basic auth on the prediction API, the body limit, where the model
comes from, no secret in the repository, and none in logs or metrics of a running
API, exporter and Alertmanager.
"""

from __future__ import annotations

import base64
import re
import secrets
import shutil
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import bcrypt  # noqa: E402
import httpx  # noqa: E402
import yaml  # noqa: E402

from exporter.config import parse_config  # noqa: E402

from ..api_fixtures import CUSTOMER, SERVE, TrainedStore, count_rows, customers  # noqa: E402
from ..support import REPO, Process, churn_monitor, free_port, wait_until  # noqa: E402
from ..test_webconfig import self_signed  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]

USER = "scorer"


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def write_web_config(tmp: Path, password: str) -> tuple[Path, Path]:
    """A web config with TLS (self-signed for 127.0.0.1) and one bcrypt user; returns
    (web config, certificate)."""
    cert, key = self_signed(tmp)
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=6)).decode()
    path = tmp / "web.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
                "basic_auth_users": {USER: hashed},
            }
        )
    )
    return path, cert


@dataclass
class SecuredApi:
    url: str
    password: str
    cert: Path
    db_url: str
    process: Process
    workdir: Path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self.tls(), timeout=30, **kwargs)

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="module")
def secured_api(
    mlflow_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredApi]:
    """`serve_api` (as `churn-monitor api` runs it) with TLS and basic auth, over the
    real champion; its password is random, so finding it anywhere means it leaked."""
    tmp = tmp_path_factory.mktemp("secured-api")
    password = secrets.token_urlsafe(24)
    web, cert = write_web_config(tmp, password)
    db_url = f"sqlite:///{tmp / 'predictions.db'}"
    raw = {
        **mlflow_store.config_raw,
        "data": {**mlflow_store.config_raw["data"], "current": {"url": db_url}},
        "api": {"web_config_file": str(web), "max_body_bytes": 50_000, "max_batch": 100},
    }
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    port = free_port()
    process = Process(
        [sys.executable, "-c", SERVE, str(port)],
        tmp / "api.log",
        cwd=REPO,
        env={"CHURN_MONITOR_CONFIG": str(config_path), "LOG_LEVEL": "INFO"},
    )
    api = SecuredApi(f"https://127.0.0.1:{port}", password, cert, db_url, process, tmp)

    def healthy() -> bool:
        if not process.alive():
            raise AssertionError(f"the API exited:\n{process.output()}")
        with api.client() as http:
            return http.get("/health").status_code == 200

    try:
        wait_until(healthy, 180, "the TLS API to serve the champion")
        yield api
    finally:
        process.stop()


@pytest.mark.integration
@pytest.mark.slow
def test_api_tls_and_basic_auth(secured_api: SecuredApi, reliability: Any) -> None:
    api = secured_api
    good = basic(USER, api.password)
    with api.client() as http:
        health = http.get("/health")
        anonymous = {path: http.get(path) for path in ("/model", "/metrics", "/openapi.json")}
        predict_anon = http.post("/predict", json=CUSTOMER)
        wrong = http.post("/predict", json=CUSTOMER, headers=basic(USER, "not-the-password"))
        stranger = http.post("/predict", json=CUSTOMER, headers=basic("nobody", api.password))
        malformed = http.post(
            "/predict", json=CUSTOMER, headers={"Authorization": "Basic !!!not-base64"}
        )
        too_long = http.post("/predict", json=CUSTOMER, headers=basic(USER, "x" * 100))
        right = http.post("/predict", json=CUSTOMER, headers=good)
        again = http.post("/predict/batch", json={"customers": customers(3, seed=5)}, headers=good)
        model = http.get("/model", headers=good)
    assert health.status_code == 200  # liveness stays open
    refused = [*anonymous.values(), predict_anon, wrong, stranger, malformed, too_long]
    for response in refused:
        assert response.status_code == 401, (response.request.url, response.text)
        assert response.headers["www-authenticate"].startswith("Basic")
        assert response.json()["detail"].startswith("authentication required")
    assert right.status_code == 200, right.text
    assert again.status_code == 200, again.text
    assert model.status_code == 200
    assert count_rows(api.db_url) == 4  # only the authenticated predictions were logged

    # TLS only: plain HTTP on the same port gets no HTTP answer.
    with pytest.raises(httpx.HTTPError):
        httpx.get(api.url.replace("https://", "http://") + "/health", timeout=5)
    # An untrusted certificate is refused by a verifying client.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{api.url}/health", timeout=5)

    reliability.record(
        "API with TLS and basic auth (api.web_config_file: self-signed certificate, bcrypt user)",
        "security",
        "401 with WWW-Authenticate: Basic without or with wrong credentials, 200 with "
        "the right ones; /health open; HTTPS only",
        f"{len(refused)} refused requests (none, wrong password, unknown user, malformed "
        "header, a 100-byte password; /model, /metrics, /openapi.json, /predict): all 401 "
        "JSON; authenticated /predict, /predict/batch, /model: 200; 4 rows logged, all "
        "authenticated; /health 200 anonymous; plain HTTP and unverified TLS refused",
    )


@pytest.mark.integration
@pytest.mark.slow
def test_body_size_limit(secured_api: SecuredApi, reliability: Any) -> None:
    api = secured_api
    good = basic(USER, api.password)
    before = count_rows(api.db_url)
    big = b'{"customers": [' + b" " * 60_000 + b"]}"

    def chunks() -> Iterator[bytes]:
        for _ in range(60):
            yield b" " * 1_000

    with api.client() as http:
        anonymous = http.post(
            "/predict/batch", content=big, headers={"content-type": "application/json"}
        )
        declared = http.post(
            "/predict/batch",
            content=big,
            headers={**good, "content-type": "application/json"},
        )
        chunked = http.post(
            "/predict/batch",
            content=chunks(),
            headers={**good, "content-type": "application/json"},
        )
    assert anonymous.status_code == 401  # refused before the body is read
    for response in (declared, chunked):
        assert response.status_code == 413, response.text
        assert "api.max_body_bytes" in response.json()["detail"]
    assert "content-length" not in chunked.request.headers
    assert count_rows(api.db_url) == before
    reliability.record(
        "request body over api.max_body_bytes (50,000 bytes here)",
        "security",
        "413 before parsing, whether Content-Length is declared or the body is chunked; "
        "nothing logged",
        "60 kB with Content-Length: 413; 60 kB chunked (no Content-Length): 413 once the "
        "limit is passed; same body without credentials: 401 first; rows unchanged",
    )


@pytest.mark.integration
@pytest.mark.slow
def test_bad_api_web_config_exits_2_before_starting(tmp_path: Path, reliability: Any) -> None:
    from exporter.api import serve_api
    from exporter.config import ConfigError

    def config_for(workdir: Path, text: str | None) -> Path:
        workdir.mkdir()
        web = workdir / "web.yml"
        if text is not None:
            web.write_text(text)
        config = workdir / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "api": {"web_config_file": str(web)},
                    "data": {"current": {"url": f"sqlite:///{workdir / 'p.db'}"}},
                }
            )
        )
        return config

    # Through the command line: exit 2, one line, nothing written.
    workdir = tmp_path / "absent"
    config = config_for(workdir, None)
    result = subprocess.run(
        churn_monitor("api", "--config", str(config), "--port", str(free_port())),
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"churn-monitor: error: api.web_config_file: cannot read {workdir / 'web.yml'}: "
        "No such file or directory"
    ]
    assert sorted(p.name for p in workdir.iterdir()) == ["config.yaml"]

    # serve_api raises the ConfigError that cli.main turns into exit 2, before it
    # creates the app (no log database written).
    cases = {
        "plaintext password": (
            "basic_auth_users:\n  alice: hunter2\n",
            "api.web_config_file: basic_auth_users: alice: expected a bcrypt hash",
        ),
        "missing key file": (
            "tls_server_config:\n  cert_file: /nope.crt\n",
            "api.web_config_file: tls_server_config.key_file: Field required",
        ),
        "unloadable certificate": (
            "tls_server_config:\n  cert_file: /nope.crt\n  key_file: /nope.key\n",
            "api.web_config_file: tls_server_config: ",
        ),
    }
    for name, (text, message) in cases.items():
        workdir = tmp_path / name.replace(" ", "-")
        config = config_for(workdir, text)
        with pytest.raises(ConfigError) as raised:
            serve_api(parse_config(yaml.safe_load(config.read_text())), "127.0.0.1", 0)
        assert str(raised.value).startswith(message), (name, str(raised.value))
        assert not (workdir / "p.db").exists(), name
    reliability.record(
        "bad api.web_config_file (absent, plaintext password, incomplete TLS section, "
        "certificate that does not load)",
        "security",
        "exit 2 with one line naming the field, before anything starts or is written",
        "`churn-monitor api`: exit 2, `churn-monitor: error: api.web_config_file: cannot "
        "read …`, no file created; the other 3 raise ConfigError `api.web_config_file: …` "
        "from serve_api before the app exists (cli.main: exit 2)",
    )


# ------------------------------------------------------------- secrets in logs, metrics


@pytest.mark.integration
@pytest.mark.slow
def test_no_secret_in_logs_or_metrics(
    secured_api: SecuredApi,
    tmp_path: Path,
    require_binary: Any,
    reliability: Any,
) -> None:
    """API and exporter with basic auth (the same random password), Alertmanager with
    SMTP password and Slack URL files holding random values: after authenticated and
    refused traffic, none of the secrets is in a log, a scrape or Alertmanager's status."""
    from ..alerting_fixtures import Alertmanager, SmtpSink

    api = secured_api
    good = basic(USER, api.password)
    smtp_password = f"smtp-{secrets.token_urlsafe(18)}"
    slack_token = f"slack{secrets.token_hex(12)}"

    web = api.workdir / "web.yml"
    config = tmp_path / "exporter.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "exporter": {"web_config_file": str(web)},
                "performance_monitoring": {"enabled": False},
                "optuna": {"enabled": False},
                "history": {"url": f"sqlite:///{tmp_path / 'history.db'}"},
                "data": {"reference_path": str(tmp_path / "missing.parquet")},
                "reports": {"dir": str(tmp_path / "reports")},
            }
        )
    )
    port = free_port()
    exporter = Process(
        churn_monitor("run", "--mode", "continuous", "--port", str(port), "--config", str(config)),
        tmp_path / "exporter.log",
        cwd=tmp_path,
    )
    manager = None
    try:
        binary = require_binary("prometheus-alertmanager")
        smtp = SmtpSink(password=smtp_password)  # never started: only its address is used
        manager = Alertmanager(
            binary,
            tmp_path / "alertmanager",
            smtp=smtp,
            slack_url=f"http://127.0.0.1:{free_port()}/services/T0/B0/{slack_token}",
            webhook_url=f"http://127.0.0.1:{free_port()}/alerts/webhook",
        )
        exporter_url = f"https://127.0.0.1:{port}"
        with httpx.Client(verify=api.tls(), timeout=30) as http:
            wait_until(
                lambda: http.get(f"{exporter_url}/healthz").status_code == 200,
                180,
                "the exporter over TLS",
            )
            for _ in range(3):
                assert http.post(f"{api.url}/predict", json=CUSTOMER, headers=good).is_success
                assert http.get(f"{exporter_url}/metrics", headers=good).status_code == 200
                # refused attempts that carry the password under the wrong user
                stranger = basic("intruder", api.password)
                assert http.get(f"{api.url}/model", headers=stranger).status_code == 401
                assert http.get(f"{exporter_url}/metrics", headers=stranger).status_code == 401
            scrapes = {
                "API /metrics": http.get(f"{api.url}/metrics", headers=good).text,
                "exporter /metrics": http.get(f"{exporter_url}/metrics", headers=good).text,
            }
        scrapes["Alertmanager /metrics"] = httpx.get(f"{manager.url}/metrics").text
        scrapes["Alertmanager /api/v2/status"] = httpx.get(f"{manager.url}/api/v2/status").text
        assert "churn_api_requests_total" in scrapes["API /metrics"]
        assert "churn_exporter_build_info" in scrapes["exporter /metrics"]
        assert "smtp_auth_password_file" in scrapes["Alertmanager /api/v2/status"]
    finally:
        exporter.stop()
        if manager is not None:
            manager.stop()
    texts = {
        **scrapes,
        "API log": api.process.output(),
        "exporter log": exporter.output(),
        "Alertmanager log": manager.process.output(),
    }
    secret_values = {
        "web password": api.password,
        "SMTP password": smtp_password,
        "Slack URL token": slack_token,
    }
    # The Authorization header itself (base64 of user:password) must not show either.
    secret_values["Authorization header"] = good["Authorization"].split()[1]
    leaks = [
        f"{what} in {where}"
        for what, value in secret_values.items()
        for where, text in texts.items()
        if value in text
    ]
    assert not leaks, leaks
    reliability.record(
        "secrets in logs and metrics: API and exporter with basic auth (random password), "
        "Alertmanager with SMTP password and Slack URL files (random values)",
        "security",
        "no secret value (password, its Authorization header, SMTP password, Slack URL "
        "token) in any log, /metrics scrape or Alertmanager's /api/v2/status",
        f"{len(secret_values)} secrets × {len(texts)} texts searched "
        f"({', '.join(texts)}), after authenticated and refused requests: 0 found",
    )


# ------------------------------------------------------------------ the repository

#: A Slack incoming-webhook URL that is not an obvious placeholder (`...`, `XXX`, `<x>`).
SLACK_URL = re.compile(r"hooks\.slack\.com/services/(?!\.\.\.|X{3}|<|\$\{)[A-Za-z0-9]")
PRIVATE_KEY = re.compile("-----BEGIN [A-Z ]*" + "PRIVATE KEY-----")
AWS_KEY = re.compile(r"\bAKIA[0-9A-Z]{16}\b")
#: `password: value` / `PASSWORD=value` in config-like files (not Python source).
PASSWORD_VALUE = re.compile(
    r"""^[ \t]*(?:export[ \t]+)?["']?(?P<key>[\w.-]*pass(?:word|wd)[\w.-]*)["']?"""
    r"""[ \t]*[:=][ \t]*(?P<value>.*)$""",
    re.IGNORECASE | re.MULTILINE,
)
PLACEHOLDER = re.compile(
    r"""^(|null|~|""|''|\$\{[^}]*\}.*|<[^>]*>|\.\.\.|changeme|example|\*+)\s*(#.*)?$""",
    re.IGNORECASE,
)


def repository_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [REPO / name.decode() for name in listed if name]
    return [f for f in files if f.is_file()]


def secret_findings(files: list[Path]) -> list[str]:
    findings = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue  # binary files
        name = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        for pattern in (SLACK_URL, PRIVATE_KEY, AWS_KEY):
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                findings.append(f"{name}:{line}: {match.group(0)[:40]}")
        if path.suffix == ".py":
            continue  # variables named password are code, not configuration
        for match in PASSWORD_VALUE.finditer(text):
            key, value = match.group("key"), match.group("value").strip()
            if key.lower().endswith("_file") or PLACEHOLDER.match(value):
                continue
            line = text.count("\n", 0, match.start()) + 1
            findings.append(f"{name}:{line}: {key}: {value[:20]}")
    return findings


def test_scanner_finds_planted_secrets(tmp_path: Path) -> None:
    """The patterns catch what they are meant to (checked on planted files)."""
    planted = tmp_path / "planted.yml"
    url = "https://hooks.slack.com/" + "services/T01ABCD/B02EFGH/abcdefXYZ123"
    planted.write_text(
        f"slack_api_url: {url}\nsmtp_auth_password: hunter2\n"
        "smtp_auth_password_file: /run/secrets/smtp\nGF_ADMIN_PASSWORD=\n"
        "password: ${GF_ADMIN_PASSWORD}\n" + "-----BEGIN RSA " + "PRIVATE KEY-----\n"
    )
    found = secret_findings([planted])
    assert len(found) == 3, found
    assert any("hooks.slack.com" in f for f in found)
    assert any("smtp_auth_password: hunter2" in f for f in found)
    assert any("PRIVATE KEY" in f for f in found)


def test_no_secret_in_the_repository(reliability: Any) -> None:
    files = repository_files()
    assert len(files) > 50
    findings = secret_findings(files)
    assert not findings, findings
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "secrets/" in ignored
    reliability.record(
        "secrets committed to the repository (tracked and new, not ignored files)",
        "security",
        "no Slack webhook URL, private key, AWS key, or password value other than a "
        "placeholder or a `_file` path; .env and secrets/ git-ignored",
        f"{len(files)} files scanned: 0 findings (the scanner catches planted ones)",
    )


def test_compose_requires_the_grafana_password_from_env(reliability: Any) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]["environment"]
    value = grafana["GF_SECURITY_ADMIN_PASSWORD"]
    assert re.fullmatch(r"\$\{GF_ADMIN_PASSWORD:\?[^}]+\}", value), value
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^GF_ADMIN_PASSWORD=\s*$", example, re.MULTILINE)
    reliability.record(
        "Grafana admin password in docker-compose.yml",
        "security",
        "required from .env (`${GF_ADMIN_PASSWORD:?…}`), no default; .env.example empty",
        f"GF_SECURITY_ADMIN_PASSWORD: {value}; .env.example leaves it empty",
    )


# -------------------------------------------------------------- where the model comes from


def _store_copy(store: TrainedStore, tmp: Path) -> str:
    """A copy of the tracking database (artifacts shared, read only): tests may add
    versions and aliases without touching the session's store."""
    source = sqlite3.connect(store.config_raw["model"]["tracking_uri"].removeprefix("sqlite:///"))
    target = sqlite3.connect(tmp / "mlflow.db")
    source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{tmp / 'mlflow.db'}"


@pytest.mark.integration
@pytest.mark.slow
def test_model_comes_only_from_the_alias_or_local_path(
    mlflow_store: TrainedStore, tmp_path: Path, reliability: Any
) -> None:
    from fastapi.testclient import TestClient
    from mlflow import MlflowClient

    from exporter.api import create_app
    from exporter.model.registry import load_champion

    uri = _store_copy(mlflow_store, tmp_path)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = mlflow_store.model_name
    champion = client.get_model_version_by_alias(name, "champion").version
    source = client.get_model_version_download_uri(name, champion)
    newer = client.create_model_version(name, source, run_id=mlflow_store.run_id).version
    challenger = client.create_model_version(name, source, run_id=mlflow_store.run_id).version
    client.set_registered_model_alias(name, "challenger", challenger)
    base = {
        **mlflow_store.config_raw,
        "model": {"tracking_uri": uri},
        "data": {
            **mlflow_store.config_raw["data"],
            "current": {"url": f"sqlite:///{tmp_path / 'predictions.db'}"},
        },
    }

    # A newer version without the alias is not served; the configured alias is.
    config = parse_config(base)
    with TestClient(create_app(config)) as http:
        served = http.get("/model").json()["version"]
    assert served == str(champion) != str(newer)
    other = parse_config(
        {
            **base,
            "model": {
                "tracking_uri": uri,
                "registry_alias": "challenger",
                "challenger_alias": None,
            },
        }
    )
    assert load_champion(other).ref.version == str(challenger)

    # model.local_path: the directory is loaded, the registry is not consulted (its URI
    # names a store that does not exist, and it is not created).
    import mlflow.artifacts

    local = tmp_path / "deployed"
    local.mkdir()
    model_dir = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, champion),
            dst_path=str(local),
            tracking_uri=uri,
        )
    )
    shutil.copy(mlflow_store.root / "baseline.json", model_dir.parent / "baseline.json")
    absent = tmp_path / "no-registry" / "mlflow.db"
    offline = parse_config(
        {**base, "model": {"tracking_uri": f"sqlite:///{absent}", "local_path": str(model_dir)}}
    )
    with TestClient(create_app(offline)) as http:
        info = http.get("/model").json()
        scored = http.post("/predict", json=CUSTOMER)
    assert scored.status_code == 200, scored.text
    assert info["run_id"] == mlflow_store.run_id
    assert not absent.exists()
    reliability.record(
        "where the served model comes from",
        "security",
        "only the version the configured alias points at, or model.local_path; a newer "
        "unaliased version is never picked up; local_path never touches the registry",
        f"alias champion → version {champion} served while versions {newer} (no alias) and "
        f"{challenger} (@challenger) exist; registry_alias challenger → {challenger}; "
        "local_path served with a tracking URI to an absent store (not created)",
    )
