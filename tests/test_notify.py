"""`churn-monitor notify-test` against a real Alertmanager with the shipped routes (only
the sinks, secrets and timers rendered) and real SMTP, Slack and webhook sinks."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.ops import promconfig
from exporter.ops.notify import TEST_ALERT, log_reason, routed_receivers

from .alerting_fixtures import Alertmanager, HttpSink, SmtpSink
from .support import churn_monitor


@pytest.mark.parametrize("severity", ["critical", "warning", "info", "page"])
def test_routed_receivers_agree_with_amtool(require_binary, severity: str) -> None:
    amtool = require_binary("amtool")
    labels = {"alertname": TEST_ALERT, "severity": severity, "model": "m"}
    shown = subprocess.run(
        [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={promconfig.ALERTMANAGER_CONFIG}",
            *(f"{k}={v}" for k, v in labels.items()),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    config = promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG)
    assert routed_receivers(config["route"], labels) == shown.strip().split(",")


def test_log_reason_prefers_the_final_failure_of_the_receiver() -> None:
    log = "\n".join(
        [
            'level=warn msg="Notify attempt failed, will retry later" receiver=churn-email '
            'integration=email[0] attempts=1 err="dial tcp: connection refused"',
            'level=error msg="Notify for alerts failed" num_alerts=1 '
            'err="churn-slack/slack[0]: notify retry canceled after 2 attempts: boom"',
        ]
    )
    assert log_reason(log, "churn-email") == "dial tcp: connection refused"
    assert log_reason(log, "churn-slack") == (
        "churn-slack/slack[0]: notify retry canceled after 2 attempts: boom"
    )
    assert log_reason(log, "churn-webhook") is None


@dataclass
class Stack:
    smtp: SmtpSink
    slack: HttpSink
    webhook: HttpSink
    manager: Alertmanager


@pytest.fixture
def stack(require_binary, tmp_path: Path) -> Iterator[Stack]:
    binary = require_binary("prometheus-alertmanager")
    smtp = SmtpSink(password=secrets.token_urlsafe(16)).start()
    slack = HttpSink(f"/services/T0000/B0000/{secrets.token_urlsafe(12)}").start()
    webhook = HttpSink("/alerts/webhook").start()
    manager = Alertmanager(
        binary, tmp_path / "am", smtp=smtp, slack_url=slack.url, webhook_url=webhook.url
    )
    try:
        yield Stack(smtp, slack, webhook, manager)
    finally:
        manager.stop()
        for sink in (webhook, slack):
            sink.stop()
        if smtp._controller.server is not None:
            smtp.stop()


def notify_test(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        churn_monitor(
            "notify-test",
            "--alertmanager",
            stack.manager.url,
            "--log",
            str(stack.manager.process.log_path),
            "--timeout",
            "90",
            *args,
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.mark.integration
def test_notify_test_reaches_every_receiver_then_reports_a_stopped_smtp_server(
    stack: Stack,
) -> None:
    done = notify_test(stack, "--severity", "critical")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "churn-email: delivered" in lines
    assert "churn-slack: delivered" in lines
    assert "churn-webhook: delivered" in lines
    assert [e for e in stack.smtp.emails() if TEST_ALERT in e.subject]
    assert [p for p in stack.slack.posts() if TEST_ALERT in p.body["attachments"][0]["title"]]
    hooks = [p.body for p in stack.webhook.posts()]
    assert any(a["labels"]["alertname"] == TEST_ALERT for h in hooks for a in h["alerts"])

    stack.smtp.stop()
    done = notify_test(stack, "--severity", "critical")
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    (email,) = [line for line in lines if line.startswith("churn-email: ")]
    assert email.startswith("churn-email: failed (")
    assert "connection refused" in email, email
    assert "churn-slack: delivered" in lines
    assert "churn-webhook: delivered" in lines
