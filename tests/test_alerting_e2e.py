"""Alert delivery end to end: exporter -> Prometheus -> Alertmanager -> email and Slack.

Every part is real: `churn-monitor run --mode continuous` as a process, Prometheus and
Alertmanager binaries configured from the repository's own files (rendered by
exporter/ops/promconfig.py, the rules' `for:` capped at a few seconds), an aiosmtpd SMTP
server that requires the password Alertmanager reads from its secret file, and HTTP
sinks for the Slack incoming webhook (secret URL from a file) and the generic webhook.

The sinks and Alertmanager are shared by the module; each test runs its own exporter
and Prometheus and uses its own model name, so alert groups (alertname, model) never
mix between tests. The champion the performance test needs is trained by a
`churn-monitor train` process started with the module, while the drift test runs.
All waits are polls with deadlines; "no repeat" is checked over a number of
Alertmanager's flushes of the group, not over seconds; every process is stopped by pid.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from exporter.config import parse_config
from exporter.data.loader import load_customers
from exporter.data.synthetic import generate_customers
from exporter.ops.bootstrap import DEMO_ROWS, DEMO_SCENARIO, REFERENCE_ROWS
from exporter.stats import drift
from exporter.stats.decision import assess

from .alerting_fixtures import (
    EMAIL_TO,
    SMTP_USER,
    STARTUP,
    AlertStack,
    Fatal,
    Notification,
    alert_stack,
    assert_quiet,
    wait_for,
)
from .support import Process, churn_monitor, free_port, http_get

# aiosmtpd itself sets the deprecated Session.login_data on every successful AUTH.
pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data:DeprecationWarning")

DRIFT_MODEL = "churn-drift-e2e"
PERF_MODEL = "churn-perf-e2e"
DRIFT_ALERT = "ChurnDataDriftDetected"
FEATURE_ALERT = "ChurnFeatureDrift"
BREACH_ALERT = "ChurnModelThresholdBreach"

# Warning above 0.10 (2 of 19 features), critical above 0.15 (3 of 19): the `sudden`
# demo window drifts 4 features (score 0.21), a `none` window none.
DRIFT_THRESHOLD = 0.10
CRITICAL_MULTIPLIER = 1.5
MIN_ACCURACY = 0.70
WINDOW_ROWS = 2000

# Deadline of each delivery. Generous because the machine may be busy (the exporter
# imports pandas, scipy and MLflow); a healthy run takes a fraction of it.
DELIVERY = 90.0


# --------------------------------------------------------------------------- fixtures


class _LazyStack:
    """The module's sinks and Alertmanager, started by the first test that passes the
    binary checks (a module fixture cannot use the function-scoped `require_binary`)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.exit = ExitStack()
        self.stack: AlertStack | None = None

    def get(self, prometheus: str, alertmanager: str) -> AlertStack:
        if self.stack is None:
            self.stack = self.exit.enter_context(
                alert_stack(self.workdir, prometheus=prometheus, alertmanager=alertmanager)
            )
        return self.stack


@pytest.fixture(scope="module")
def _shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_LazyStack]:
    lazy = _LazyStack(tmp_path_factory.mktemp("alerting"))
    with lazy.exit:
        yield lazy


@pytest.fixture
def stack(require_binary: Callable[[str], str], _shared_stack: _LazyStack) -> AlertStack:
    prometheus = require_binary("prometheus")
    alertmanager = require_binary("prometheus-alertmanager")
    return _shared_stack.get(prometheus, alertmanager)


