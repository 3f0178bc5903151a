"""The Prometheus rules and config, the Alertmanager config and templates, the runbook.

Checks run the real tools: promtool (check config, check rules, test rules) and amtool
(check-config, config routes test, template render). The contract checks (names,
labels, annotations, no threshold literals, documented metric names, runbook anchors)
read the YAML directly. exporter/ops/promconfig.py is unit-tested at the end.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from exporter.domain.alerts import ALERT_TYPES
from exporter.ops import promconfig

from .promconfig_helpers import scrape_targets

ROOT = promconfig.REPO_ROOT
PROMETHEUS_DIR = ROOT / "prometheus"
RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTS_FILE = PROMETHEUS_DIR / "rules" / "churn_alerts.yml"
METRICS_DOC = ROOT / "docs" / "metrics.md"
RUNBOOK = ROOT / "docs" / "runbook.md"
RUNBOOK_BASE = "https://github.com/churn-monitor/churn-monitor/blob/main/docs/runbook.md"

SEVERITIES = {"critical", "warning", "info"}
ANNOTATIONS = {"summary", "description", "value", "dashboard_uid", "runbook_url"}
DASHBOARD_UIDS = {
    "churn-data-drift",
    "churn-model-performance",
    "churn-model-comparison",
    "churn-service",
}


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run a command; the assertion message carries its output."""
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} failed ({result.returncode}):\n{output}"
    return output


def iter_rules(*, alerts_only: bool = False) -> Iterator[dict[str, Any]]:
    for path in RULE_FILES:
        for group in promconfig.load_yaml(path)["groups"]:
            for rule in group["rules"]:
                if not alerts_only or "alert" in rule:
                    yield rule


ALERT_RULES = list(iter_rules(alerts_only=True))
ALERT_NAMES = sorted({rule["alert"] for rule in ALERT_RULES})


@pytest.fixture
def promtool(require_binary: Callable[[str], str]) -> str:
    return require_binary("promtool")


@pytest.fixture
def amtool(require_binary: Callable[[str], str]) -> str:
    return require_binary("amtool")


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_config_as_shipped_is_valid(promtool: str) -> None:
    output = ok(run(promtool, "check", "config", PROMETHEUS_DIR / "prometheus.yml"))
    assert f"{len(RULE_FILES)} rule files found" in output


def test_rendered_prometheus_config_is_valid(promtool: str, tmp_path: Path) -> None:
    rendered = promconfig.render_prometheus_config(
        promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG),
        exporter="127.0.0.1:19108",
        api="127.0.0.1:18000",
        alertmanager="127.0.0.1:19093",
        prometheus="127.0.0.1:19090",
        rules_dir=promconfig.PROMETHEUS_RULES_DIR,
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    # written far from the repository: rule paths must resolve on their own
    path = promconfig.write_config(rendered, tmp_path / "elsewhere" / "prometheus.yml")
    output = ok(run(promtool, "check", "config", path))
    assert f"{len(RULE_FILES)} rule files found" in output


def test_rules_are_valid(promtool: str) -> None:
    ok(run(promtool, "check", "rules", *RULE_FILES))


def test_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TEST_FILES
    output = ok(run(promtool, "test", "rules", *RULE_TEST_FILES))
    assert "FAILED" not in output


def test_alert_rules_follow_the_contract() -> None:
    assert ALERT_RULES
    for rule in ALERT_RULES:
        name = rule["alert"]
        assert re.fullmatch(r"Churn[A-Z][A-Za-z]+", name), name
        assert rule.get("for"), f"{name}: no for: duration"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert rule["labels"]["alert_type"] in ALERT_TYPES, name
        assert set(rule["annotations"]) == ANNOTATIONS, name
        assert rule["annotations"]["dashboard_uid"] in DASHBOARD_UIDS, name
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOK_BASE}#{name.lower()}", name
    # Every type of the domain's list is one some rule raises (retraining.alert_types).
    assert {r["labels"]["alert_type"] for r in ALERT_RULES} == set(ALERT_TYPES)


