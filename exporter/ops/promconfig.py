"""Render this repository's Prometheus and Alertmanager configs for another host.

``prometheus/prometheus.yml`` and ``alertmanager/alertmanager.yml`` are written for the
docker-compose stack (targets such as ``exporter:9108``). A local run or a test points
the same files somewhere else — free ports on 127.0.0.1, local SMTP and Slack sinks —
by rendering them here, never by keeping a second, hand-edited copy.

The ``render_*`` functions are pure: they take the parsed YAML (a mapping), return a
new mapping and never touch the input; so does :func:`scale_rule_durations`, which
scales the rules' ``for:`` durations for a demo. :func:`load_yaml` and
:func:`write_config` are the only I/O. Scrape jobs and receivers are found by name, so
renaming one in the YAML without updating the constants below fails loudly instead of
rendering a stale target.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

#: The source checkout; the YAML files below exist only there, not in an installed wheel.
REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_CONFIG = REPO_ROOT / "prometheus" / "prometheus.yml"
PROMETHEUS_RULES_DIR = REPO_ROOT / "prometheus" / "rules"
ALERTMANAGER_CONFIG = REPO_ROOT / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_TEMPLATES_DIR = REPO_ROOT / "alertmanager" / "templates"

#: Scrape job names in prometheus.yml (the alert rules select ``up`` by these).
JOB_EXPORTER = "churn-exporter"
JOB_API = "churn-api"
JOB_PROMETHEUS = "prometheus"
JOB_ALERTMANAGER = "alertmanager"

#: Receiver names in alertmanager.yml.
RECEIVER_EMAIL = "churn-email"
RECEIVER_SLACK = "churn-slack"
RECEIVER_WEBHOOK = "churn-webhook"

#: Secret files of alertmanager.yml (``secrets/`` locally, mounted at
#: /etc/alertmanager/secrets in compose).
SMTP_PASSWORD_FILE = "smtp_password"
SLACK_WEBHOOK_FILE = "slack_webhook_url"

_HOST_PORT = re.compile(r"^[^\s/:]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$")
_DURATION_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_DURATION_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 7 * 86400,
    "y": 365 * 86400,
}


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML file that holds a mapping (a Prometheus or Alertmanager config)."""
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a YAML mapping at the top level")
    return data


def write_config(config: Mapping[str, Any] | list[Any], path: str | os.PathLike[str]) -> Path:
    """Write a rendered config (a mapping, or the list of a file_sd file) as YAML to
    ``path`` (parents created); return the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    content = list(config) if isinstance(config, list) else dict(config)
    target.write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
    return target


def file_sd_targets(targets: Iterable[str]) -> list[dict[str, Any]]:
    """The content of a file-based service discovery file: one group of `targets`
    (``host:port``, each checked)."""
    return [{"targets": [_check_target("target", t) for t in targets]}]


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration such as ``15s``, ``1m30s`` or ``500ms``."""
    text = text.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _DURATION_UNIT_SECONDS[u] for n, u in parts)


def _check_target(field: str, target: str) -> str:
    if not _HOST_PORT.match(target):
        raise ValueError(f"{field}: expected host:port without a scheme, got {target!r}")
    return target


def _named(entries: Any, key: str, name: str, what: str, program: str) -> dict[str, Any]:
    """The entry of the list `entries` (None: empty) whose `key` is `name`; ValueError
    saying that `what` `name` is not in `program`'s config when there is none."""
    for entry in entries or []:
        if entry.get(key) == name:
            return entry
    raise ValueError(f"{what} {name!r} not found in the {program} config")


