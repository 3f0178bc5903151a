"""The shipped stack as one system, started as a user starts it: `churn-monitor up`.

`up` runs the API, the exporter, the local notification sinks, Alertmanager, Prometheus
and the traffic simulator as processes, from the demo configuration
(configs/monitoring/demo.yaml). The test's config changes only ports, paths and timers,
through the config file's own keys (the ``stack`` section scales every rule's ``for:``
and sets Prometheus' and Alertmanager's intervals). Routes, receivers, inhibition,
templates and rules are the shipped files, rendered by `up` itself.

- Covariate shift (``sudden``): ChurnDataDriftDetected goes from the exporter to
  Prometheus firing, to a Slack post (warning) and an email (its critical escalation) in
  the outbox, with the seed's shape, and to a history row with severity warning.
- Concept shift (``concept``) with retraining on: the realized quality falls, a
  THRESHOLD_BREACH or MODEL_DEGRADATION alert reaches the history webhook, and the
  retraining loop records a decision.

Every wait is a poll with a deadline; `up` and everything it started are stopped by pid.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from exporter.config import parse_config
from exporter.ops.outbox import Message, Outbox, message_text

from .support import REPO, Process, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICES = ("api", "exporter", "sinks", "alertmanager", "prometheus", "simulator")
MODEL = "churn-model"
#: Generous: `up` starts five servers on a possibly busy 2-core machine.
STARTUP = 300.0
#: From the table to each delivery; a healthy run needs a small fraction.
DEADLINE = 420.0
#: The README's default ports of the services this test starts.
README_PORTS = {9108: "exporter", 9090: "prometheus", 9093: "alertmanager", 8000: "api"}
#: The timers a short test needs, set through the config (the `stack` section).
TIMERS = {
    "scrape_interval": "1s",
    "evaluation_interval": "1s",
    "alert_for_scale": 0.02,  # 5m -> 6s, the critical drift twin's 10m -> 12s
    "alert_resend_delay": "1s",
    "group_wait": "1s",
    "group_interval": "2s",
    "repeat_interval": "1h",
}


def run_cli(workdir: Path, config: Path, *args: str) -> str:
    """`churn-monitor ARGS --config CONFIG` in `workdir`; its stdout (fails on non-zero)."""
    done = subprocess.run(
        [sys.executable, "-m", "exporter", *args, "--config", str(config)],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"churn-monitor {' '.join(args)}:\n{done.stdout}{done.stderr}"
    return done.stdout


def demo_config(workdir: Path, **sections: dict[str, Any]) -> tuple[Path, dict[str, int]]:
    """The demo config with free ports, short timers and `sections` merged in."""
    demo = yaml.safe_load((REPO / "configs" / "monitoring" / "demo.yaml").read_text())
    ports = {name: free_port() for name in ("api", "exporter", "prometheus", "alertmanager")}
    ports |= {"sinks": free_port(), "sinks-smtp": free_port()}
    raw: dict[str, Any] = {
        **demo,
        "api": {"port": ports["api"], "url": f"http://127.0.0.1:{ports['api']}"},
        "exporter": {"port": ports["exporter"]},
        "optuna": {"enabled": False},
        "stack": {
            **demo["stack"],
            **TIMERS,
            "ports": {k: v for k, v in ports.items() if k not in ("api", "exporter")},
        },
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    parse_config(raw)  # a typo fails here, not in a child process
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, ports


@pytest.fixture
def stack_up(require_binary: Any, tmp_path: Path) -> Iterator[Any]:
    """Start `up` with a config; stop it (SIGTERM, then the groups by pid) at the end."""
    require_binary("prometheus")
    require_binary("prometheus-alertmanager")
    started: list[Process] = []

    def start(config: Path) -> Process:
        run_cli(tmp_path, config, "setup")
        run_cli(tmp_path, config, "train", "--if-no-champion", "--trials", "1")
        process = Process(
            [
                sys.executable,
                "-m",
                "exporter",
                "up",
                "--config",
                str(config),
                "--services",
                *SERVICES,
            ],
            tmp_path / "up.out",
            cwd=tmp_path,
        )
        started.append(process)

        def table_printed() -> bool:
            assert process.alive(), process.output()
            return "Ctrl-C (or SIGTERM) stops everything." in process.output()

        wait_until(table_printed, STARTUP, "`up` to start every service")
        rows = {line.split()[0]: line.split() for line in process.output().splitlines() if line}
        for name in SERVICES[:-1]:
            assert rows[name][2] == "ready", process.output()
        assert rows["simulator"][2] == "running", process.output()
        return process

    yield start
    for process in started:
        if process.alive():
            process.signal(signal.SIGTERM)
            process.popen.wait(120)
        output = process.output()
        process.stop()
        assert process.popen.returncode == 0, output[-4000:]
        assert output.splitlines()[-1] == "stopped"


def history(workdir: Path, config: Path, kind: str) -> list[dict[str, Any]]:
    """`churn-monitor history --type KIND --format json`, parsed."""
    return json.loads(run_cli(workdir, config, "history", "--type", kind, "--format", "json"))


def logs(workdir: Path) -> str:
    """The tail of every service log, for a failure message."""
    parts = []
    for path in sorted((workdir / "logs").glob("*.log")):
        parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-1500:]}")
    return "\n".join(parts)


def one(messages: list[Message], title: str) -> Message | None:
    """The first message with this exact title."""
    return next((m for m in messages if m.title == title), None)


def test_a_drift_alert_reaches_slack_email_and_the_history(stack_up: Any, tmp_path: Path) -> None:
    config, ports = demo_config(
        tmp_path,
        data_drift_monitoring={"check_interval_minutes": 0.05},
        performance_monitoring={"enabled": False},
        simulator={"rate": 20},
    )
    stack_up(config)
    outbox = Outbox(tmp_path / "data" / "outbox")
    warning = f"[FIRING:1] ChurnDataDriftDetected {MODEL} (warning)"
    critical = f"[FIRING:1] ChurnDataDriftDetected {MODEL} (critical)"

    def delivered(channel: str, title: str) -> Message:
        def found() -> Message | None:
            return one(outbox.messages(channel), title)  # type: ignore[arg-type]

        try:
            return wait_until(found, DEADLINE, f"the {channel} message {title!r}", 1.0)
        except AssertionError as err:
            titles = [m.title for m in outbox.messages()]
            raise AssertionError(f"{err}\noutbox: {titles}\n{logs(tmp_path)}") from None

    # Prometheus fires the shipped rule on the exporter's score.
    post = delivered("slack", warning)
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"
    alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=30).json()["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "ChurnDataDriftDetected" for a in alerts)

    slack = message_text(post)
    assert "Channel: #churn-alerts" in slack
    assert "*Drift detected with score 0.2" in slack
    assert f"Type: `DATA_DRIFT` | Severity: `warning` | Model: `{MODEL}`" in slack
    assert "Drifted columns: [" in slack and "above the warning threshold 0.15" in slack

    # The critical twin escalates (demo: 1.3 x 0.15 = 0.195 under the shift's ~0.21).
    mail = message_text(delivered("email", critical))
    assert f"Subject: {critical}" in mail
    assert "To: ml-oncall@example.com" in mail
    assert "Alert:     ChurnDataDriftDetected (firing)" in mail
    assert "Type:      DATA_DRIFT" in mail and "Severity:  critical" in mail
    assert "Message:   Drift detected with score 0.2" in mail
    assert "Drifted columns: [" in mail and "above the critical threshold 0.20" in mail

    def warning_in_history() -> dict[str, Any] | None:
        rows = history(tmp_path, config, "alerts")
        return next(
            (
                r
                for r in rows
                if r["alertname"] == "ChurnDataDriftDetected"
                and r["severity"] == "warning"
                and r["status"] == "firing"
            ),
            None,
        )

    row = wait_until(warning_in_history, DEADLINE, "the warning in the history", 1.0)
    assert row["alert_type"] == "DATA_DRIFT" and row["model"] == MODEL
    assert row["receiver"] == "churn-webhook"
    # The README's links of these services answer 200 with the Debian packages.
    readme = (REPO / "README.md").read_text()
    checked = []
    for port, path in re.findall(r"<http://127\.0\.0\.1:(\d+)(/[^>]*)?>", readme):
        service = README_PORTS.get(int(port))
        if service is not None:
            url = f"http://127.0.0.1:{ports[service]}{path}"
            assert httpx.get(url, timeout=30).status_code == 200, url
            checked.append(service)
    assert set(checked) == set(README_PORTS.values()), checked
    listing = run_cli(tmp_path, config, "outbox")
    assert any(line.endswith(warning) and "  slack  " in line for line in listing.splitlines())
    assert any(line.endswith(critical) and "  email  " in line for line in listing.splitlines())


def test_a_concept_shift_leads_to_a_retraining_decision(stack_up: Any, tmp_path: Path) -> None:
    config, _ = demo_config(
        tmp_path,
        data_drift_monitoring={"check_interval_minutes": 0.05},
        performance_monitoring={"check_interval_minutes": 0.05},
        simulator={"rate": 20, "scenario": "concept", "label_delay_seconds": 1},
        retraining={"enabled": True, "min_rows": 50, "trials": 1, "cooldown_minutes": 60},
    )
    stack_up(config)

    def decision() -> dict[str, Any] | None:
        rows = history(tmp_path, config, "retraining")
        return next((r for r in rows if r["decision"] != "skipped_busy"), None)

    try:
        row = wait_until(decision, DEADLINE, "a retraining decision in the history", 2.0)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{logs(tmp_path)}") from None
    assert row["decision"] in ("promoted", "kept_champion"), row
    assert row["metric"] == "roc_auc" and row["champion_value"] is not None
    triggers = [
        r
        for r in history(tmp_path, config, "alerts")
        if r["alert_type"] in ("MODEL_DEGRADATION", "THRESHOLD_BREACH") and r["status"] == "firing"
    ]
    assert triggers, "no quality alert reached the history"
    assert row["trigger"].split()[0] in {t["alertname"] for t in triggers}, row["trigger"]