def test_the_issue_alerts_exist_with_their_severity_and_type() -> None:
    found = {(r["alert"], r["labels"]["severity"], r["labels"]["alert_type"]) for r in ALERT_RULES}
    assert found == {
        ("ChurnDataDriftDetected", "warning", "DATA_DRIFT"),
        ("ChurnDataDriftDetected", "critical", "DATA_DRIFT"),
        ("ChurnFeatureDrift", "info", "DATA_DRIFT"),
        ("ChurnMultivariateDrift", "warning", "DATA_DRIFT"),
        ("ChurnUnusualInputs", "warning", "DATA_DRIFT"),
        ("ChurnModelDegradation", "warning", "MODEL_DEGRADATION"),
        ("ChurnModelThresholdBreach", "critical", "THRESHOLD_BREACH"),
        ("ChurnEstimatedPerformanceDrop", "warning", "THRESHOLD_BREACH"),
        ("ChurnPredictionDrift", "warning", "PREDICTION_DRIFT"),
        ("ChurnExporterDown", "critical", "MONITORING"),
        ("ChurnMonitoringJobFailing", "warning", "MONITORING"),
        ("ChurnMonitoringStale", "warning", "MONITORING"),
        ("ChurnNoPredictions", "warning", "MONITORING"),
        ("ChurnChallengerOutperforms", "info", "MODEL_COMPARISON"),
    }


def _numbers_in(expr: str) -> set[float]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # range durations
    words = re.findall(r"(?<![\w.:])\d+(?:\.\d+)?(?:e[+-]?\d+)?(?![\w.])", expr)
    return {float(w) for w in words}


def test_alert_expressions_hold_no_threshold_literals() -> None:
    # 0 and 1: comparisons on boolean gauges; 3: ChurnMonitoringStale's "3 intervals".
    for rule in ALERT_RULES:
        assert _numbers_in(rule["expr"]) <= {0.0, 1.0, 3.0}, (rule["alert"], rule["expr"])


def test_number_scanner_sees_literals() -> None:
    assert _numbers_in('churn_data_drift_score > 0.25 and up{job="a1"} == 1') == {0.25, 1.0}
    assert _numbers_in("increase(x[30m]) > 0") == {0.0}


def _documented_metric_names() -> set[str]:
    names: set[str] = set()
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        cells = line.split("|")
        if line.startswith("|") and len(cells) > 2:
            names.update(re.findall(r"`(churn_[a-z0-9_]+)`", cells[1]))
    return names


def _used_metric_names() -> set[str]:
    used: set[str] = set()
    for rule in iter_rules():
        texts = [rule["expr"], *(rule.get("annotations") or {}).values()]
        for text in texts:
            for token in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
                if token.startswith("churn_") and ":" not in token:
                    used.add(token)
    return used


def test_every_metric_used_by_the_rules_is_documented() -> None:
    documented = _documented_metric_names()
    assert "churn_data_drift_score" in documented  # the parser reads the tables
    missing = set()
    for name in _used_metric_names():
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in documented and base not in documented:
            missing.add(name)
    assert not missing, f"used in prometheus/rules but not in docs/metrics.md: {sorted(missing)}"


def test_every_recording_rule_is_namespaced_and_used_names_exist() -> None:
    recorded = {rule["record"] for rule in iter_rules() if "record" in rule}
    for name in recorded:
        assert re.fullmatch(r"churn(_api)?:[a-z0-9_]+:[a-z0-9_]+", name), name


def _rule_tests() -> list[dict[str, Any]]:
    cases = []
    for path in RULE_TEST_FILES:
        for group in promconfig.load_yaml(path)["tests"]:
            cases.extend(group.get("alert_rule_test") or [])
    return cases