@dataclass
class Training:
    """`churn-monitor train` as a background process; `wait()` for the champion.

    The drift test calls `start()` (after its binary checks) so that training overlaps
    it; the performance test only waits (and starts it when run alone).
    """

    workdir: Path
    config: Path
    args: list[str]
    process: Process | None = None

    def start(self) -> None:
        if self.process is None:
            self.process = Process(
                churn_monitor(*self.args), self.workdir / "train.log", cwd=self.workdir
            )

    def wait(self, timeout: float = 300.0) -> None:
        self.start()
        assert self.process is not None
        try:
            code = self.process.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"training did not finish in {timeout}s:\n{self.process.output()[-4000:]}"
            ) from None
        assert code == 0, f"training failed ({code}):\n{self.process.output()[-4000:]}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Training]:
    """A champion trained (2 trials, 3,000 synthetic rows) into a temp MLflow store.

    The config is the one the performance test's exporter runs with: only the
    performance job, accuracy as the one realized metric, with a minimum that a
    concept-drift window breaches.
    """
    tmp = tmp_path_factory.mktemp("champion")
    raw = {
        "model": {"name": PERF_MODEL, "tracking_uri": f"sqlite:///{tmp}/mlflow.db"},
        "data": {"reference_path": str(tmp / "reference.parquet")},
        "data_drift_monitoring": {"enabled": False},
        "performance_monitoring": {
            "min_labeled_rows": 50,
            "thresholds": {
                "min_accuracy": MIN_ACCURACY,
                # only accuracy is checked here: its text is asserted exactly
                "min_precision": 0.0,
                "min_recall": 0.0,
                "min_f1": 0.0,
                "min_roc_auc": 0.0,
            },
        },
        "optuna": {"enabled": False, "storage": f"sqlite:///{tmp}/optuna.db"},
        "reports": {"dir": str(tmp / "reports")},
    }
    parse_config(raw)  # a typo fails here, not in a background process
    config = tmp / "monitoring.yaml"
    config.write_text(yaml.safe_dump(raw))
    data = tmp / "train.csv"
    generate_customers(3000, seed=3).to_csv(data, index=False)
    args = ["train", "--config", str(config), "--data", str(data), "--trials", "2", "--seed", "1"]
    run = Training(tmp, config, args)
    try:
        yield run
    finally:
        run.stop()


# --------------------------------------------------------------------------- helpers


def write_window(frame: pd.DataFrame, path: Path) -> None:
    """Replace the current-window file atomically (the exporter never sees half a file)."""
    partial = path.with_name(path.name + ".partial")
    frame.to_csv(partial, index=False)
    os.replace(partial, path)


@contextmanager
def running_exporter(
    workdir: Path, config: Path, current: Path, name: str
) -> Iterator[tuple[Process, int]]:
    """`churn-monitor run --mode continuous` on a free port, ready (first snapshot taken)."""
    port = free_port()
    args = ["run", "--mode", "continuous", "--port", str(port), "--interval", "0.02"]
    args += ["--current", str(current), "--config", str(config)]
    proc = Process(churn_monitor(*args), workdir / f"{name}.log", cwd=workdir)
    try:

        def ready() -> bool:
            if not proc.alive():
                raise Fatal(f"{name} exited with status {proc.popen.returncode}")
            return http_get(f"http://127.0.0.1:{port}/ready", timeout=2)[0] == 200

        wait_for(ready, STARTUP, f"{name} ready", lambda: proc.output()[-4000:])
        yield proc, port
    finally:
        proc.stop()


def firing(notes: list[Notification]) -> list[Notification]:
    return [n for n in notes if n.status == "firing"]


def resolved(notes: list[Notification]) -> list[Notification]:
    return [n for n in notes if n.status == "resolved"]


def assert_no_repeat(
    stack: AlertStack,
    alertname: str,
    model: str,
    notes: Callable[[], list[Notification]],
    logs: Callable[[], str],
) -> None:
    """No second notification of the group on any channel while Alertmanager flushes
    it several more times (it re-checks the group every group_interval; an unchanged
    group must wait for repeat_interval, 1h here)."""
    assert_quiet(
        stack.alertmanager,
        alertname,
        model,
        lambda: (
            [n.title for n in notes() if n.channel == "email"][1:]
            or [n.title for n in notes() if n.channel == "slack"][1:]
        ),
        "a second notification of the group inside the repeat interval",
        logs,
    )


