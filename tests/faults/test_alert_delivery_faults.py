"""Alert delivery under faults, with real processes end to end.

The chain is the one of tests/test_alerting_e2e.py: `churn-monitor run --mode
continuous` -> Prometheus (the repository's rules, rendered by exporter/ops/promconfig.py)
-> Alertmanager (the repository's config, short group timers) -> a real SMTP server
(aiosmtpd) and an HTTP sink for Slack. One exporter is shared by the module; its
current window is switched between a calm and a drifting one (critical
``ChurnDataDriftDetected``). Each test starts its own sinks, Alertmanager and
Prometheus, so no notification state carries over between tests.

1. Alertmanager is down while the alert starts firing and comes back later (the issue
   says two minutes; held OUTAGE_SECONDS here): Prometheus keeps re-sending the firing
   alert every resend-delay, so the notification goes out once Alertmanager is back.
2. The SMTP server answers MAIL FROM with a transient 451 a few times, then accepts:
   Alertmanager's retry delivers the email, exactly once. The same 451 as the reply
   to the end of DATA is taken for a success by Alertmanager 0.25 and the email is
   lost (a characterization, recorded as a known limitation).
3. Prometheus is restarted mid-alert (same port, same TSDB directory): with
   ``--rules.alert.for-grace-period`` below the rule's ``for:`` the alert's pending
   state is restored from ``ALERTS_FOR_STATE`` and it is delivered once, not twice.
   With Prometheus' default grace period (10m, longer than the rules' ``for:``), the
   same restart re-runs the whole ``for:``; when that takes longer than Alertmanager
   keeps its copy, the group is notified RESOLVED then FIRING again. Both are measured.

Timers (see tests/alerting_fixtures.py): evaluation every 1 s, scrapes every 3 s,
group_wait 1 s, group_interval 1 s, repeat_interval 1 h; so a second notification of a
group inside a test is a duplicate, not a repeat. "Exactly once" is checked over
Alertmanager's next flushes of the group (each one decides whether to notify), not over
seconds. Every wait is a poll with a deadline; the only sleep holds the Alertmanager
outage for its stated time. Processes are stopped by pid.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.data.synthetic import generate_customers
from exporter.ops import promconfig
from exporter.ops.bootstrap import DEMO_ROWS, DEMO_SCENARIO, REFERENCE_ROWS

from ..alerting_fixtures import (
    EVAL_INTERVAL,
    QUIET_FLUSHES,
    RESEND_DELAY,
    STARTUP,
    Alertmanager,
    AlertStack,
    ExporterProcess,
    HttpSink,
    Notification,
    Prometheus,
    SmtpSink,
    assert_quiet,
    wait_for,
)
from ..promconfig_helpers import write_short_rules
from ..support import http_get

# aiosmtpd itself sets the deprecated Session.login_data on every successful AUTH.
pytestmark = pytest.mark.filterwarnings("ignore:Session.login_data:DeprecationWarning")

MODEL = "churn-faults"
DRIFT_ALERT = "ChurnDataDriftDetected"
EXPORTER_DOWN = "ChurnExporterDown"
DRIFT_THRESHOLD = 0.10  # the `sudden` window drifts 4 of 19 features: 0.21 > 0.15
CRITICAL_MULTIPLIER = 1.5

DELIVERY = 90.0
#: Alertmanager down: Prometheus must re-send the firing alert once it is back, so the
#: resend-delay is short; Alertmanager keeps each copy 4 x 5 s = 20 s after its send.
OUTAGE_RESEND = "5s"
#: How long Alertmanager stays down after the alert fired. The issue's scenario is two
#: minutes; 10 s is 12 times shorter and still 2 resend-delays.
OUTAGE_SECONDS = 10.0
#: Transient refusals before the SMTP server accepts.
REFUSALS = 3
#: Restart case, production's timings scaled by 1/60 where Prometheus allows: `for:`
#: 5m -> 5 s, --rules.alert.for-grace-period 1m (a value below every `for:`) -> 1 s.
#: Not the resend-delay: Alertmanager keeps an alert 4 x resend-delay after its last
#: send (production: 4m), and a restarted Prometheus first finds Alertmanager after
#: ~5 s (its discovery manager's fixed update throttle); a send before that is lost and
#: the alert reaches Alertmanager one resend-delay later. 30 s keeps the validity
#: (120 s) far above restart + discovery + one resend-delay on a busy machine.
#: The restored alert fires at the third evaluation after the start (the second one
#: restores the `for:` state): every 3 s, that is normally after the discovery, so the
#: first send arrives and the test rarely waits the resend-delay (every 1 s, never).
RESTART_MAX_FOR = "5s"
RESTART_RESEND = "30s"
RESTART_EVALUATION = "3s"
RESTART_GRACE = "--rules.alert.for-grace-period=1s"
#: Default grace period case: Alertmanager's copy must expire while the re-run `for:`
#: is pending. Deterministically: the restart runs the rules' shipped `for:` (5m and
#: 10m, capped at 1h: unchanged), far longer than the copy's 4 x 2 s = 8 s; once the
#: RESOLVED notification is in, the `for:` is capped at 2 s again (a reload) and the
#: alert fires again. The short validity only has to cover the moment between the first
#: notification and the stop.
DEFAULT_GRACE_RESEND = "2s"
SHIPPED_FOR = "1h"


# --------------------------------------------------------------------------- fixtures


@dataclass
class SharedExporter:
    """The module's exporter; its current window is switched by `set_drift`."""

    process: ExporterProcess
    current: Path
    drifting: pd.DataFrame
    calm: pd.DataFrame

    def set_drift(self, on: bool) -> None:
        """Swap the window and wait until the exporter serves the matching score."""
        frame = self.drifting if on else self.calm
        partial = self.current.with_name(self.current.name + ".partial")
        frame.to_csv(partial, index=False)
        partial.replace(self.current)

        def served() -> bool:
            s = scrape(self.process.url)
            score = s.get(("churn_data_drift_score", (("model", MODEL),)))
            critical = s.get(("churn_data_drift_critical_threshold", (("model", MODEL),)))
            threshold = s.get(("churn_data_drift_threshold", (("model", MODEL),)))
            if score is None or critical is None or threshold is None:
                return False
            return score > critical if on else score <= threshold

        wait_for(served, DELIVERY, f"the exporter serving drift={on}", self.logs)

    def logs(self) -> str:
        return self.process.output()[-3000:]