def test_every_alert_is_unit_tested_firing_and_silent() -> None:
    cases = _rule_tests()
    for name in ALERT_NAMES:
        mine = [c for c in cases if c["alertname"] == name]
        assert any(not c.get("exp_alerts") for c in mine), f"{name}: no silent case"
        fired = [a for c in mine for a in c.get("exp_alerts") or []]
        severities = {r["labels"]["severity"] for r in ALERT_RULES if r["alert"] == name}
        tested = {a["exp_labels"]["severity"] for a in fired}
        assert severities <= tested, f"{name}: severities {severities - tested} never fire"
        for alert in fired:
            assert set(alert["exp_annotations"]) == ANNOTATIONS, name


# ------------------------------------------------------------------------- Alertmanager

ALERTMANAGER_FILE = promconfig.ALERTMANAGER_CONFIG


def _rendered_alertmanager(tmp_path: Path) -> Path:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "smtp_password").write_text("not-a-real-password\n")
    (secrets / "slack_webhook_url").write_text("http://127.0.0.1:9/slack\n")
    rendered = promconfig.render_alertmanager_config(
        promconfig.load_yaml(ALERTMANAGER_FILE),
        smtp_smarthost="127.0.0.1:2525",
        smtp_require_tls=False,
        smtp_auth_password_file=secrets / "smtp_password",
        slack_api_url_file=secrets / "slack_webhook_url",
        webhook_url="http://127.0.0.1:9/alerts/webhook",
        templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR,
        group_wait="1s",
        group_interval="2s",
        repeat_interval="1m",
    )
    return promconfig.write_config(rendered, tmp_path / "elsewhere" / "alertmanager.yml")


def test_alertmanager_config_as_shipped_is_valid(amtool: str) -> None:
    output = ok(run(amtool, "check-config", ALERTMANAGER_FILE))
    assert "1 templates" in output


def test_rendered_alertmanager_config_is_valid(amtool: str, tmp_path: Path) -> None:
    ok(run(amtool, "check-config", _rendered_alertmanager(tmp_path)))


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        ({"severity": "critical"}, "churn-webhook,churn-email,churn-slack"),
        ({"severity": "warning"}, "churn-webhook,churn-slack"),
        ({"severity": "info"}, "churn-webhook"),
        ({}, "churn-webhook,churn-slack"),
        ({"severity": "page"}, "churn-webhook,churn-slack"),
    ],
    ids=["critical", "warning", "info", "no-severity", "unknown-severity"],
)
@pytest.mark.parametrize("config", ["shipped", "rendered"])
def test_routes_by_severity(
    amtool: str, tmp_path: Path, config: str, labels: dict[str, str], receivers: str
) -> None:
    path = ALERTMANAGER_FILE if config == "shipped" else _rendered_alertmanager(tmp_path)
    assert routes_test(amtool, path, {"alertname": "ChurnX", "model": "m", **labels}) == receivers


def routes_test(amtool: str, config: Path, labels: dict[str, str]) -> str:
    """The receivers `amtool config routes test` gives for `labels`, comma-separated."""
    pairs = [f"{key}={value}" for key, value in labels.items()]
    output = ok(run(amtool, "config", "routes", "test", f"--config.file={config}", *pairs))
    return output.splitlines()[0]


def runbook_routing_table() -> dict[tuple[str, str], str]:
    """(alert, severity) -> receivers, from the runbook's "Alert routing" table."""
    text = RUNBOOK.read_text(encoding="utf-8")
    section = text.split("### Alert routing", 1)[1].split("\n#", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("| Churn")
    ]
    table = {(alert, severity): receivers.replace(" ", "") for alert, severity, receivers in rows}
    assert len(table) == len(rows), "an (alert, severity) pair is listed twice"
    return table


def test_every_rule_reaches_the_receivers_the_runbook_lists(amtool: str) -> None:
    """Each alert rule's labels, routed by the shipped file, reach exactly the runbook's
    receivers; the webhook (the history) is among them for every rule."""
    table = runbook_routing_table()
    rules = {(r["alert"], r["labels"]["severity"]): r for r in ALERT_RULES}
    assert set(table) == set(rules), "the runbook's routing table and the rules differ"
    for (alert, severity), rule in sorted(rules.items()):
        labels = {"alertname": alert, **rule["labels"], "model": "churn-model"}
        got = routes_test(amtool, ALERTMANAGER_FILE, labels)
        assert got == table[(alert, severity)], f"{alert} ({severity}): routed to {got}"
        assert "churn-webhook" in got.split(","), f"{alert} ({severity}) misses the history"