def by_severity(alerts: list[dict[str, Any]], severity: str) -> dict[str, Any] | None:
    found = [a for a in alerts if a["labels"].get("severity") == severity]
    return found[0] if len(found) == 1 else None


# --------------------------------------------------------------------------- data drift


@pytest.mark.integration
@pytest.mark.slow
def test_critical_data_drift_is_delivered_inhibits_its_warning_and_resolves(
    stack: AlertStack, training: Training, tmp_path: Path
) -> None:
    training.start()  # for the performance test, in the background while this one runs
    reference_path = tmp_path / "reference.csv"
    generate_customers(REFERENCE_ROWS, seed=0).to_csv(reference_path, index=False)
    current = tmp_path / "current.csv"
    # the demo window `churn-monitor setup` writes (data/demo/current.csv)
    write_window(
        generate_customers(DEMO_ROWS, seed=1, scenario=DEMO_SCENARIO, id_offset=10**6), current
    )
    raw = {
        "model": {"name": DRIFT_MODEL, "tracking_uri": f"sqlite:///{tmp_path}/no-registry.db"},
        "data": {"reference_path": str(reference_path)},
        "data_drift_monitoring": {
            "drift_threshold": DRIFT_THRESHOLD,
            "critical_multiplier": CRITICAL_MULTIPLIER,
        },
        "performance_monitoring": {"enabled": False},
        "optuna": {"enabled": False},
        "reports": {"dir": str(tmp_path / "reports")},
    }
    config = parse_config(raw)
    config_path = tmp_path / "monitoring.yaml"
    config_path.write_text(yaml.safe_dump(raw))

    # What the exporter will compute, from the same files.
    cfg = config.data_drift_monitoring
    profile = drift.build_profile(
        load_customers(reference_path).frame,
        config.features.numeric,
        config.features.categorical,
        psi_bins=cfg.psi_bins,
    )
    expected = assess(
        profile,
        load_customers(current).frame,
        drift_threshold=cfg.drift_threshold,
        min_window_rows=cfg.min_window_rows,
    )
    critical = cfg.drift_threshold * cfg.critical_multiplier
    assert expected.score > critical, "the demo window must be a critical drift"
    drifted = sorted(f.feature for f in expected.features if f.drifted)
    columns = f"Drifted columns: [{', '.join(drifted)}]"
    summary = f"Drift detected with score {expected.score:.2f}"

    with (
        running_exporter(tmp_path, config_path, current, "exporter-drift") as (exporter, port),
        stack.prometheus(port, "prometheus-drift") as prom,
    ):

        def logs() -> str:
            return stack.logs(exporter, prom.process)

        def notes(channel: str | None = None) -> list[Notification]:
            # those that list the critical: its warning twin shares the Slack group (see
            # alerting_fixtures; it is inhibited, checked below)
            return stack.notifications(
                DRIFT_ALERT, DRIFT_MODEL, channel=channel, listing="critical"
            )

        # -- the critical reaches email and Slack, with type, severity, score, columns
        email = wait_for(
            lambda: firing(notes("email")), DELIVERY, "the critical drift email", logs
        )[0]
        assert email.title == f"[FIRING:1] {DRIFT_ALERT} {DRIFT_MODEL} (critical)"
        raw_email = email.raw
        assert raw_email.rcpt_tos == (EMAIL_TO,)
        assert raw_email.login == SMTP_USER, "Alertmanager must authenticate (password file)"
        assert re.search(r"^Type:\s+DATA_DRIFT$", email.text, re.M), email.text
        assert re.search(r"^Severity:\s+critical$", email.text, re.M), email.text
        assert summary in email.text
        assert columns in email.text
        assert f"above the critical threshold {critical:.2f}" in email.text
        assert summary in raw_email.html and columns in raw_email.html

        slack = wait_for(lambda: firing(notes("slack")), DELIVERY, "the Slack message", logs)[0]
        assert slack.title == email.title
        attachment = slack.raw["attachments"][0]
        assert attachment["color"] == "danger"
        assert slack.raw["channel"] == "#churn-alerts"
        assert "Type: `DATA_DRIFT` | Severity: `critical`" in slack.text
        assert f"*{summary}*" in slack.text
        assert columns in slack.text

        # -- the warning of the same type and model fires in Prometheus but is inhibited
        def warning_firing_in_prometheus() -> bool:
            return any(
                a["labels"].get("alertname") == DRIFT_ALERT
                and a["labels"].get("model") == DRIFT_MODEL
                and a["labels"].get("severity") == "warning"
                and a["state"] == "firing"
                for a in prom.alerts()
            )

        wait_for(warning_firing_in_prometheus, 30, "the drift warning firing", logs)
        matchers = [f'alertname="{DRIFT_ALERT}"', f'model="{DRIFT_MODEL}"']

        def inhibited_pair() -> tuple[dict[str, Any], dict[str, Any]] | None:
            alerts = stack.alertmanager.alerts(filter=matchers, inhibited=True)
            warn, crit = by_severity(alerts, "warning"), by_severity(alerts, "critical")
            if warn is None or crit is None or warn["status"]["state"] != "suppressed":
                return None
            return warn, crit

        warn, crit = wait_for(inhibited_pair, 30, "the warning inhibited in Alertmanager", logs)
        assert warn["status"]["inhibitedBy"] == [crit["fingerprint"]]
        assert warn["status"]["silencedBy"] == []
        assert crit["status"]["state"] == "active"
        assert crit["status"]["inhibitedBy"] == []
        hidden = stack.alertmanager.alerts(filter=matchers, inhibited=False)
        assert [a["labels"]["severity"] for a in hidden] == ["critical"]

        # -- one info alert per drifted feature reaches the generic webhook
        def webhook_features() -> set[str] | None:
            features = {
                a["labels"]["feature"]
                for p in stack.webhook_payloads(FEATURE_ALERT, DRIFT_MODEL)
                if p["status"] == "firing"
                for a in p["alerts"]
                if a["status"] == "firing"
            }
            return features if features == set(drifted) else None

        wait_for(webhook_features, DELIVERY, "ChurnFeatureDrift on the webhook", logs)

        # -- no repeat while the drift persists
        assert_no_repeat(stack, DRIFT_ALERT, DRIFT_MODEL, notes, logs)

        # -- the drift goes away: a resolved notification on both channels
        write_window(
            generate_customers(DEMO_ROWS, seed=2, scenario="none", id_offset=2 * 10**6), current
        )
        email_resolved = wait_for(
            lambda: resolved(notes("email")), DELIVERY, "the resolved email", logs
        )[0]
        assert email_resolved.title == f"[RESOLVED] {DRIFT_ALERT} {DRIFT_MODEL} (critical)"
        assert re.search(r"^Resolved:\s+\d{4}-\d\d-\d\d ", email_resolved.text, re.M)
        assert columns in email_resolved.text  # the annotations of the firing alert
        slack_resolved = wait_for(
            lambda: resolved(notes("slack")), DELIVERY, "the resolved Slack message", logs
        )[0]
        assert slack_resolved.raw["attachments"][0]["color"] == "good"
        assert f"*[RESOLVED] {summary}*" in slack_resolved.text
        wait_for(
            lambda: [
                p
                for p in stack.webhook_payloads(FEATURE_ALERT, DRIFT_MODEL)
                if p["status"] == "resolved"
            ],
            DELIVERY,
            "ChurnFeatureDrift resolved on the webhook",
            logs,
        )

    # Exactly one firing and one resolved notification of the critical per channel, and
    # the inhibited warning never beside it: critical and warning have separate routes,
    # so the twins never share a group on any channel.
    final = notes()
    assert [(n.channel, n.status) for n in final if n.channel == "email"] == [
        ("email", "firing"),
        ("email", "resolved"),
    ]
    assert [(n.channel, n.status) for n in final if n.channel == "slack"] == [
        ("slack", "firing"),
        ("slack", "resolved"),
    ]
    assert all(n.severity == "critical" for n in final), [n.title for n in final]
    assert not any("Severity: `warning`" in n.text for n in final)
    assert not any(re.search(r"^Severity:\s+warning$", n.text, re.M) for n in final)
    assert stack.slack.misses == [] and stack.webhook.misses == []
    assert stack.smtp.rejected_logins == [] and stack.smtp.unauthenticated == 0