class _Lazy:
    """Started by the first test that passed its binary checks."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.exit = ExitStack()
        self.shared: SharedExporter | None = None

    def get(self) -> SharedExporter:
        if self.shared is None:
            reference = self.workdir / "reference.csv"
            generate_customers(REFERENCE_ROWS, seed=0).to_csv(reference, index=False)
            drifting = generate_customers(
                DEMO_ROWS, seed=1, scenario=DEMO_SCENARIO, id_offset=10**6
            )
            calm = generate_customers(DEMO_ROWS, seed=2, id_offset=2 * 10**6)
            current = self.workdir / "current.csv"
            drifting.to_csv(current, index=False)
            raw = {
                "model": {
                    "name": MODEL,
                    "tracking_uri": f"sqlite:///{self.workdir}/no-registry.db",
                },
                "data": {"reference_path": str(reference)},
                "data_drift_monitoring": {
                    "drift_threshold": DRIFT_THRESHOLD,
                    "critical_multiplier": CRITICAL_MULTIPLIER,
                },
                "performance_monitoring": {"enabled": False},
                "optuna": {"enabled": False},
                "reports": {"dir": str(self.workdir / "reports")},
                "history": {"enabled": False},
            }
            parse_config(raw)
            config = self.workdir / "monitoring.yaml"
            config.write_text(yaml.safe_dump(raw))
            process = ExporterProcess(self.workdir, name="exporter")
            self.exit.callback(process.stop)
            process.start(config, current, interval="0.02", timeout=STARTUP)
            self.shared = SharedExporter(process, current, drifting, calm)
        return self.shared


@pytest.fixture(scope="module")
def _lazy_exporter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Lazy]:
    lazy = _Lazy(tmp_path_factory.mktemp("delivery-faults"))
    with lazy.exit:
        yield lazy


@dataclass
class Binaries:
    prometheus: str
    alertmanager: str


@pytest.fixture
def binaries(require_binary: Callable[[str], str]) -> Binaries:
    return Binaries(require_binary("prometheus"), require_binary("prometheus-alertmanager"))


@pytest.fixture
def shared(binaries: Binaries, _lazy_exporter: _Lazy) -> SharedExporter:
    return _lazy_exporter.get()


@dataclass
class Chain:
    stack: AlertStack  # the sinks and Alertmanager, with the notification helpers
    prom: Prometheus
    exporter: SharedExporter

    @property
    def am(self) -> Alertmanager:
        return self.stack.alertmanager

    @property
    def smtp(self) -> SmtpSink:
        return self.stack.smtp

    def notes(self, channel: str | None = None) -> list[Notification]:
        """Notifications of the drift group that list its critical alert. The warning twin
        shares the group on Slack: inhibited once Alertmanager has both, but notified
        alone when a flush falls between their sends (see alerting_fixtures), and listed
        beside the critical in a RESOLVED Slack message."""
        return self.stack.notifications(DRIFT_ALERT, MODEL, channel=channel, listing="critical")

    def logs(self) -> str:
        parts = []
        for server in (self.am, self.prom, self.exporter.process):
            if server.starts:  # Alertmanager may not be started yet
                proc = server.process
                parts.append(f"--- {proc.log_path.name}\n{proc.output()[-2500:]}")
        return "\n".join(parts)

    def drift_alert(self) -> dict[str, Any] | None:
        """The critical drift alert as Prometheus sees it, when it is firing."""
        for alert in self.prom.alerts():
            labels = alert["labels"]
            if (
                labels.get("alertname") == DRIFT_ALERT
                and labels.get("model") == MODEL
                and labels.get("severity") == "critical"
                and alert["state"] == "firing"
            ):
                return alert
        return None


@contextmanager
def sinks_and_alertmanager(
    workdir: Path, binaries: Binaries, *, running: bool = True
) -> Iterator[AlertStack]:
    """SMTP, Slack and webhook sinks and an Alertmanager (running or only prepared)."""
    with ExitStack() as stack:
        smtp = SmtpSink(password=secrets.token_urlsafe(16)).start()
        stack.callback(smtp.stop)
        slack = HttpSink(f"/services/T0000/B0000/{secrets.token_urlsafe(12)}").start()
        stack.callback(slack.stop)
        webhook = HttpSink("/alerts/webhook").start()
        stack.callback(webhook.stop)
        am = Alertmanager(
            binaries.alertmanager,
            workdir / "alertmanager",
            smtp=smtp,
            slack_url=slack.url,
            webhook_url=webhook.url,
            start=running,
        )
        stack.callback(am.stop)
        yield AlertStack(workdir, binaries.prometheus, smtp, slack, webhook, am)


@contextmanager
def chain(
    workdir: Path,
    binaries: Binaries,
    exporter: SharedExporter,
    *,
    alertmanager_running: bool = True,
    max_for: str = "2s",
    resend_delay: str = RESEND_DELAY,
    evaluation_interval: str = EVAL_INTERVAL,
    extra_args: Sequence[str] = (),
) -> Iterator[Chain]:
    """Sinks, Alertmanager and Prometheus scraping the shared exporter, stopped on exit."""
    with sinks_and_alertmanager(workdir, binaries, running=alertmanager_running) as alerting:
        prom = Prometheus(
            binaries.prometheus,
            workdir / "prometheus",
            exporter=exporter.process.target,
            alertmanager=alerting.alertmanager.target,
            max_for=max_for,
            resend_delay=resend_delay,
            evaluation_interval=evaluation_interval,
            extra_args=extra_args,
        )
        try:
            yield Chain(alerting, prom, exporter)
        finally:
            prom.stop()


# --------------------------------------------------------------------------- helpers


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(f"{url}/metrics")
    assert status == 200, f"{url}/metrics answered {status}"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def total(url: str, name: str) -> float:
    """The sum of a counter over all its series, from a process's own /metrics."""
    return sum(v for (n, _), v in scrape(url).items() if n == name)