def test_every_alert_severity_has_a_route() -> None:
    config = promconfig.load_yaml(ALERTMANAGER_FILE)
    routed = {
        m.split("=", 1)[1].strip('"~')
        for route in config["route"]["routes"]
        for m in route.get("matchers", [])
        if m.startswith("severity=")
    }
    routed = {severity for pattern in routed for severity in pattern.split("|")}
    assert {r["labels"]["severity"] for r in ALERT_RULES} - {"info"} <= routed


def test_grouping_rate_limit_and_inhibition() -> None:
    config = promconfig.load_yaml(ALERTMANAGER_FILE)
    route = config["route"]
    assert route["group_by"] == ["alertname", "model"]
    assert promconfig.duration_seconds(route["repeat_interval"]) == 4 * 3600
    for child in route["routes"]:
        assert "repeat_interval" not in child  # one documented rate limit
    (rule,) = config["inhibit_rules"]
    assert rule["equal"] == ["alert_type", "model"]
    assert set(rule["source_matchers"]) == {'severity="critical"', 'model=~".+"'}
    assert set(rule["target_matchers"]) == {'severity="warning"', 'model=~".+"'}


def test_no_secret_in_the_alertmanager_config() -> None:
    config = promconfig.load_yaml(ALERTMANAGER_FILE)
    glob = config["global"]
    assert "smtp_auth_password" not in glob and "slack_api_url" not in glob
    assert glob["smtp_auth_password_file"].startswith("/etc/alertmanager/secrets/")
    assert glob["slack_api_url_file"].startswith("/etc/alertmanager/secrets/")
    for receiver in config["receivers"]:
        for email in receiver.get("email_configs") or []:
            assert "auth_password" not in email
        for slack in receiver.get("slack_configs") or []:
            assert "api_url" not in slack
        for hook in receiver.get("webhook_configs") or []:
            assert "send_resolved" in hook
    text = ALERTMANAGER_FILE.read_text(encoding="utf-8")
    assert "hooks.slack.com" not in text


def test_every_receiver_sends_resolved() -> None:
    for receiver in promconfig.load_yaml(ALERTMANAGER_FILE)["receivers"]:
        for key, configs in receiver.items():
            if key.endswith("_configs"):
                assert all(c.get("send_resolved") is True for c in configs), receiver["name"]


TEMPLATE_DATA = {
    "receiver": "churn-email",
    "status": "firing",
    "alerts": [
        {
            "status": "firing",
            "labels": {
                "alertname": "ChurnDataDriftDetected",
                "severity": "critical",
                "alert_type": "DATA_DRIFT",
                "model": "churn-model",
            },
            "annotations": {
                "summary": "Drift detected with score 0.55",
                "description": "Drifted columns: [Contract, MonthlyCharges, tenure]. "
                "The data drift score of model churn-model is 0.55, above the critical "
                "threshold 0.50.",
                "value": "0.55",
                "dashboard_uid": "churn-data-drift",
                "runbook_url": f"{RUNBOOK_BASE}#churndatadriftdetected",
            },
            "startsAt": "2024-05-01T10:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": "0123456789abcdef",
        },
        {
            "status": "resolved",
            "labels": {
                "alertname": "ChurnDataDriftDetected",
                "severity": "critical",
                "alert_type": "DATA_DRIFT",
                "model": "churn-model",
                "feature": "tenure",
            },
            "annotations": {
                "summary": "Earlier drift",
                "description": "Resolved description.",
                "value": "0.6",
                "dashboard_uid": "churn-data-drift",
                "runbook_url": f"{RUNBOOK_BASE}#churndatadriftdetected",
            },
            "startsAt": "2024-05-01T09:00:00Z",
            "endsAt": "2024-05-01T09:30:00Z",
            "generatorURL": "",
            "fingerprint": "fedcba9876543210",
        },
    ],
    "groupLabels": {"alertname": "ChurnDataDriftDetected", "model": "churn-model"},
    "commonLabels": {
        "alertname": "ChurnDataDriftDetected",
        "severity": "critical",
        "alert_type": "DATA_DRIFT",
        "model": "churn-model",
    },
    "commonAnnotations": {},
    "externalURL": "http://alertmanager:9093",
}