def _job(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    return _named(config.get("scrape_configs"), "job_name", name, "scrape job", "Prometheus")


#: Where a scrape job finds its targets; a rendered job keeps exactly one.
_SD_KEYS = ("static_configs", "file_sd_configs", "dns_sd_configs")


def _set_static_target(job: dict[str, Any], target: str) -> None:
    for key in _SD_KEYS:
        job.pop(key, None)
    job["static_configs"] = [{"targets": [target]}]


def _set_file_sd(job: dict[str, Any], path: str | os.PathLike[str]) -> None:
    for key in _SD_KEYS:
        job.pop(key, None)
    job["file_sd_configs"] = [{"files": [str(Path(path).resolve())], "refresh_interval": "10s"}]


def render_prometheus_config(
    base: Mapping[str, Any],
    *,
    exporter: str,
    api: str | os.PathLike[str] | None,
    alertmanager: str | None,
    prometheus: str,
    rules_dir: str | os.PathLike[str],
    scrape_interval: str | None = None,
    evaluation_interval: str | None = None,
) -> dict[str, Any]:
    """Return ``base`` (the parsed prometheus.yml) pointed at other hosts.

    Each argument is a ``host:port`` replacing the static targets of its job
    (``churn-exporter``, ``churn-api``, ``prometheus``, ``alertmanager``); ``api`` may
    instead be the path of a file-based discovery file listing the API replicas
    (`file_sd_targets`; ``up`` writes one). ``api=None`` drops the API job,
    ``alertmanager=None`` the Alertmanager job and the ``alerting`` section. Every
    ``rule_files`` glob keeps its file pattern but moves to
    ``rules_dir`` made absolute, so the rendered file works from any directory. The
    intervals, when given, replace the global ones; a scrape timeout longer than the
    new scrape interval is shortened to it (Prometheus rejects the opposite).
    """
    config: dict[str, Any] = copy.deepcopy(dict(base))

    _set_static_target(_job(config, JOB_EXPORTER), _check_target("exporter", exporter))
    _set_static_target(_job(config, JOB_PROMETHEUS), _check_target("prometheus", prometheus))

    if api is None:
        _job(config, JOB_API)  # still validates that the base names it
        config["scrape_configs"] = [
            j for j in config["scrape_configs"] if j.get("job_name") != JOB_API
        ]
    elif isinstance(api, str):
        _set_static_target(_job(config, JOB_API), _check_target("api", api))
    else:
        _set_file_sd(_job(config, JOB_API), api)

    if alertmanager is None:
        _job(config, JOB_ALERTMANAGER)
        config["scrape_configs"] = [
            j for j in config["scrape_configs"] if j.get("job_name") != JOB_ALERTMANAGER
        ]
        config.pop("alerting", None)
    else:
        target = _check_target("alertmanager", alertmanager)
        _set_static_target(_job(config, JOB_ALERTMANAGER), target)
        managers = (config.get("alerting") or {}).get("alertmanagers") or []
        if not managers:
            raise ValueError("the Prometheus config has no alerting.alertmanagers section")
        for manager in managers:
            manager["static_configs"] = [{"targets": [target]}]

    rules = Path(rules_dir).resolve()
    config["rule_files"] = [
        str(rules / PurePosixPath(pattern).name) for pattern in config.get("rule_files") or []
    ]

    glob = config.setdefault("global", {})
    if scrape_interval is not None:
        interval = duration_seconds(scrape_interval)
        glob["scrape_interval"] = scrape_interval
        timeout = glob.get("scrape_timeout")
        if timeout is not None and duration_seconds(timeout) > interval:
            glob["scrape_timeout"] = scrape_interval
    if evaluation_interval is not None:
        duration_seconds(evaluation_interval)
        glob["evaluation_interval"] = evaluation_interval
    return config


def format_duration(seconds: float) -> str:
    """A Prometheus duration for ``seconds``, in the largest unit that is exact:
    ``2m``, ``90s``, ``1500ms`` (rounded to the millisecond)."""
    if seconds <= 0:
        raise ValueError(f"a duration must be positive, got {seconds}")
    millis = max(1, round(seconds * 1000))
    if millis % 60_000 == 0:
        return f"{millis // 60_000}m"
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def scale_rule_durations(rules: Mapping[str, Any], factor: float) -> dict[str, Any]:
    """Return ``rules`` (a parsed rules file) with every ``for:`` multiplied by ``factor``.

    What a demo or a test of the whole stack does to wait seconds instead of minutes
    while keeping the rules' proportions (the critical drift twin still waits twice as
    long as the warning). Only ``for:`` changes.
    """
    if not 0 < factor <= 1:
        raise ValueError(f"the factor must be in (0, 1], got {factor}")
    result: dict[str, Any] = copy.deepcopy(dict(rules))
    for group in result.get("groups") or []:
        for rule in group.get("rules") or []:
            if rule.get("for") is not None:
                rule["for"] = format_duration(duration_seconds(str(rule["for"])) * factor)
    return result


def _receiver(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    return _named(config.get("receivers"), "name", name, "receiver", "Alertmanager")


def _set_route_timers(route: dict[str, Any], timers: Mapping[str, str], *, root: bool) -> None:
    for key, value in timers.items():
        if root or key in route:
            route[key] = value
    for child in route.get("routes") or []:
        _set_route_timers(child, timers, root=False)


def render_alertmanager_config(
    base: Mapping[str, Any],
    *,
    smtp_smarthost: str | None = None,
    smtp_from: str | None = None,
    smtp_auth_username: str | None = None,
    smtp_auth_password_file: str | os.PathLike[str] | None = None,
    smtp_require_tls: bool | None = None,
    slack_api_url_file: str | os.PathLike[str] | None = None,
    webhook_url: str | None = None,
    templates_dir: str | os.PathLike[str] | None = None,
    group_wait: str | None = None,
    group_interval: str | None = None,
    repeat_interval: str | None = None,
) -> dict[str, Any]:
    """Return ``base`` (the parsed alertmanager.yml) pointed at other sinks.

    Every argument left ``None`` keeps the base value. The SMTP and Slack settings
    replace the ``global`` ones (the receivers inherit them); the secret files are
    made absolute, their contents are never read here. ``webhook_url`` replaces the
    URL of every webhook of the ``churn-webhook`` receiver. ``templates_dir`` moves
    each ``templates`` glob there, keeping its file pattern. The timers replace the
    root route's values and those of any child route that overrides them, so a test
    can shorten group_wait/group_interval/repeat_interval everywhere at once.
    """
    config: dict[str, Any] = copy.deepcopy(dict(base))
    glob = config.setdefault("global", {})

    if smtp_smarthost is not None:
        glob["smtp_smarthost"] = _check_target("smtp_smarthost", smtp_smarthost)
    if smtp_from is not None:
        glob["smtp_from"] = smtp_from
    if smtp_auth_username is not None:
        glob["smtp_auth_username"] = smtp_auth_username
    if smtp_auth_password_file is not None:
        glob["smtp_auth_password_file"] = str(Path(smtp_auth_password_file).resolve())
    if smtp_require_tls is not None:
        glob["smtp_require_tls"] = smtp_require_tls
    if slack_api_url_file is not None:
        glob["slack_api_url_file"] = str(Path(slack_api_url_file).resolve())

    if webhook_url is not None:
        hooks = _receiver(config, RECEIVER_WEBHOOK).get("webhook_configs") or []
        if not hooks:
            raise ValueError(f"receiver {RECEIVER_WEBHOOK!r} has no webhook_configs")
        for hook in hooks:
            hook["url"] = webhook_url

    if templates_dir is not None:
        directory = Path(templates_dir).resolve()
        config["templates"] = [
            str(directory / PurePosixPath(pattern).name)
            for pattern in config.get("templates") or []
        ]

    timers = {
        key: value
        for key, value in (
            ("group_wait", group_wait),
            ("group_interval", group_interval),
            ("repeat_interval", repeat_interval),
        )
        if value is not None
    }
    for value in timers.values():
        duration_seconds(value)
    if timers:
        _set_route_timers(config.setdefault("route", {}), timers, root=True)
    return config


def without_slack(config: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``config`` (an Alertmanager config) with Slack switched off.

    Every receiver loses its ``slack_configs`` (a receiver with no integration is valid
    and drops what it gets: the alerts stay visible in Alertmanager's UI) and the global
    ``slack_api_url_file`` goes, so nothing reads a webhook file that does not exist.
    """
    result: dict[str, Any] = copy.deepcopy(dict(config))
    (result.get("global") or {}).pop("slack_api_url_file", None)
    for receiver in result.get("receivers") or []:
        receiver.pop("slack_configs", None)
    return result


def to_local_sinks(
    config: Mapping[str, Any], *, smtp_smarthost: str, slack_url: str
) -> dict[str, Any]:
    """Return ``config`` (an Alertmanager config) delivering to local sinks.

    Email goes to ``smtp_smarthost`` without TLS or authentication, Slack to
    ``slack_url`` (a local URL, no secret: it replaces ``slack_api_url_file``).
    Routes, receivers, inhibition and templates stay as they are.
    """
    result: dict[str, Any] = copy.deepcopy(dict(config))
    glob = result.setdefault("global", {})
    glob["smtp_smarthost"] = _check_target("smtp_smarthost", smtp_smarthost)
    glob["smtp_require_tls"] = False
    for key in ("smtp_auth_username", "smtp_auth_password_file", "slack_api_url_file"):
        glob.pop(key, None)
    glob["slack_api_url"] = slack_url
    return result


def with_basic_auth(
    config: Mapping[str, Any], job: str, *, username: str, password_file: str
) -> dict[str, Any]:
    """Return ``config`` (a Prometheus config) with basic auth on the scrape job `job`.

    Prometheus reads `password_file` at every scrape; the password is never in the
    config.
    """
    result: dict[str, Any] = copy.deepcopy(dict(config))
    _job(result, job)["basic_auth"] = {"username": username, "password_file": password_file}
    return result


def with_webhook_basic_auth(
    config: Mapping[str, Any], *, username: str, password_file: str
) -> dict[str, Any]:
    """Return ``config`` (an Alertmanager config) with basic auth on every webhook of
    the ``churn-webhook`` receiver (the exporter's ``/alerts/webhook``)."""
    result: dict[str, Any] = copy.deepcopy(dict(config))
    hooks = _receiver(result, RECEIVER_WEBHOOK).get("webhook_configs") or []
    if not hooks:
        raise ValueError(f"receiver {RECEIVER_WEBHOOK!r} has no webhook_configs")
    for hook in hooks:
        http_config = hook.setdefault("http_config", {})
        http_config["basic_auth"] = {"username": username, "password_file": password_file}
    return result