def firing(notes: list[Notification]) -> list[Notification]:
    return [n for n in notes if n.status == "firing"]


def resolved(notes: list[Notification]) -> list[Notification]:
    return [n for n in notes if n.status == "resolved"]


def counts(notes: list[Notification]) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for n in notes:
        found[(n.channel, n.status)] = found.get((n.channel, n.status), 0) + 1
    return found


def assert_exactly_once(c: Chain) -> float:
    """One firing critical notification per channel and nothing else for the drift group
    while Alertmanager flushes it QUIET_FLUSHES more times; return the seconds watched."""
    watched = assert_quiet(
        c.am,
        DRIFT_ALERT,
        MODEL,
        lambda: [n.title for n in c.notes("email")][1:] or [n.title for n in c.notes("slack")][1:],
        "a second notification of the drift group",
        c.logs,
    )
    notes = c.notes()
    assert counts(notes) == {("email", "firing"): 1, ("slack", "firing"): 1}, notes
    assert all(n.title == f"[FIRING:1] {DRIFT_ALERT} {MODEL} (critical)" for n in notes), notes
    return watched


def timestamp(text: str) -> float:
    """Seconds of an RFC 3339 time as Prometheus and Alertmanager write it."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    assert match, text
    zone = "+00:00" if match[3] == "Z" else match[3]
    return datetime.fromisoformat(match[1] + zone).timestamp() + float(match[2] or 0)


# --------------------------------------------------------------------------- 1. Alertmanager down


@pytest.mark.integration
@pytest.mark.slow
def test_alert_fired_while_alertmanager_is_down_is_delivered_when_it_returns(
    binaries: Binaries, shared: SharedExporter, tmp_path: Path, reliability: Any
) -> None:
    shared.set_drift(True)
    with chain(
        tmp_path, binaries, shared, alertmanager_running=False, resend_delay=OUTAGE_RESEND
    ) as c:
        wait_for(c.drift_alert, DELIVERY, "the drift alert firing in Prometheus", c.logs)
        fired = time.monotonic()
        # Prometheus tries to send it and fails (connection refused)
        wait_for(
            lambda: total(c.prom.url, "prometheus_notifications_errors_total") > 0,
            DELIVERY,
            "Prometheus failing to reach Alertmanager",
            c.logs,
        )
        time.sleep(max(OUTAGE_SECONDS - (time.monotonic() - fired), 0.0))  # hold the outage
        errors = total(c.prom.url, "prometheus_notifications_errors_total")
        assert c.notes() == []

        c.am.start()  # the same port and storage as configured in Prometheus
        back = time.monotonic()
        down_for = back - fired
        email = wait_for(lambda: firing(c.notes("email")), DELIVERY, "the drift email", c.logs)[0]
        slack = wait_for(lambda: firing(c.notes("slack")), DELIVERY, "the Slack message", c.logs)[0]
        assert email.title == f"[FIRING:1] {DRIFT_ALERT} {MODEL} (critical)"
        assert slack.title == email.title
        watched = assert_exactly_once(c)

    reliability.record(
        "Alertmanager down while an alert starts firing",
        "fault",
        "the notification is delivered after Alertmanager returns (Prometheus re-sends "
        "firing alerts every resend-delay), once",
        f"Alertmanager unreachable for the first {down_for:.1f} s of firing (the issue's "
        f"2 min shortened {120 / OUTAGE_SECONDS:.0f}x; {errors:.0f} failed sends counted by "
        f"Prometheus); email delivered {email.received - back:.1f} s and Slack "
        f"{slack.received - back:.1f} s after Alertmanager was ready; 1 firing "
        f"notification per channel over the group's next {QUIET_FLUSHES} flushes "
        f"({watched:.0f} s), 0 duplicates",
    )


# --------------------------------------------------------------------------- 2. SMTP 4xx


@pytest.mark.integration
@pytest.mark.slow
def test_transient_smtp_refusals_are_retried_and_the_email_sent_once(
    binaries: Binaries, shared: SharedExporter, tmp_path: Path, reliability: Any
) -> None:
    shared.set_drift(False)
    with chain(tmp_path, binaries, shared) as c:
        # Let the start-up blip of ChurnExporterDown (absent `up` until the first
        # scrape; see alerting_fixtures) play out, so that the refusals hit the drift
        # email only: the alert is gone from Prometheus and Alertmanager, its RESOLVED
        # email is in if its FIRING one went out (a resolved alert never notified as
        # firing is not notified), and no email is in flight: every email notification
        # Alertmanager started has reached the sink.
        wait_for(
            lambda: c.prom.query('up{job="churn-exporter"} == 1'), DELIVERY, "a scrape", c.logs
        )
        wait_for(
            lambda: (
                not [a for a in c.prom.alerts() if a["labels"]["alertname"] == EXPORTER_DOWN]
                and not c.am.alerts(filter=f'alertname="{EXPORTER_DOWN}"')
            ),
            DELIVERY,
            f"{EXPORTER_DOWN} gone from Prometheus and Alertmanager",
            c.logs,
        )

        def blip_settled() -> bool:
            blip = [n for n in c.smtp.notifications() if n.alertname == EXPORTER_DOWN]
            started = c.am.notifications_total("email")
            return (not firing(blip) or bool(resolved(blip))) and started == len(c.smtp.emails())

        wait_for(
            blip_settled,
            DELIVERY,
            f"the {EXPORTER_DOWN} emails settled (the RESOLVED one if it fired; every email "
            "Alertmanager started received)",
            c.logs,
        )
        assert c.notes() == []
        sent_before = len(c.smtp.emails())

        c.smtp.refuse_next(REFUSALS, "451 4.3.0 Mail server temporarily unavailable")
        shared.set_drift(True)
        email = wait_for(lambda: firing(c.notes("email")), DELIVERY, "the drift email", c.logs)[0]
        wait_for(lambda: firing(c.notes("slack")), DELIVERY, "the Slack message", c.logs)
        assert len(c.smtp.refusals) == REFUSALS
        assert email.received > c.smtp.refusals[-1]
        assert email.title == f"[FIRING:1] {DRIFT_ALERT} {MODEL} (critical)"
        watched = assert_exactly_once(c)
        # the drift email is the only one sent since the refusals were armed
        assert c.smtp.emails()[sent_before:] == [email.raw]
        log = c.am.process.output()
        failed = re.findall(
            r'integration=email\[0\] msg="Notify attempt failed, will retry later" '
            r'attempts=\d+ err="send MAIL command: 451',
            log,
        )
        success = re.findall(r'integration=email\[0\] msg="Notify success" attempts=(\d+)', log)
        # Alertmanager logs a failed attempt when its error differs from the previous
        # one: once here; the attempt count of the success says how many there were.
        assert failed, log[-3000:]
        assert int(success[-1]) == REFUSALS + 1, success

    reliability.record(
        "SMTP server refuses with a transient 451, then accepts",
        "fault",
        "Alertmanager retries and delivers the email exactly once",
        f"MAIL FROM refused {REFUSALS} times with 451 4.3.0; Alertmanager retried with "
        f"backoff and delivered on attempt {success[-1]}, "
        f"{email.received - c.smtp.refusals[0]:.1f} s after the first refusal; 1 email and "
        f"1 Slack message over the group's next {QUIET_FLUSHES} flushes ({watched:.0f} s), "
        "0 duplicates",
    )


@pytest.mark.integration
@pytest.mark.slow
def test_smtp_refusal_at_the_end_of_data_is_taken_for_a_success(
    binaries: Binaries, tmp_path: Path, reliability: Any
) -> None:
    """Characterization of Alertmanager 0.25: a 4xx reply to the end of DATA is lost.

    Its email notifier discards the error of closing the DATA writer, where net/smtp
    reads the server's reply to the message. No Prometheus here: the alert is POSTed
    to Alertmanager as Prometheus would. If this fails because Alertmanager now
    retries, the limitation is gone: update docs/reliability.md and drop this test.
    """
    model = "churn-smtp-data"
    with sinks_and_alertmanager(tmp_path, binaries) as alerting:
        am, smtp = alerting.alertmanager, alerting.smtp

        def logs() -> str:
            return alerting.logs()

        smtp.refuse_next(1, "451 4.3.0 Mail server temporarily unavailable", at="DATA")
        alert = {
            "labels": {
                "alertname": DRIFT_ALERT,
                "model": model,
                "severity": "critical",
                "alert_type": "DATA_DRIFT",
            },
            "annotations": {"summary": "Drift detected with score 0.21"},
        }
        request = urllib.request.Request(
            f"{am.url}/api/v2/alerts",
            data=json.dumps([alert]).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        posted = time.monotonic()
        success = re.compile(r'integration=email\[0\] msg="Notify success" attempts=(\d+)')
        attempts = wait_for(
            lambda: success.findall(am.process.output()), DELIVERY, "the email 'sent'", logs
        )
        wait_for(
            lambda: alerting.notifications(DRIFT_ALERT, model, channel="slack"),
            DELIVERY,
            "the Slack message",
            logs,
        )
        assert len(smtp.refusals) == 1
        assert attempts == ["1"], "Alertmanager retried a 451 at the end of DATA"
        # nothing is retried: the group counts as notified until repeat_interval
        assert_quiet(am, DRIFT_ALERT, model, smtp.emails, "a retried email", logs)
        watched = time.monotonic() - posted

    reliability.record(
        "SMTP server defers with a 451 at the end of DATA (after the message)",
        "fault",
        "a transient 4xx is retried as at MAIL FROM (characterization: a known "
        "limitation of Alertmanager 0.25)",
        f"not retried: Alertmanager logged 'Notify success attempts=1' for the refused "
        f"email and sent nothing more over the group's next {QUIET_FLUSHES} flushes "
        f"({watched:.0f} s after the alert was posted); the Slack message of the same "
        "alert arrived. The email is lost until the group changes or repeat_interval "
        "(4h in production) passes",
    )


# --------------------------------------------------------------------------- 3. Prometheus restart


@pytest.mark.integration
@pytest.mark.slow
def test_prometheus_restart_mid_alert_does_not_notify_twice(
    binaries: Binaries, shared: SharedExporter, tmp_path: Path, reliability: Any
) -> None:
    shared.set_drift(True)
    validity = 4 * promconfig.duration_seconds(RESTART_RESEND)
    with chain(
        tmp_path,
        binaries,
        shared,
        max_for=RESTART_MAX_FOR,
        resend_delay=RESTART_RESEND,
        evaluation_interval=RESTART_EVALUATION,
        extra_args=[RESTART_GRACE],
    ) as c:
        wait_for(lambda: firing(c.notes("email")), DELIVERY, "the drift email", c.logs)
        wait_for(lambda: firing(c.notes("slack")), DELIVERY, "the Slack message", c.logs)
        before = c.drift_alert()
        assert before is not None
        active_at = timestamp(before["activeAt"])

        # -- restart, grace period below `for:`: the pending state is restored
        stopped = time.monotonic()
        c.prom.restart()
        restart_took = time.monotonic() - stopped
        restarted_wall = time.time()
        after = wait_for(c.drift_alert, DELIVERY, "the drift alert firing again", c.logs)
        refired = time.monotonic() - stopped
        # ALERTS_FOR_STATE keeps whole seconds: the restored activeAt is the old one
        assert int(timestamp(after["activeAt"])) == int(active_at), (before, after)

        # (a resend-delay after the first send; later than the copy's validity is too late)
        in_am = wait_for(
            lambda: resent_to(c, restarted_wall), validity, "the alert re-sent", c.logs
        )
        resent_after = time.monotonic() - stopped
        assert in_am["status"]["state"] == "active", in_am
        # Had Alertmanager's copy expired before the re-send, the group would be
        # notified RESOLVED (then FIRING) at its next flushes.
        watched = assert_exactly_once(c)

    reliability.record(
        "Prometheus restarted mid-alert (same TSDB and port), grace period below for:",
        "fault",
        "the alert is delivered once, not twice",
        f"SIGTERM + start took {restart_took:.1f} s; for: state restored from "
        f"ALERTS_FOR_STATE (activeAt kept), alert firing again {refired:.1f} s and re-sent "
        f"to Alertmanager {resent_after:.1f} s after the stop, "
        f"before its copy there expired (4 x resend-delay = {validity:.0f} s); 1 firing "
        f"notification per channel over the group's next {QUIET_FLUSHES} flushes "
        f"({watched:.0f} s), 0 resolved, 0 duplicates (flags {RESTART_GRACE} "
        f"--rules.alert.resend-delay={RESTART_RESEND}, for: {RESTART_MAX_FOR}, rules "
        f"evaluated every {RESTART_EVALUATION})",
    )


@pytest.mark.integration
@pytest.mark.slow
def test_prometheus_restart_with_the_default_grace_period_notifies_resolved_then_firing(
    binaries: Binaries, shared: SharedExporter, tmp_path: Path, reliability: Any
) -> None:
    """Characterization: Prometheus' default --rules.alert.for-grace-period (10m) is
    longer than the rules' for:, so a restart re-runs the for: instead of restoring it."""
    shared.set_drift(True)
    validity = 4 * max(
        promconfig.duration_seconds(DEFAULT_GRACE_RESEND),
        promconfig.duration_seconds(EVAL_INTERVAL),
    )
    with chain(tmp_path, binaries, shared, resend_delay=DEFAULT_GRACE_RESEND) as c:
        first = wait_for(lambda: firing(c.notes("email")), DELIVERY, "the drift email", c.logs)[0]
        wait_for(lambda: firing(c.notes("slack")), DELIVERY, "the Slack message", c.logs)
        before = c.drift_alert()
        assert before is not None
        active_at = timestamp(before["activeAt"])

        # -- restart with the default grace period and the shipped for: (minutes)
        write_short_rules(c.prom.rules_dir, max_for=SHIPPED_FOR)
        stopped = time.monotonic()
        c.prom.restart(extra_args=[])

        def drift_critical() -> dict[str, Any] | None:
            for a in c.prom.alerts():
                if (
                    a["labels"].get("alertname") == DRIFT_ALERT
                    and a["labels"].get("severity") == "critical"
                ):
                    return a
            return None

        pending = wait_for(drift_critical, DELIVERY, "the drift alert after the restart", c.logs)
        assert pending["state"] == "pending", pending
        assert int(timestamp(pending["activeAt"])) > int(active_at), "restored, unexpectedly"

        # -- Alertmanager's copy expires while the for: runs: RESOLVED on both channels
        gone = wait_for(lambda: resolved(c.notes("email")), DELIVERY, "the RESOLVED email", c.logs)
        wait_for(lambda: resolved(c.notes("slack")), DELIVERY, "the RESOLVED Slack", c.logs)
        still = drift_critical()
        assert still is not None and still["state"] == "pending", still
        assert gone[0].title == f"[RESOLVED] {DRIFT_ALERT} {MODEL} (critical)"

        # -- the for: completes (capped at 2 s again, a reload): FIRING again
        write_short_rules(c.prom.rules_dir, max_for="2s")
        c.prom.reload()
        again = wait_for(
            lambda: firing(c.notes("email"))[1:], DELIVERY, "the second FIRING email", c.logs
        )
        wait_for(lambda: firing(c.notes("slack"))[1:], DELIVERY, "the second Slack", c.logs)
        notes = c.notes()
        default_counts = counts(notes)
        assert default_counts == {
            ("email", "firing"): 2,
            ("email", "resolved"): 1,
            ("slack", "firing"): 2,
            ("slack", "resolved"): 1,
        }, default_counts
        assert all(n.severity == "critical" for n in firing(notes)), notes

    reliability.record(
        "Prometheus restarted mid-alert with the default --rules.alert.for-grace-period=10m",
        "fault",
        "(characterization) a for: below the grace period is not restored but re-run; when "
        "it is longer than 4 x resend-delay, Alertmanager's copy expires meanwhile",
        f"the shipped for: (5m, 10m) re-run from zero (new activeAt, pending); RESOLVED "
        f"email {gone[0].received - stopped:.1f} s after the stop (the copy's validity: 4 x "
        f"resend-delay = {validity:.0f} s after the last send, "
        f"{gone[0].received - first.received:.1f} s after the first FIRING email), the alert "
        f"still pending; FIRING email again {again[0].received - stopped:.1f} s after the stop "
        "once the for: was over (capped at 2 s by a reload): 2 firing + 1 resolved "
        "notification per channel instead of 1. Production has the same ordering: 5m "
        "drift rules < 10m default grace, and 5m > 4m (4 x the default 1m resend-delay)",
    )


def resent_to(c: Chain, since: float) -> dict[str, Any] | None:
    """The critical drift alert in Alertmanager once a send after `since` (time.time())
    updated it."""
    for a in c.am.alerts(filter=[f'alertname="{DRIFT_ALERT}"', f'model="{MODEL}"']):
        if a["labels"].get("severity") == "critical" and timestamp(a["updatedAt"]) > since:
            return a
    return None