@pytest.fixture
def render_template(amtool: str, tmp_path: Path) -> Callable[[str, str], str]:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(TEMPLATE_DATA))
    glob = str(promconfig.ALERTMANAGER_TEMPLATES_DIR / "*.tmpl")

    def render(name: str, kind: str = "text") -> str:
        return ok(
            run(
                amtool,
                "template",
                "render",
                f"--template.glob={glob}",
                f"--template.type={kind}",
                f'--template.text={{{{ template "{name}" . }}}}',
                f"--template.data={data}",
            )
        )

    return render


def test_templates_render_every_notification_part(
    render_template: Callable[[str, str], str],
) -> None:
    title = "[FIRING:1] ChurnDataDriftDetected churn-model (critical)"
    dashboard = "http://localhost:3000/d/churn-data-drift?var-model=churn-model"
    assert render_template("churn.email.subject", "text").strip() == title
    assert render_template("churn.slack.title", "text").strip() == title
    assert render_template("churn.slack.title_link", "text").strip() == dashboard
    assert render_template("churn.slack.color", "text").strip() == "danger"

    text = render_template("churn.email.text", "text")
    for line in (
        "Type:      DATA_DRIFT",
        "Severity:  critical",
        "Model:     churn-model",
        "Message:   Drift detected with score 0.55",
        "Details:   Drifted columns: [Contract, MonthlyCharges, tenure].",
        "Value:     0.55",
        "Labels:    feature=tenure",
        "Started:   2024-05-01 10:00:00 UTC",
        "Resolved:  2024-05-01 09:30:00 UTC",
        f"Dashboard: {dashboard}",
        f"Runbook:   {RUNBOOK_BASE}#churndatadriftdetected",
    ):
        assert line in text, line

    html = render_template("churn.email.html", "html")
    assert html.lstrip().startswith("<!DOCTYPE html>")
    assert f'<a href="{dashboard}">Grafana dashboard</a>' in html
    assert "Drifted columns: [Contract, MonthlyCharges, tenure]." in html

    slack = render_template("churn.slack.text", "text")
    assert "*Drift detected with score 0.55*" in slack
    assert "Type: `DATA_DRIFT` | Severity: `critical` | Model: `churn-model`" in slack
    assert f"<{dashboard}|Grafana dashboard>" in slack
    assert "*[RESOLVED] Earlier drift*" in slack


# ----------------------------------------------------------------------------- runbook


def _github_anchor(heading: str) -> str:
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def test_runbook_has_a_section_per_alert() -> None:
    headings = re.findall(r"^##\s+(.+)$", RUNBOOK.read_text(encoding="utf-8"), flags=re.M)
    anchors = {_github_anchor(h) for h in headings}
    for rule in ALERT_RULES:
        anchor = rule["annotations"]["runbook_url"].split("#", 1)[1]
        assert anchor in anchors, f"docs/runbook.md has no section for #{anchor}"


# ------------------------------------------------------------------ exporter/promconfig


@pytest.fixture
def prometheus_base() -> dict[str, Any]:
    return promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG)


def _render(base: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "exporter": "127.0.0.1:1",
        "api": "127.0.0.1:2",
        "alertmanager": "127.0.0.1:3",
        "prometheus": "127.0.0.1:4",
        "rules_dir": "/abs/rules",
    }
    arguments.update(overrides)
    return promconfig.render_prometheus_config(base, **arguments)


