"""`churn-monitor status`: one table of the local stack, and the state file `up` keeps.

`up` writes :data:`STATE_FILE` (under its working directory) whenever a service changes
state: each service's kind, URLs, pid, state and restarts. :func:`stack_status` reads it,
or, without a running `up`, takes the services of the config's default plan, and probes
each server's health endpoint, its version (or the model version it serves) and, for the
exporter, the last success of each task (``churn_exporter_job_last_success_timestamp_seconds``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from exporter.data.atomic import write_atomically
from exporter.ops.plan import StackPlan
from exporter.ops.supervisor import probe

#: Where `up` keeps the state of its services, relative to its working directory.
STATE_FILE = Path("data/stack/state.json")
LAST_SUCCESS = "churn_exporter_job_last_success_timestamp_seconds"


@dataclass(frozen=True)
class ServiceState:
    """One service as `up` last saw it."""

    name: str
    kind: str
    url: str | None
    health_url: str | None
    pid: int | None
    state: str
    restarts: int


def write_state(workdir: Path, services: Sequence[ServiceState]) -> None:
    """Save the state of `up`'s services (atomically: `status` may read at any time)."""
    body = json.dumps({"services": [asdict(s) for s in services]}, indent=2).encode()
    write_atomically(workdir / STATE_FILE, lambda handle: handle.write(body))


def read_state(workdir: Path) -> list[ServiceState] | None:
    """The services a running `up` saved, or None when no `up` runs here."""
    try:
        raw = json.loads((workdir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return [ServiceState(**entry) for entry in raw["services"]]


def planned_state(plan: StackPlan) -> list[ServiceState]:
    """The servers of `plan`, as if started (no pid, no restarts): what to probe when no
    `up` runs here (compose, or servers started by hand)."""
    return [
        ServiceState(s.name, s.kind, s.url, s.health_url, None, "-", 0)
        for s in plan.services
        if s.kind == "server"
    ]


def _get(url: str, timeout: float = 3.0) -> str | None:
    """The body of GET `url` whatever its status, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode(errors="replace"))
    except urllib.error.HTTPError as err:
        return str(err.read().decode(errors="replace"))
    except (OSError, ValueError):
        return None


def _json(url: str) -> Any:
    body = _get(url)
    try:
        return json.loads(body) if body is not None else None
    except ValueError:
        return None


def _base(state: ServiceState) -> str:
    """``http://host:port`` of a service, from its health URL."""
    assert state.health_url is not None
    scheme, _, rest = state.health_url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def _metrics(base: str) -> list[tuple[str, dict[str, str], float]]:
    body = _get(f"{base}/metrics")
    if body is None:
        return []
    try:
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        ]
    except ValueError:
        return []


def _api_version(base: str) -> str | None:
    health = _json(f"{base}/health")
    model = health.get("model") if isinstance(health, dict) else None
    return f"model {model.get('version')}" if isinstance(model, dict) else None


def _exporter_version(base: str) -> str | None:
    for name, labels, _ in _metrics(base):
        if name == "churn_model_info" and "version" in labels:
            return f"model {labels['version']}"
    return None


def _mlflow_version(base: str) -> str | None:
    return _get(f"{base}/version")


def _prometheus_version(base: str) -> str | None:
    info = _json(f"{base}/api/v1/status/buildinfo")
    return info.get("data", {}).get("version") if isinstance(info, dict) else None


def _alertmanager_version(base: str) -> str | None:
    info = _json(f"{base}/api/v2/status")
    return info.get("versionInfo", {}).get("version") if isinstance(info, dict) else None


#: How to ask each service its version (or the model version it serves).
VERSIONS: dict[str, Callable[[str], str | None]] = {
    "api": _api_version,
    "exporter": _exporter_version,
    "mlflow": _mlflow_version,
    "prometheus": _prometheus_version,
    "alertmanager": _alertmanager_version,
}


@dataclass(frozen=True)
class Row:
    """One line of the status table."""

    service: str
    url: str
    state: str
    version: str
    restarts: str
    #: False when the service is down or not ready.
    healthy: bool


def _row(state: ServiceState, known_restarts: bool) -> Row:
    restarts = str(state.restarts) if known_restarts else "-"
    if state.kind != "server" or state.health_url is None:
        return Row(state.name, state.url or "-", state.state, "-", restarts, True)
    status = probe(state.health_url)
    if status is None:
        shown, healthy = "down", False
    elif status == 200:
        shown, healthy = "ready", True
    else:
        shown, healthy = f"up, not ready ({status})", False
    version = VERSIONS[state.name](_base(state)) if healthy and state.name in VERSIONS else None
    return Row(state.name, state.url or "-", shown, (version or "-").strip(), restarts, healthy)


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def exporter_tasks(base: str, now: float) -> list[str]:
    """One line per exporter task (each has ``churn_exporter_job_interval_seconds``): the
    time of its last success, or "never", and whether its last run failed."""
    values: dict[str, dict[str, float]] = {}
    for name, labels, value in _metrics(base):
        if name.startswith("churn_exporter_job_") and "task" in labels:
            values.setdefault(labels["task"], {})[name] = value
    lines = []
    for task, found in sorted(values.items()):
        when = found.get(LAST_SUCCESS)
        shown = (
            "never"
            if when is None
            else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(when)) + f" ({_ago(now - when)})"
        )
        failed = ", last run failed" if found.get("churn_exporter_job_success") == 0 else ""
        lines.append(f"  exporter task {task}: last success {shown}{failed}")
    return lines


def format_rows(rows: Sequence[Row]) -> list[str]:
    """The rows as an aligned table, header first."""
    table = [("service", "url", "state", "version", "restarts")]
    table += [(r.service, r.url, r.state, r.version, r.restarts) for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(5)]
    return ["  ".join(c.ljust(widths[i]) for i, c in enumerate(line)).rstrip() for line in table]


def stack_status(
    running: Sequence[ServiceState] | None, planned: Sequence[ServiceState], now: float
) -> tuple[list[str], bool]:
    """The status table (of what `up` runs, else of `planned`, probed) and whether every
    server is ready."""
    services = running if running is not None else planned
    rows = [_row(s, running is not None) for s in services]
    lines = format_rows(rows)
    by_name: Mapping[str, ServiceState] = {s.name: s for s in services}
    exporter = next((r for r in rows if r.service == "exporter" and r.healthy), None)
    if exporter is not None:
        lines += exporter_tasks(_base(by_name["exporter"]), now)
    if running is None:
        lines.append("(no `churn-monitor up` runs here: probed the configured URLs)")
    return lines, all(r.healthy for r in rows)
