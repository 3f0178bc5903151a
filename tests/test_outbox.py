"""The local outbox: stored messages, their listing and text, and the real sink servers.

The servers are tested as Alertmanager uses them: an SMTP client (smtplib) sends a
MIME message, an HTTP client POSTs a Slack payload; the files, the listing and the
`churn-monitor outbox` command show them. Alertmanager itself delivering to the sinks
is covered by tests/test_stack_e2e.py.
"""

from __future__ import annotations

import json
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from exporter.ops.outbox import HEALTH_PATH, SLACK_PATH, Outbox, Sinks, format_list, message_text

from .support import free_port, http_get

SUBJECT = "[FIRING:1] ChurnDataDriftDetected churn-model (critical)"
SLACK = {
    "channel": "#churn-alerts",
    "username": "churn-monitor",
    "attachments": [
        {
            "title": "[FIRING:1] ChurnDataDriftDetected churn-model (warning)",
            "title_link": "http://localhost:3000/d/churn-data-drift?var-model=churn-model",
            "color": "warning",
            "text": "*Drift detected with score 0.21*\nDrifted columns: [tenure].",
        }
    ],
}


def http_post_json(url: str, payload: object) -> tuple[int, str]:
    """POST `payload` as JSON; (status, body) for any status."""
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def an_email() -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "churn-monitor@example.com"
    mail["To"] = "ml-oncall@example.com"
    mail["Subject"] = SUBJECT
    mail.set_content("Alert:     ChurnDataDriftDetected (firing)\nSeverity:  critical\n")
    mail.add_alternative("<html><body><h2>Drift</h2></body></html>", subtype="html")
    return mail


def test_messages_are_listed_oldest_first_with_their_titles(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    later = datetime(2026, 12, 1, 4, 0, 1, tzinfo=UTC)
    earlier = datetime(2026, 12, 1, 4, 0, 0, tzinfo=UTC)
    outbox.store("slack", json.dumps(SLACK).encode(), now=later)
    outbox.store("email", an_email().as_bytes(), now=earlier)

    messages = outbox.messages()
    assert [(m.channel, m.title) for m in messages] == [
        ("email", SUBJECT),
        ("slack", "[FIRING:1] ChurnDataDriftDetected churn-model (warning)"),
    ]
    assert messages[0].received == earlier
    assert [m.channel for m in outbox.messages("slack")] == ["slack"]
    listing = format_list(messages).splitlines()
    assert listing[0] == f"1  2026-12-01 04:00:00  email  {SUBJECT}"
    assert listing[1].startswith("2  2026-12-01 04:00:01  slack  [FIRING:1]")
    assert not list(tmp_path.rglob("*.tmp")), "a write left its temp file"


def test_the_text_of_an_email_and_of_a_slack_post(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    outbox.store("email", an_email().as_bytes())
    outbox.store("slack", json.dumps(SLACK).encode())
    mail, post = (message_text(m) for m in outbox.messages())
    assert f"Subject: {SUBJECT}" in mail
    assert "To: ml-oncall@example.com" in mail
    assert "Severity:  critical" in mail  # the plain part, not the HTML
    assert "<h2>" not in mail
    assert post.splitlines()[:4] == [
        "Channel: #churn-alerts",
        "User: churn-monitor",
        "",
        "[warning] [FIRING:1] ChurnDataDriftDetected churn-model (warning)",
    ]
    assert "Drifted columns: [tenure]." in post


def test_find_by_position_or_id_prefix(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path)
    first = outbox.store("email", an_email().as_bytes())
    outbox.store("slack", json.dumps(SLACK).encode())
    assert outbox.find("1").path == first
    assert outbox.find(first.stem).path == first
    with pytest.raises(LookupError, match="no message"):
        outbox.find("3")
    with pytest.raises(LookupError, match="2 messages"):
        outbox.find("20")  # both ids start with the year


def test_an_empty_or_missing_outbox_lists_nothing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "nothing-here")
    assert outbox.messages() == []
    assert format_list([]) == "the outbox is empty"


@pytest.fixture
def sinks(tmp_path: Path):
    running = Sinks(Outbox(tmp_path / "outbox"), "127.0.0.1", free_port(), free_port()).start()
    yield running
    running.stop()


def test_the_smtp_server_stores_what_a_client_sends(sinks: Sinks) -> None:
    mail = an_email()
    with smtplib.SMTP("127.0.0.1", sinks.smtp_port, timeout=30) as client:
        client.send_message(mail)
    (message,) = sinks.outbox.messages()
    assert message.channel == "email" and message.title == SUBJECT
    stored = message.path.read_bytes()
    assert b"Severity:  critical" in stored and b"<h2>Drift</h2>" in stored  # both parts


def test_the_slack_webhook_stores_json_and_answers_like_slack(sinks: Sinks) -> None:
    base = f"http://127.0.0.1:{sinks.http_port}"
    assert http_get(base + HEALTH_PATH)[0] == 200
    assert http_post_json(base + SLACK_PATH, SLACK) == (200, "ok")
    assert http_post_json(base + "/services/T000/B000/XXX", {"text": "plain"}) == (200, "ok")
    status, _ = http_post_json(base + SLACK_PATH, ["not", "an", "object"])
    assert status == 400
    titles = [m.title for m in sinks.outbox.messages()]
    assert titles == [SLACK["attachments"][0]["title"], "plain"]
    assert json.loads(sinks.outbox.messages()[0].path.read_text()) == SLACK


def test_the_outbox_command_lists_and_shows(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox")
    outbox.store("email", an_email().as_bytes())
    outbox.store("slack", json.dumps(SLACK).encode())

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "exporter", "outbox", "--dir", str(outbox.root), *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)

    listing = run()
    assert listing.returncode == 0, listing.stderr
    assert [line.split("  ")[2] for line in listing.stdout.splitlines()] == ["email", "slack"]
    shown = run("1")
    assert shown.returncode == 0, shown.stderr
    assert f"Subject: {SUBJECT}" in shown.stdout
    missing = run("9")
    assert missing.returncode == 2
    assert "no message" in missing.stderr and "Traceback" not in missing.stderr