def test_shipped_prometheus_config_targets_the_compose_services(
    prometheus_base: dict[str, Any],
) -> None:
    assert scrape_targets(prometheus_base) == {
        "churn-exporter": ["exporter:9108"],
        "churn-api": ["api:8000"],
        "prometheus": ["localhost:9090"],
        "alertmanager": ["alertmanager:9093"],
    }
    assert prometheus_base["rule_files"] == ["rules/*.yml"]


def test_render_prometheus_substitutes_targets_by_job(prometheus_base: dict[str, Any]) -> None:
    before = yaml.safe_dump(prometheus_base)
    rendered = _render(prometheus_base)
    assert scrape_targets(rendered) == {
        "churn-exporter": ["127.0.0.1:1"],
        "churn-api": ["127.0.0.1:2"],
        "prometheus": ["127.0.0.1:4"],
        "alertmanager": ["127.0.0.1:3"],
    }
    managers = rendered["alerting"]["alertmanagers"]
    assert managers == [{"static_configs": [{"targets": ["127.0.0.1:3"]}]}]
    assert rendered["rule_files"] == [str(Path("/abs/rules").resolve() / "*.yml")]
    assert yaml.safe_dump(prometheus_base) == before  # the input is untouched
    jobs = zip(rendered["scrape_configs"], prometheus_base["scrape_configs"], strict=True)
    for job, original in jobs:  # everything but targets is kept
        assert {**job, "static_configs": None} == {**original, "static_configs": None}


def test_render_prometheus_drops_optional_jobs(prometheus_base: dict[str, Any]) -> None:
    rendered = _render(prometheus_base, api=None, alertmanager=None)
    assert set(scrape_targets(rendered)) == {"churn-exporter", "prometheus"}
    assert "alerting" not in rendered


def test_render_prometheus_intervals(prometheus_base: dict[str, Any]) -> None:
    rendered = _render(prometheus_base, scrape_interval="1s", evaluation_interval="2s")
    assert rendered["global"]["scrape_interval"] == "1s"
    assert rendered["global"]["scrape_timeout"] == "1s"  # was 10s, longer than 1s
    assert rendered["global"]["evaluation_interval"] == "2s"
    untouched = _render(prometheus_base)
    assert untouched["global"] == prometheus_base["global"]


def test_render_prometheus_rejects_bad_input(prometheus_base: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="exporter: expected host:port"):
        _render(prometheus_base, exporter="http://127.0.0.1:9108")
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        _render(prometheus_base, scrape_interval="fast")
    renamed = {**prometheus_base, "scrape_configs": prometheus_base["scrape_configs"][1:]}
    with pytest.raises(ValueError, match="'churn-exporter' not found"):
        _render(renamed)


def test_render_alertmanager_points_at_local_sinks(tmp_path: Path) -> None:
    base = promconfig.load_yaml(ALERTMANAGER_FILE)
    before = yaml.safe_dump(base)
    rendered = promconfig.render_alertmanager_config(
        base,
        smtp_smarthost="127.0.0.1:2525",
        smtp_from="test@localhost",
        smtp_require_tls=False,
        smtp_auth_password_file=tmp_path / "pw",
        slack_api_url_file=tmp_path / "slack",
        webhook_url="http://127.0.0.1:5/hook",
        templates_dir=tmp_path / "tpl",
        group_wait="1s",
        group_interval="2s",
        repeat_interval="3m",
    )
    glob = rendered["global"]
    assert glob["smtp_smarthost"] == "127.0.0.1:2525"
    assert glob["smtp_from"] == "test@localhost"
    assert glob["smtp_require_tls"] is False
    assert glob["smtp_auth_password_file"] == str((tmp_path / "pw").resolve())
    assert glob["slack_api_url_file"] == str((tmp_path / "slack").resolve())
    hook = promconfig.RECEIVER_WEBHOOK
    (webhook,) = next(r for r in rendered["receivers"] if r["name"] == hook)["webhook_configs"]
    assert webhook["url"] == "http://127.0.0.1:5/hook"
    assert rendered["templates"] == [str((tmp_path / "tpl").resolve() / "*.tmpl")]
    route = rendered["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "1s",
        "2s",
        "3m",
    )
    assert rendered["inhibit_rules"] == base["inhibit_rules"]
    assert yaml.safe_dump(base) == before


