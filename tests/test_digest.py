"""The scheduled digest: the exporter's digest job emails the period report through the
SMTP settings of an Alertmanager config, to a real SMTP server (the local sink of
`churn-monitor sinks`, aiosmtpd). The history holds a real drift run on the `sudden`
scenario. A relay that refuses marks the job failed while /metrics keeps answering."""

from __future__ import annotations

import email
import email.policy
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import ConfigError, MonitoringConfig, parse_config
from exporter.data import history, synthetic
from exporter.monitor.wiring import build_monitor, serve
from exporter.ops import promconfig
from exporter.ops.outbox import Outbox, Sinks
from exporter.report.digest import DigestError, send, smtp_settings

from .support import free_port, http_get, wait_until

pytestmark = pytest.mark.slow

DEADLINE = 120.0
RECIPIENT = "managers@example.com"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference, a `sudden` window and a history holding one drift run of it."""
    tmp = tmp_path_factory.mktemp("digest")
    synthetic.generate_customers(3000, seed=0).to_csv(tmp / "reference.csv", index=False)
    window = synthetic.generate_customers(600, seed=2, scenario="sudden", id_offset=10**6)
    window.to_csv(tmp / "window.csv", index=False)
    outcome = build_monitor(make_config(tmp, tmp / "unused.yml", digest=False)).run_once()
    assert outcome == {"drift": True}
    return tmp


def make_config(
    store: Path, alertmanager: Path, *, digest: bool = True, reports: Path | None = None
) -> MonitoringConfig:
    """The store's config; with `digest`, the exporter of the digest only (no drift
    run adds to the history while the digest reads it)."""
    return parse_config(
        {
            "data": {
                "reference_path": str(store / "reference.csv"),
                "current": {"kind": "file", "path": str(store / "window.csv")},
            },
            "data_drift_monitoring": {"enabled": not digest},
            "performance_monitoring": {"enabled": False},
            "optuna": {"enabled": False},
            "history": {"url": f"sqlite:///{store}/history.db"},
            "reports": {
                "dir": str(reports or store / "reports"),
                "html": False,
                "digest": {
                    "enabled": digest,
                    "to": [RECIPIENT],
                    "period_hours": 24,
                    "check_interval_minutes": 0.02,
                    "alertmanager_config": str(alertmanager),
                },
            },
        }
    )


def alertmanager_config(tmp: Path, smtp_port: int) -> Path:
    """The shipped alertmanager.yml pointed at a local SMTP port, as `up` renders it."""
    rendered = promconfig.to_local_sinks(
        promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG),
        smtp_smarthost=f"127.0.0.1:{smtp_port}",
        slack_url="http://127.0.0.1:9/slack",
    )
    return promconfig.write_config(rendered, tmp / "alertmanager.yml")


@pytest.fixture
def sinks(tmp_path: Path) -> Iterator[Sinks]:
    running = Sinks(Outbox(tmp_path / "outbox"), "127.0.0.1", free_port(), free_port()).start()
    yield running
    running.stop()


def scrape(port: int) -> dict[tuple[str, str], float]:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {
        (sample.name, sample.labels.get("task", "")): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


@pytest.fixture
def exporter() -> Iterator[Any]:
    """``start(config) -> port``: serve an in-process exporter built for continuous mode
    on a free port; stopped at the end."""
    running: list[tuple[threading.Thread, threading.Event]] = []

    def start(config: MonitoringConfig) -> int:
        port = free_port()
        monitor = build_monitor(config, continuous=True)
        stop = threading.Event()
        thread = threading.Thread(
            target=serve, args=(monitor, "127.0.0.1", port), kwargs={"stop": stop}, daemon=True
        )
        thread.start()
        running.append((thread, stop))
        return port

    yield start
    for thread, stop in running:
        stop.set()
        thread.join(30)


def test_the_digest_job_emails_the_period_report_once(
    store: Path, tmp_path: Path, sinks: Sinks, exporter: Any
) -> None:
    config = make_config(
        store, alertmanager_config(tmp_path, sinks.smtp_port), reports=tmp_path / "reports"
    )
    port = exporter(config)
    wait_until(lambda: sinks.outbox.messages("email"), DEADLINE, "the digest email")
    # Later checks find the digest not due yet: still one email.
    wait_until(
        lambda: scrape(port).get(("churn_exporter_job_runs_total", "digest"), 0) >= 3,
        DEADLINE,
        "two more digest checks",
    )
    metrics = scrape(port)
    assert metrics[("churn_exporter_job_success", "digest")] == 1.0
    assert metrics[("churn_exporter_job_failures_total", "digest")] == 0.0
    (stored,) = sinks.outbox.messages("email")
    message = email.message_from_bytes(stored.path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert message["To"] == RECIPIENT
    assert message["From"] == "churn-monitor@example.com"  # alertmanager.yml's smtp_from
    assert message["Subject"].startswith("churn-monitor digest churn-model: 1 of 1 drift runs")

    body = message.get_body(preferencelist=("html",))
    assert body is not None
    html = body.get_content()
    assert "Monitoring digest · churn-model" in html and "<svg" in html
    (drift,) = history_drift_rows(config)
    for feature in drift["drifted_columns"]:
        assert f">{feature}</td>" in html
    plain = message.get_body(preferencelist=("plain",))
    assert plain is not None and "Drift runs: 1, 1 with dataset drift." in plain.get_content()

    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/html"
    (kept,) = (tmp_path / "reports" / "digest_reports").glob("digest_report_*.html")
    assert attachment.get_filename() == kept.name
    report = kept.read_text(encoding="utf-8")
    assert attachment.get_content() == report  # byte for byte (base64)
    assert html.replace("\r\n", "\n").rstrip() == report.rstrip()  # as text travels


def history_drift_rows(config: MonitoringConfig) -> list[dict[str, Any]]:
    engine = history.open_history(config.history.url)
    try:
        rows = history.query(engine, "drift")
    finally:
        engine.dispose()
    return [{**row, "drifted_columns": yaml.safe_load(row["drifted_columns"])} for row in rows]


def test_a_refused_send_fails_the_job_and_the_exporter_keeps_serving(
    store: Path, tmp_path: Path, exporter: Any
) -> None:
    closed = free_port()  # nothing listens there
    config = make_config(store, alertmanager_config(tmp_path, closed), reports=tmp_path / "reports")
    port = exporter(config)
    wait_until(
        lambda: scrape(port).get(("churn_exporter_job_failures_total", "digest"), 0) >= 2,
        DEADLINE,
        "two failed digest checks",
    )
    metrics = scrape(port)  # the exporter still answers
    assert metrics[("churn_exporter_job_success", "digest")] == 0.0
    assert ("churn_exporter_build_info", "") in metrics
    assert not (tmp_path / "reports" / "digest_reports").exists()  # nothing counts as sent


def test_smtp_settings_follow_alertmanager(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "pw").write_bytes(b"s3cret\n")  # byte for byte, as Alertmanager
    config = tmp_path / "am.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {
                    "smtp_smarthost": "mail.example.com:587",
                    "smtp_from": "monitor@example.com",
                    "smtp_auth_username": "monitor",
                    "smtp_auth_password_file": "secrets/pw",
                }
            }
        )
    )
    settings = smtp_settings(config)
    assert (settings.host, settings.port) == ("mail.example.com", 587)
    assert settings.sender == "monitor@example.com"
    assert settings.password == "s3cret\n" and settings.username == "monitor"
    assert settings.require_tls is True

    config.write_text(yaml.safe_dump({"global": {"smtp_from": "a@b.c"}}))
    with pytest.raises(DigestError, match=r"global\.smtp_smarthost is not set"):
        smtp_settings(config)
    with pytest.raises(DigestError, match="cannot read"):
        smtp_settings(tmp_path / "missing.yml")


def test_required_tls_is_refused_by_a_relay_without_starttls(tmp_path: Path, sinks: Sinks) -> None:
    path = alertmanager_config(tmp_path, sinks.smtp_port)
    rendered = promconfig.load_yaml(path)
    rendered["global"]["smtp_require_tls"] = True
    promconfig.write_config(rendered, path)
    message = EmailMessage()
    message["Subject"] = "x"
    message.set_content("x")
    with pytest.raises(DigestError, match="does not offer STARTTLS"):
        send(smtp_settings(path), message)
    assert sinks.outbox.messages() == []


@pytest.mark.parametrize(
    ("digest", "history_on", "field"),
    [
        ({"enabled": True}, True, "reports.digest.to"),
        ({"to": ["not-an-address"]}, True, "reports.digest.to.0"),
        ({"period_hours": 0}, True, "reports.digest.period_hours"),
        ({"enabled": True, "to": [RECIPIENT]}, False, "reports.digest.enabled"),
    ],
)
def test_digest_config_errors_name_the_field(
    digest: dict[str, Any], history_on: bool, field: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{field}: "):
        config = parse_config({"reports": {"digest": digest}, "history": {"enabled": history_on}})
        build_monitor(config)
