"""`churn-monitor notify-test`: a test alert through Alertmanager, followed per receiver.

:func:`notify_test` reads the running Alertmanager's config from its status API
(``GET /api/v2/status``), works out which receivers the test alert's severity routes to
(:func:`routed_receivers`, Alertmanager's route tree walked as Alertmanager walks it),
posts ``ChurnNotificationTest`` (``POST /api/v2/alerts``) and follows each receiver's
integration in Alertmanager's own counters on ``/metrics``:

- delivered: ``alertmanager_notification_requests_total`` rose by more than
  ``alertmanager_notification_requests_failed_total`` (a request succeeded);
- failed: ``alertmanager_notifications_failed_total`` rose (Alertmanager gave up), or at
  the deadline only failed attempts were seen.

Alertmanager 0.25 names the reason of a failure only in its log (``msg="Notify for
alerts failed"`` and ``"Notify attempt failed"``, with ``err=...``): given the log (what
`up` writes, ``logs/alertmanager.log``) the reason is quoted from it. The alert is
resolved at the end (posted again with ``endsAt`` now). The counters are per integration,
not per receiver: two receivers of one kind, or other alerts notified meanwhile, blur them.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

TEST_ALERT = "ChurnNotificationTest"
SEVERITIES = ("critical", "warning", "info")

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$')
_LOGFMT_ERR = re.compile(r'err="((?:[^"\\]|\\.)*)"')


def _matches(matcher: str, labels: Mapping[str, str]) -> bool:
    """One Alertmanager matcher (``name="v"``, ``!=``, ``=~``, ``!~``) against `labels`."""
    found = _MATCHER.match(matcher)
    if found is None:
        raise ValueError(f"cannot read the matcher {matcher!r}")
    name, op, value = found.groups()
    value = value.replace('\\"', '"')
    actual = labels.get(name, "")
    if op in ("=~", "!~"):
        hit = re.fullmatch(value, actual) is not None
        return hit if op == "=~" else not hit
    return (actual == value) if op == "=" else (actual != value)


def _route_matches(route: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    matchers = list(route.get("matchers") or [])
    matchers += [f'{k}="{v}"' for k, v in (route.get("match") or {}).items()]
    matchers += [f'{k}=~"{v}"' for k, v in (route.get("match_re") or {}).items()]
    return all(_matches(m, labels) for m in matchers)


def routed_receivers(route: Mapping[str, Any], labels: Mapping[str, str]) -> list[str]:
    """The receivers Alertmanager notifies for an alert with `labels`, in route order:
    the matching child routes (until one without ``continue``), else the route itself;
    a child without a receiver inherits its parent's."""
    found: list[str] = []

    def walk(node: Mapping[str, Any], receiver: str) -> None:
        receiver = node.get("receiver") or receiver
        matched = False
        for child in node.get("routes") or []:
            if _route_matches(child, labels):
                matched = True
                walk(child, receiver)
                if not child.get("continue"):
                    break
        if not matched and receiver not in found:
            found.append(receiver)

    walk(route, str(route.get("receiver", "")))
    return found


def integrations(config: Mapping[str, Any], receiver: str) -> list[str]:
    """The integrations of `receiver` as Alertmanager's counters name them (email,
    slack, webhook, ...)."""
    for entry in config.get("receivers") or []:
        if entry.get("name") == receiver:
            return [k.removesuffix("_configs") for k in entry if k.endswith("_configs")]
    return []


#: (metric, integration) -> value, from Alertmanager's /metrics.
Counters = dict[tuple[str, str], float]


def parse_counters(text: str) -> Counters:
    """Alertmanager's notification counters by integration, summed over other labels."""
    counters: Counters = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("alertmanager_notification") and sample.name.endswith(
                "_total"
            ):
                key = (sample.name, sample.labels.get("integration", ""))
                counters[key] = counters.get(key, 0.0) + sample.value
    return counters


def _rise(before: Counters, after: Counters, metric: str, integration: str) -> float:
    key = (metric, integration)
    return after.get(key, 0.0) - before.get(key, 0.0)


def log_reason(log_text: str, receiver: str) -> str | None:
    """The last error Alertmanager logged for `receiver` (its final "Notify for alerts
    failed" when there is one, else its last failed attempt)."""
    final: str | None = None
    attempt: str | None = None
    for line in log_text.splitlines():
        found = _LOGFMT_ERR.search(line)
        if found is None:
            continue
        err = found[1].replace('\\"', '"')
        if 'msg="Notify for alerts failed"' in line and err.startswith(f"{receiver}/"):
            final = err
        elif "Notify attempt failed" in line and f"receiver={receiver} " in line:
            attempt = err
    return final or attempt


@dataclass(frozen=True)
class Outcome:
    """What became of the test alert at one receiver."""

    receiver: str
    delivered: bool
    detail: str

    def line(self) -> str:
        return f"{self.receiver}: {'delivered' if self.delivered else 'failed'}" + (
            f" ({self.detail})" if self.detail else ""
        )