def test_render_alertmanager_timers_reach_overriding_children() -> None:
    base = {
        "route": {
            "receiver": "a",
            "group_wait": "30s",
            "routes": [{"receiver": "b", "repeat_interval": "12h", "routes": [{"receiver": "c"}]}],
        },
        "receivers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
    }
    rendered = promconfig.render_alertmanager_config(base, repeat_interval="1m")
    assert rendered["route"]["repeat_interval"] == "1m"
    assert rendered["route"]["group_wait"] == "30s"
    child = rendered["route"]["routes"][0]
    assert child["repeat_interval"] == "1m"
    assert "repeat_interval" not in child["routes"][0]  # inherits from its parent


def test_render_alertmanager_without_arguments_is_a_copy() -> None:
    base = promconfig.load_yaml(ALERTMANAGER_FILE)
    assert promconfig.render_alertmanager_config(base) == base


def test_write_config_round_trips(tmp_path: Path) -> None:
    config = {"global": {"scrape_interval": "1s"}, "rule_files": ["/x/*.yml"]}
    path = promconfig.write_config(config, tmp_path / "a" / "b.yml")
    assert promconfig.load_yaml(path) == config


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("1m30s", 90), ("500ms", 0.5), ("4h", 14400), ("1d", 86400)],
)
def test_duration_seconds(text: str, seconds: float) -> None:
    assert promconfig.duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "1.5s", "s", "1m 30s"])
def test_duration_seconds_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        promconfig.duration_seconds(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(120, "2m"), (90, "90s"), (1.2, "1200ms"), (0.0004, "1ms"), (3600, "60m")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert promconfig.format_duration(seconds) == text
    assert promconfig.duration_seconds(text) == pytest.approx(max(seconds, 0.001))


def test_scale_rule_durations_keeps_everything_but_for() -> None:
    rules = promconfig.load_yaml(ALERTS_FILE)
    scaled = promconfig.scale_rule_durations(rules, 0.5)
    for group, original in zip(scaled["groups"], rules["groups"], strict=True):
        for rule, before in zip(group["rules"], original["rules"], strict=True):
            assert promconfig.duration_seconds(rule["for"]) == pytest.approx(
                promconfig.duration_seconds(before["for"]) / 2
            )
            assert {**rule, "for": before["for"]} == before
    assert promconfig.scale_rule_durations(rules, 1) == rules
    with pytest.raises(ValueError, match="factor"):
        promconfig.scale_rule_durations(rules, 0)


def test_to_local_sinks_replaces_relay_and_secrets_only(amtool: str, tmp_path: Path) -> None:
    base = promconfig.load_yaml(ALERTMANAGER_FILE)
    local = promconfig.to_local_sinks(
        base, smtp_smarthost="127.0.0.1:1025", slack_url="http://127.0.0.1:8025/slack"
    )
    assert local["global"] == {
        **{k: v for k, v in base["global"].items() if "auth" not in k and "_file" not in k},
        "smtp_smarthost": "127.0.0.1:1025",
        "smtp_require_tls": False,
        "slack_api_url": "http://127.0.0.1:8025/slack",
    }
    assert {k: v for k, v in local.items() if k != "global"} == {
        k: v for k, v in base.items() if k != "global"
    }
    rendered = promconfig.render_alertmanager_config(
        local, templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR
    )
    ok(run(amtool, "check-config", promconfig.write_config(rendered, tmp_path / "am.yml")))
    with pytest.raises(ValueError, match="smtp_smarthost"):
        promconfig.to_local_sinks(base, smtp_smarthost="smtp://x:1", slack_url="http://x/")