# --------------------------------------------------------------------------- performance


@pytest.mark.integration
@pytest.mark.slow
def test_threshold_breach_is_delivered_with_metric_value_and_threshold(
    stack: AlertStack, training: Training, tmp_path: Path
) -> None:
    training.wait()
    current = tmp_path / "current.csv"
    # concept drift: the same inputs as `none`, churn follows another relation; the
    # `Churn` column gives the file window its labels
    write_window(
        generate_customers(WINDOW_ROWS, seed=5, scenario="concept", id_offset=10**6), current
    )

    with (
        running_exporter(tmp_path, training.config, current, "exporter-perf") as (exporter, port),
        stack.prometheus(port, "prometheus-perf") as prom,
    ):

        def logs() -> str:
            return stack.logs(exporter, prom.process)

        def notes(channel: str | None = None) -> list[Notification]:
            return stack.notifications(BREACH_ALERT, PERF_MODEL, channel=channel)

        def scraped(name: str) -> float | None:
            result = prom.query(f'{name}{{model="{PERF_MODEL}",metric="accuracy"}}')
            return float(result[0]["value"][1]) if result else None

        accuracy = wait_for(
            lambda: scraped("churn_model_performance"), DELIVERY, "the realized accuracy", logs
        )
        baseline = scraped("churn_model_performance_baseline")
        assert baseline is not None and baseline > MIN_ACCURACY > accuracy, (baseline, accuracy)
        summary = f"Accuracy ({accuracy:.2f}) below minimum threshold ({MIN_ACCURACY:.2f})"

        email = wait_for(lambda: firing(notes("email")), DELIVERY, "the breach email", logs)[0]
        assert email.title == f"[FIRING:1] {BREACH_ALERT} {PERF_MODEL} (critical)"
        assert re.search(r"^Type:\s+THRESHOLD_BREACH$", email.text, re.M), email.text
        assert re.search(r"^Severity:\s+critical$", email.text, re.M), email.text
        assert re.search(r"^Labels:\s+metric=accuracy$", email.text, re.M), email.text
        assert summary in email.text
        assert f"(measured on {WINDOW_ROWS} labelled rows)" in email.text
        assert email.raw.login == SMTP_USER

        slack = wait_for(lambda: firing(notes("slack")), DELIVERY, "the Slack message", logs)[0]
        assert slack.title == email.title
        assert "Type: `THRESHOLD_BREACH` | Severity: `critical`" in slack.text
        assert f"*{summary}*" in slack.text

        assert_no_repeat(stack, BREACH_ALERT, PERF_MODEL, notes, logs)

        # a labelled window without concept drift: the breach resolves
        write_window(
            generate_customers(WINDOW_ROWS, seed=6, scenario="none", id_offset=2 * 10**6), current
        )
        wait_for(lambda: resolved(notes("email")), DELIVERY, "the resolved email", logs)
        wait_for(lambda: resolved(notes("slack")), DELIVERY, "the resolved Slack message", logs)

    final = notes()
    assert [(n.channel, n.status) for n in final if n.channel == "email"] == [
        ("email", "firing"),
        ("email", "resolved"),
    ]
    assert [(n.channel, n.status) for n in final if n.channel == "slack"] == [
        ("slack", "firing"),
        ("slack", "resolved"),
    ]