def _iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def notification_alert(
    severity: str, starts: dt.datetime, ends: dt.datetime | None
) -> dict[str, Any]:
    """The test alert as the v2 API takes it; one group of its own per run (``model``),
    so it goes out after group_wait and nothing inhibits it."""
    stamp = starts.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    alert: dict[str, Any] = {
        "labels": {
            "alertname": TEST_ALERT,
            "severity": severity,
            "alert_type": "NOTIFICATION_TEST",
            "model": f"notify-test-{stamp}",
        },
        "annotations": {
            "summary": f"Test notification ({severity}) from churn-monitor notify-test",
            "description": "A test of the alert delivery path; nothing is wrong. "
            "It resolves by itself.",
        },
        "startsAt": _iso(starts),
    }
    if ends is not None:
        alert["endsAt"] = _iso(ends)
    return alert


@dataclass
class _Follow:
    """One receiver's integration followed in the counters."""

    receiver: str
    integration: str

    def outcome(
        self, before: Counters, after: Counters, log_text: str | None, final: bool
    ) -> Outcome | None:
        """Delivered, failed, or None while undecided (`final`: the deadline passed)."""
        i = self.integration
        ok = _rise(before, after, "alertmanager_notification_requests_total", i) - _rise(
            before, after, "alertmanager_notification_requests_failed_total", i
        )
        failed_attempts = _rise(before, after, "alertmanager_notification_requests_failed_total", i)
        gave_up = _rise(before, after, "alertmanager_notifications_failed_total", i)
        if ok > 0:
            return Outcome(self.receiver, True, "")
        if gave_up > 0 or (final and failed_attempts > 0):
            reason = log_reason(log_text, self.receiver) if log_text is not None else None
            still = "" if gave_up > 0 else "; Alertmanager is still retrying"
            if reason is None:
                reason = (
                    f'alertmanager_notifications_failed_total{{integration="{i}"}} rose; '
                    'the reason is in Alertmanager\'s log (msg="Notify for alerts failed")'
                )
            return Outcome(self.receiver, False, reason + still)
        if final:
            return Outcome(self.receiver, False, f"no {i} notification attempt in time")
        return None


def notify_test(
    alertmanager: str,
    severity: str,
    *,
    timeout: float,
    log_path: Path | None = None,
    say: Callable[[str], None] = print,
) -> list[Outcome]:
    """Send the test alert of `severity` through `alertmanager` (a base URL), follow it
    to each receiver the severity routes to until delivered, failed or `timeout`
    seconds, resolve it, and return one outcome per receiver (each also said)."""
    base = alertmanager.rstrip("/")
    with httpx.Client(timeout=10.0) as client:
        status = client.get(f"{base}/api/v2/status")
        status.raise_for_status()
        config = yaml.safe_load(status.json()["config"]["original"])
        labels = notification_alert(severity, dt.datetime.now(dt.UTC), None)["labels"]
        follows = [
            _Follow(receiver, integration)
            for receiver in routed_receivers(config["route"], labels)
            for integration in integrations(config, receiver)
        ]
        say(
            f"{TEST_ALERT} ({severity}) to {base}: routed to "
            + ", ".join(f.receiver for f in follows)
        )
        offset = log_path.stat().st_size if log_path is not None and log_path.is_file() else 0
        before = parse_counters(client.get(f"{base}/metrics").text)
        starts = dt.datetime.now(dt.UTC)
        client.post(f"{base}/api/v2/alerts", json=[notification_alert(severity, starts, None)])
        try:
            outcomes = _follow(client, base, follows, before, timeout, log_path, offset)
        finally:
            ends = dt.datetime.now(dt.UTC)
            client.post(f"{base}/api/v2/alerts", json=[notification_alert(severity, starts, ends)])
    for outcome in outcomes:
        say(outcome.line())
    return outcomes


def _read_from(path: Path | None, offset: int) -> str | None:
    if path is None:
        return None
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return None


def _follow(
    client: httpx.Client,
    base: str,
    follows: Sequence[_Follow],
    before: Counters,
    timeout: float,
    log_path: Path | None,
    offset: int,
) -> list[Outcome]:
    """Poll the counters until every receiver is decided or the deadline passes."""
    deadline = time.monotonic() + timeout
    decided: dict[str, Outcome] = {}
    while True:
        final = time.monotonic() > deadline
        after = parse_counters(client.get(f"{base}/metrics").text)
        log_text = _read_from(log_path, offset)
        for follow in follows:
            if follow.receiver not in decided:
                outcome = follow.outcome(before, after, log_text, final)
                if outcome is not None:
                    decided[follow.receiver] = outcome
        if len(decided) == len(follows) or final:
            return [decided[f.receiver] for f in _unique(follows)]
        time.sleep(0.5)


def _unique(follows: Iterable[_Follow]) -> list[_Follow]:
    seen: dict[str, _Follow] = {}
    for follow in follows:
        seen.setdefault(follow.receiver, follow)
    return list(seen.values())
