"""The services `churn-monitor up` knows: their names, start order and ports, the
:class:`ServiceSpec` of one child process, and the choice of services from a request.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from exporter.config import MonitoringConfig

#: Every service `up` knows, in start order.
SERVICES: tuple[str, ...] = (
    "trainer",
    "mlflow",
    "optuna-dashboard",
    "api",
    "exporter",
    "ui",
    "sinks",
    "alertmanager",
    "prometheus",
    "simulator",
)
#: What `up` starts without ``--services``: everything but the traffic simulator.
DEFAULT_SERVICES: tuple[str, ...] = tuple(s for s in SERVICES if s != "simulator")
#: What ``--no-monitoring`` leaves out.
MONITORING_SERVICES: tuple[str, ...] = ("exporter", "sinks", "prometheus", "alertmanager")

#: The default ports (README, docs/deployment.md); `sinks` is the local Slack webhook
#: (and health), `sinks-smtp` the local SMTP server (Mailpit's ports).
DEFAULT_PORTS: dict[str, int] = {
    "mlflow": 5000,
    "optuna-dashboard": 8080,
    "api": 8000,
    "exporter": 9108,
    "ui": 8501,
    "sinks": 8025,
    "sinks-smtp": 1025,
    "prometheus": 9090,
    "alertmanager": 9093,
}

#: Every child listens here only.
LOCAL_HOST = "127.0.0.1"

#: A one-shot runs to completion first; servers are health-checked; clients come last.
Kind = Literal["oneshot", "server", "client"]


class StackError(ValueError):
    """A bad request (unknown service, nothing left to start): exit status 2."""


class PortsInUse(Exception):
    """A port the stack needs is taken: nothing is started (exit status 1)."""


@dataclass(frozen=True)
class ServiceSpec:
    """One child process of the stack."""

    name: str
    kind: Kind
    #: Command lines run one after the other (several only for a one-shot).
    steps: tuple[tuple[str, ...], ...]
    port: int | None = None
    #: Other ports it listens on (checked free before anything starts).
    extra_ports: tuple[int, ...] = ()
    #: Polled until it answers 200 (servers only).
    health_url: str | None = None
    #: Where a person goes (the table `up` prints).
    url: str | None = None
    #: Seconds the health endpoint may take to answer 200.
    ready_timeout: float = 120.0
    #: Extra environment variables of the child.
    env: Mapping[str, str] = field(default_factory=dict)
    #: Services that must be healthy before this one starts (clients only).
    after: tuple[str, ...] = ()

    @property
    def argv(self) -> tuple[str, ...]:
        return self.steps[0]


def select_services(services: Sequence[str] | None, no_monitoring: bool) -> list[str]:
    """The requested services in start order; raise StackError for a bad request."""
    requested = list(services) if services else list(DEFAULT_SERVICES)
    unknown = sorted(set(requested) - set(SERVICES))
    if unknown:
        raise StackError(
            f"--services: unknown service {', '.join(map(repr, unknown))} "
            f"(choose from {', '.join(SERVICES)})"
        )
    chosen = [s for s in SERVICES if s in requested]
    if no_monitoring:
        chosen = [s for s in chosen if s not in MONITORING_SERVICES]
    if not chosen:
        raise StackError(
            "--services: nothing left to start once --no-monitoring removed "
            f"{', '.join(MONITORING_SERVICES)}"
        )
    return chosen


def service_ports(
    config: MonitoringConfig, overrides: Mapping[str, int] | None = None
) -> dict[str, int]:
    """Port of each server: the design's defaults, then the config, then `overrides`.

    ``api.port`` and ``exporter.port`` come from their sections, the others from
    ``stack.ports``.
    """
    ports = dict(DEFAULT_PORTS)
    ports["api"] = config.api.port
    ports["exporter"] = config.exporter.port
    for service, number in config.stack.ports.items():
        ports[service] = number
    for name, port in (overrides or {}).items():
        if name not in DEFAULT_PORTS:
            raise StackError(
                f"--port: {name!r} has no port (choose from {', '.join(DEFAULT_PORTS)})"
            )
        ports[name] = port
    return ports
