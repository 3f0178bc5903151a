"""What `churn-monitor up` starts, in order, and what it leaves out and why (pure).

`up` starts what ``docker compose up`` starts, without Docker: the one-shot trainer
(``setup`` then ``train --if-no-champion``), the MLflow tracking server, the Optuna
dashboard, the prediction API, the exporter, the Streamlit form, the local email and
Slack sinks, Prometheus and Alertmanager (when their binaries are installed) and, only
when asked for, the traffic simulator. Every child runs from the working directory with
the same ``--config``.

:func:`plan_stack` turns the config, the requested services and the
:class:`~exporter.ops.facts.Facts` about this machine into a :class:`StackPlan`: the
command line, port, health URL and log file of each service, the services left out with
the reason, and the Prometheus and Alertmanager configs to write
(:mod:`exporter.ops.stack_configs`, targets on 127.0.0.1). No I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exporter.api.replicas import replica_ports
from exporter.config import MonitoringConfig
from exporter.data.dburl import sqlite_file
from exporter.ops import promconfig
from exporter.ops.facts import ALERTMANAGER_BINARIES, Facts
from exporter.ops.outbox import HEALTH_PATH, SLACK_PATH
from exporter.ops.services import (
    LOCAL_HOST,
    ServiceSpec,
    select_services,
    service_ports,
)
from exporter.ops.stack_configs import grace_period, scaled_rules, stack_alertmanager_config

#: The tracking server's job runner (GenAI evaluation, online scoring) serves nothing
#: here; without it the server is one process that stops at once on SIGTERM.
MLFLOW_NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

#: Why Grafana is in no plan (said when Prometheus or Alertmanager is requested).
GRAFANA_SKIPPED = (
    "grafana",
    "not started by `up` (no local Grafana): use `docker compose up`, or point "
    "your Grafana at grafana/provisioning (docs/dashboards.md)",
)


@dataclass(frozen=True)
class StackPlan:
    """The services to start, in order; those left out; the config files to write."""

    services: tuple[ServiceSpec, ...]
    #: (service, why it is not started), in service order.
    skipped: tuple[tuple[str, str], ...]
    #: Config files to write before starting: path -> mapping or list (YAML).
    files: Mapping[Path, Any]
    log_dir: Path

    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


def _absolute(path: str | Path, workdir: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else workdir / candidate


def _unavailable(name: str, config: MonitoringConfig, facts: Facts) -> str | None:
    """Why service `name` cannot run on this machine, or None when it can."""
    if name == "mlflow" and sqlite_file(config.model.tracking_uri) is None:
        return (
            f"model.tracking_uri is {config.model.tracking_uri!r}, not a local SQLite "
            "store: the tracking server is expected to run already"
        )
    if name == "optuna-dashboard" and not facts.binary("optuna-dashboard"):
        return "`optuna-dashboard` is not installed (pip install optuna-dashboard)"
    if name == "prometheus":
        if not facts.binary("prometheus"):
            return "binary `prometheus` not found on PATH (apt-get install prometheus)"
        if facts.prometheus_base is None:
            return "prometheus/prometheus.yml not found (run from a source checkout)"
    if name == "alertmanager":
        if not facts.binary(*ALERTMANAGER_BINARIES):
            return (
                "binary `prometheus-alertmanager` (or `alertmanager`) not found on PATH "
                "(apt-get install prometheus-alertmanager)"
            )
        if facts.alertmanager_base is None:
            return "alertmanager/alertmanager.yml not found (run from a source checkout)"
    return None


def _runnable(
    chosen: Sequence[str], config: MonitoringConfig, facts: Facts
) -> tuple[list[str], list[tuple[str, str]]]:
    """The chosen services that can run here, and (service, reason) for the others."""
    available: list[str] = []
    skipped: list[tuple[str, str]] = []
    for name in chosen:
        reason = _unavailable(name, config, facts)
        if reason:
            skipped.append((name, reason))
        else:
            available.append(name)
    if "sinks" in available and "alertmanager" not in available:
        available.remove("sinks")
        skipped.append(("sinks", "Alertmanager is not started: nothing would send to them"))
    return available, skipped


@dataclass
class _Planner:
    """What every service builder reads; builders add the config files they need."""

    config: MonitoringConfig
    facts: Facts
    port: Mapping[str, int]
    available: Sequence[str]
    #: ``--config PATH`` of every `churn-monitor` child, or nothing.
    common: tuple[str, ...]
    workdir: Path
    #: Where rendered configs and Prometheus' and Alertmanager's data go.
    run_dir: Path
    secrets_dir: Path
    #: API processes (`api --workers`), on consecutive ports from the API's.
    api_replicas: int = 1
    files: dict[Path, Any] = field(default_factory=dict)

    def cli(self, command: str, *args: str) -> tuple[str, ...]:
        """``python -m exporter COMMAND --config PATH ARGS``."""
        return (self.facts.python, "-m", "exporter", command, *self.common, *args)

    def local(self, name: str, path: str = "") -> str:
        return f"http://{LOCAL_HOST}:{self.port[name]}{path}"

    def address(self, name: str) -> str:
        return f"{LOCAL_HOST}:{self.port[name]}"

    def listen(self, name: str) -> tuple[str, ...]:
        return ("--host", LOCAL_HOST, "--port", str(self.port[name]))

    def server(
        self,
        name: str,
        argv: Sequence[str],
        health: str,
        path: str = "",
        *,
        ready_timeout: float = 120.0,
        env: Mapping[str, str] | None = None,
        extra_ports: tuple[int, ...] = (),
    ) -> ServiceSpec:
        return ServiceSpec(
            name,
            "server",
            (tuple(argv),),
            port=self.port[name],
            extra_ports=extra_ports,
            health_url=self.local(name, health),
            url=self.local(name, path),
            ready_timeout=ready_timeout,
            env=env or {},
        )


def _trainer(p: _Planner) -> ServiceSpec:
    return ServiceSpec("trainer", "oneshot", (p.cli("setup"), p.cli("train", "--if-no-champion")))


def _mlflow(p: _Planner) -> ServiceSpec:
    tracking = sqlite_file(p.config.model.tracking_uri)
    assert tracking is not None  # any other store leaves mlflow out (_unavailable)
    db = _absolute(tracking, p.workdir)
    store = ("--backend-store-uri", f"sqlite:///{db}")
    artifacts = ("--artifacts-destination", str(db.parent / "artifacts"))
    argv = (p.facts.python, "-m", "mlflow", "server", *p.listen("mlflow"), *store, *artifacts)
    env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **MLFLOW_NO_JOBS}
    return p.server("mlflow", (*argv, "--workers", "1"), "/health", ready_timeout=180.0, env=env)


def _optuna_dashboard(p: _Planner) -> ServiceSpec:
    storage = p.config.optuna.storage
    sqlite = sqlite_file(storage)
    if sqlite is not None:
        storage = f"sqlite:///{_absolute(sqlite, p.workdir)}"
    exe = p.facts.binary("optuna-dashboard") or "optuna-dashboard"
    argv = (exe, storage, *p.listen("optuna-dashboard"))
    return p.server("optuna-dashboard", argv, "/api/meta", "/dashboard", ready_timeout=90.0)


def _api_ports(p: _Planner) -> list[int]:
    return replica_ports(p.port["api"], p.api_replicas)


def _api(p: _Planner) -> ServiceSpec:
    argv = p.cli("api", *p.listen("api"))
    if p.api_replicas > 1:
        argv = (*argv, "--workers", str(p.api_replicas))
    extra = tuple(_api_ports(p)[1:])
    return p.server("api", argv, "/health", "/docs", ready_timeout=180.0, extra_ports=extra)


def _exporter(p: _Planner) -> ServiceSpec:
    argv = p.cli("run", "--mode", "continuous", *p.listen("exporter"))
    return p.server("exporter", argv, "/healthz", "/metrics")


def _ui(p: _Planner) -> ServiceSpec:
    env = {"STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    argv = p.cli("ui", "--port", str(p.port["ui"]))
    return p.server("ui", argv, "/_stcore/health", env=env)


def _sinks(p: _Planner) -> ServiceSpec:
    smtp = p.port["sinks-smtp"]
    argv = p.cli("sinks", *p.listen("sinks"), "--smtp-port", str(smtp))
    return p.server("sinks", argv, HEALTH_PATH, SLACK_PATH, ready_timeout=60.0, extra_ports=(smtp,))


def _alertmanager(p: _Planner) -> ServiceSpec:
    assert p.facts.alertmanager_base is not None
    path = p.run_dir / "alertmanager.yml"
    sinks = (
        (p.address("sinks-smtp"), p.local("sinks", SLACK_PATH)) if "sinks" in p.available else None
    )
    p.files[path] = stack_alertmanager_config(
        p.facts.alertmanager_base,
        p.config.stack,
        webhook_url=p.local("exporter", "/alerts/webhook"),
        sinks=sinks,
        secrets_dir=p.secrets_dir,
        secrets=p.facts.secrets,
    )
    exe = p.facts.binary(*ALERTMANAGER_BINARIES) or ALERTMANAGER_BINARIES[0]
    argv = (
        exe,
        f"--config.file={path}",
        f"--storage.path={p.run_dir / 'alertmanager-data'}",
        f"--web.listen-address={p.address('alertmanager')}",
        # An empty cluster address: a single instance, no gossip port (9094) opened.
        "--cluster.listen-address=",
    )
    return p.server("alertmanager", argv, "/-/ready", ready_timeout=60.0)


def _prometheus(p: _Planner) -> ServiceSpec:
    assert p.facts.prometheus_base is not None
    stack = p.config.stack
    path = p.run_dir / "prometheus.yml"
    rules_dir = promconfig.PROMETHEUS_RULES_DIR
    if stack.alert_for_scale != 1:
        rules_dir = p.run_dir / "rules"
        p.files.update(scaled_rules(rules_dir, stack.alert_for_scale))
    api = None
    if "api" in p.available:
        # every replica, from a file Prometheus re-reads (file-based service discovery)
        api = p.run_dir / "api-targets.yml"
        p.files[api] = promconfig.file_sd_targets(f"{LOCAL_HOST}:{n}" for n in _api_ports(p))
    p.files[path] = promconfig.render_prometheus_config(
        p.facts.prometheus_base,
        exporter=p.address("exporter"),
        api=api,
        alertmanager=p.address("alertmanager") if "alertmanager" in p.available else None,
        prometheus=p.address("prometheus"),
        rules_dir=rules_dir,
        scrape_interval=stack.scrape_interval,
        evaluation_interval=stack.evaluation_interval,
    )
    argv: tuple[str, ...] = (
        p.facts.binary("prometheus") or "prometheus",
        f"--config.file={path}",
        f"--storage.tsdb.path={p.run_dir / 'prometheus-data'}",
        # Below every rule's `for:`, so a restart restores firing alerts (docs/runbook.md);
        # never above the shortest `for:` a scaled demo or test runs with.
        f"--rules.alert.for-grace-period={grace_period(stack.alert_for_scale)}",
        f"--web.listen-address={p.address('prometheus')}",
    )
    if stack.alert_resend_delay:
        argv = (*argv, f"--rules.alert.resend-delay={stack.alert_resend_delay}")
    return p.server("prometheus", argv, "/-/ready", ready_timeout=60.0)


def _simulator(p: _Planner) -> ServiceSpec:
    sim = p.config.simulator
    argv = p.cli(
        "simulate",
        "--api",
        p.local("api"),
        "--rate",
        f"{sim.rate:g}",
        "--duration",
        f"{sim.duration_seconds:g}",
        "--scenario",
        sim.scenario,
        "--label-delay",
        f"{sim.label_delay_seconds:g}",
    )
    after = ("api",) if "api" in p.available else ()
    return ServiceSpec("simulator", "client", (argv,), after=after)


#: The builder of each service's spec.
BUILDERS: dict[str, Callable[[_Planner], ServiceSpec]] = {
    "trainer": _trainer,
    "mlflow": _mlflow,
    "optuna-dashboard": _optuna_dashboard,
    "api": _api,
    "exporter": _exporter,
    "ui": _ui,
    "sinks": _sinks,
    "alertmanager": _alertmanager,
    "prometheus": _prometheus,
    "simulator": _simulator,
}


def plan_stack(
    config: MonitoringConfig,
    *,
    services: Sequence[str] | None,
    no_monitoring: bool,
    facts: Facts,
    config_path: str | None,
    workdir: Path,
    ports: Mapping[str, int] | None = None,
    run_dir: Path = Path("data/stack"),
    log_dir: Path = Path("logs"),
    secrets_dir: Path = Path("secrets"),
    api_replicas: int = 1,
) -> StackPlan:
    """What `up` will start, in order, and what it leaves out and why. Pure."""
    chosen = select_services(services, no_monitoring)
    available, skipped = _runnable(chosen, config, facts)
    planner = _Planner(
        config=config,
        facts=facts,
        port=service_ports(config, ports),
        available=available,
        common=("--config", config_path) if config_path else (),
        workdir=workdir,
        run_dir=_absolute(run_dir, workdir),
        secrets_dir=_absolute(secrets_dir, workdir),
        api_replicas=api_replicas,
    )
    specs = tuple(BUILDERS[name](planner) for name in available)
    if any(s in chosen for s in ("prometheus", "alertmanager")):
        skipped.append(GRAFANA_SKIPPED)
    return StackPlan(specs, tuple(skipped), planner.files, _absolute(log_dir, workdir))
