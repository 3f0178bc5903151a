"""`churn-monitor up`: the whole stack as local processes.

`up` starts what ``docker compose up`` starts, without Docker: the one-shot trainer
(``setup`` then ``train --if-no-champion``), the MLflow tracking server, the Optuna
dashboard, the prediction API, the exporter, the Streamlit form, Prometheus and
Alertmanager (when their binaries are installed) and, only when asked for, the traffic
simulator. Every child runs from the working directory with the same ``--config``.

Two halves, kept apart:

* **Planning** (pure, no I/O): :func:`plan_stack` turns the config, the requested
  services and the :class:`Facts` about this machine (which binaries and CLI commands
  exist, which secret files are present) into a :class:`StackPlan`: the command line,
  port, health URL and log file of each service, the services left out with the reason,
  and the Prometheus and Alertmanager configs to write (rendered from the repository's
  files by :mod:`exporter.ops.promconfig`, targets on 127.0.0.1). :func:`gather_facts` is the
  I/O that feeds it.
* **Process handling**: :class:`Supervisor` starts each child in its own session (so
  its process group is its pid), logs it to ``logs/<service>.log``, polls the health
  endpoints against a deadline, and stops every group it started: SIGTERM, then SIGKILL
  after a grace period. :func:`up` ties both together and turns SIGTERM and Ctrl-C into
  a clean stop: nothing it started outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any, Literal

from exporter.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, MonitoringConfig, StackConfig
from exporter.data.dburl import sqlite_file
from exporter.ops import promconfig
from exporter.ops.outbox import HEALTH_PATH, SLACK_PATH

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

#: The design's ports (DESIGN.md); `sinks` is the local Slack webhook (and health),
#: `sinks-smtp` the local SMTP server (Mailpit's ports).
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

#: Secret files looked for in the secrets folder (``secrets/`` locally; mounted at
#: /etc/alertmanager/secrets in compose), named as in alertmanager.yml.
SMTP_PASSWORD_FILE = "smtp_password"
SLACK_WEBHOOK_FILE = "slack_webhook_url"

#: Alertmanager binary names: Debian's package, then the upstream release.
ALERTMANAGER_BINARIES = ("prometheus-alertmanager", "alertmanager")

#: The tracking server's job runner (GenAI evaluation, online scoring) serves nothing
#: here; without it the server is one process that stops at once on SIGTERM.
MLFLOW_NO_JOBS = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

LOCAL_HOST = "127.0.0.1"
GRACE_SECONDS = 10.0

Kind = Literal["oneshot", "server", "client"]


class StackError(ValueError):
    """A bad request (unknown service, nothing left to start): exit status 2."""


# ----------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Facts:
    """What planning needs to know about this machine (gathered by :func:`gather_facts`)."""

    #: The interpreter the children run with (``python -m exporter ...``).
    python: str
    #: Executable name -> path, or None when it is not installed.
    binaries: Mapping[str, str | None]
    #: The subcommands this version's CLI has (``ui`` may be missing).
    commands: frozenset[str]
    #: Non-empty files present in the secrets folder.
    secrets: frozenset[str] = frozenset()
    #: The repository's prometheus.yml and alertmanager.yml, parsed (None outside a
    #: source checkout).
    prometheus_base: Mapping[str, Any] | None = None
    alertmanager_base: Mapping[str, Any] | None = None


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


@dataclass(frozen=True)
class StackPlan:
    services: tuple[ServiceSpec, ...]
    #: (service, why it is not started), in service order.
    skipped: tuple[tuple[str, str], ...]
    #: Config files to write before starting: path -> mapping (YAML).
    files: Mapping[Path, Mapping[str, Any]]
    log_dir: Path

    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"


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
    ports.update(config.stack.ports)
    for name, port in (overrides or {}).items():
        if name not in DEFAULT_PORTS:
            raise StackError(
                f"--port: {name!r} has no port (choose from {', '.join(DEFAULT_PORTS)})"
            )
        ports[name] = port
    return ports


def _absolute(path: str, workdir: Path) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else workdir / candidate


def stack_alertmanager_config(
    base: Mapping[str, Any],
    stack: StackConfig,
    *,
    webhook_url: str,
    sinks: tuple[str, str] | None,
    secrets_dir: Path,
    secrets: Iterable[str],
) -> dict[str, Any]:
    """alertmanager.yml for `up`: the history webhook at the local exporter; email and
    Slack to the local sinks (``sinks`` = SMTP host:port and Slack URL) when they run,
    else to the relay and webhook of the shipped file with the secrets of
    `secrets_dir`; the ``stack`` section's timers. Routes, receivers, inhibition and
    templates are the shipped ones."""
    if sinks is None:
        rendered = local_alertmanager_config(
            base, webhook_url=webhook_url, secrets_dir=secrets_dir, secrets=secrets
        )
    else:
        smtp, slack = sinks
        rendered = promconfig.to_local_sinks(
            promconfig.render_alertmanager_config(
                base, webhook_url=webhook_url, templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR
            ),
            smtp_smarthost=smtp,
            slack_url=slack,
        )
    return promconfig.render_alertmanager_config(
        rendered,
        group_wait=stack.group_wait,
        group_interval=stack.group_interval,
        repeat_interval=stack.repeat_interval,
    )


def scaled_rules(target_dir: Path, factor: float) -> dict[Path, dict[str, Any]]:
    """The repository's rule files with every ``for:`` times ``factor``: path -> rules."""
    return {
        target_dir / source.name: promconfig.scale_rule_durations(
            promconfig.load_yaml(source), factor
        )
        for source in sorted(promconfig.PROMETHEUS_RULES_DIR.glob("*.yml"))
    }


def grace_period(factor: float) -> str:
    """Prometheus' --rules.alert.for-grace-period: 1m, scaled like the rules' ``for:``."""
    return promconfig.format_duration(60 * factor)


def local_alertmanager_config(
    base: Mapping[str, Any], *, webhook_url: str, secrets_dir: Path, secrets: Iterable[str]
) -> dict[str, Any]:
    """alertmanager.yml for a local run: webhook at the local exporter, absolute
    templates, the secret files of `secrets_dir` when present, Slack off otherwise."""
    present = set(secrets)
    rendered = promconfig.render_alertmanager_config(
        base,
        webhook_url=webhook_url,
        templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR,
        smtp_auth_password_file=(
            secrets_dir / SMTP_PASSWORD_FILE if SMTP_PASSWORD_FILE in present else None
        ),
        slack_api_url_file=(
            secrets_dir / SLACK_WEBHOOK_FILE if SLACK_WEBHOOK_FILE in present else None
        ),
    )
    return rendered if SLACK_WEBHOOK_FILE in present else promconfig.without_slack(rendered)


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
) -> StackPlan:
    """What `up` will start, in order, and what it leaves out and why. Pure."""
    chosen = select_services(services, no_monitoring)
    port = service_ports(config, ports)
    run = _absolute(str(run_dir), workdir)
    secrets = _absolute(str(secrets_dir), workdir)
    skipped: list[tuple[str, str]] = []
    files: dict[Path, Mapping[str, Any]] = {}
    py = facts.python
    common = ("--config", config_path) if config_path else ()

    def cli(*args: str) -> tuple[str, ...]:
        return (py, "-m", "exporter", args[0], *common, *args[1:])

    def local(name: str, path: str = "") -> str:
        return f"http://{LOCAL_HOST}:{port[name]}{path}"

    def binary(*names: str) -> str | None:
        return next((facts.binaries[n] for n in names if facts.binaries.get(n)), None)

    # Which services can run here at all.
    available: list[str] = []
    for name in chosen:
        reason = None
        if name == "mlflow" and sqlite_file(config.model.tracking_uri) is None:
            reason = (
                f"model.tracking_uri is {config.model.tracking_uri!r}, not a local SQLite "
                "store: the tracking server is expected to run already"
            )
        elif name == "optuna-dashboard" and not binary("optuna-dashboard"):
            reason = "`optuna-dashboard` is not installed (pip install optuna-dashboard)"
        elif name == "ui" and "ui" not in facts.commands:
            reason = "`churn-monitor ui` is not available in this version"
        elif name == "prometheus":
            if not binary("prometheus"):
                reason = "binary `prometheus` not found on PATH (apt-get install prometheus)"
            elif facts.prometheus_base is None:
                reason = "prometheus/prometheus.yml not found (run from a source checkout)"
        elif name == "alertmanager":
            if not binary(*ALERTMANAGER_BINARIES):
                reason = (
                    "binary `prometheus-alertmanager` (or `alertmanager`) not found on PATH "
                    "(apt-get install prometheus-alertmanager)"
                )
            elif facts.alertmanager_base is None:
                reason = "alertmanager/alertmanager.yml not found (run from a source checkout)"
        if reason:
            skipped.append((name, reason))
        else:
            available.append(name)
    if "sinks" in available and "alertmanager" not in available:
        available.remove("sinks")
        skipped.append(("sinks", "Alertmanager is not started: nothing would send to them"))

    def server(
        name: str, argv: Sequence[str], health: str, path: str = "", **extra: Any
    ) -> ServiceSpec:
        return ServiceSpec(
            name,
            "server",
            (tuple(argv),),
            port=port[name],
            health_url=local(name, health),
            url=local(name, path),
            **extra,
        )

    def listen(name: str) -> tuple[str, ...]:
        return ("--host", LOCAL_HOST, "--port", str(port[name]))

    def web(name: str) -> str:
        return f"--web.listen-address={LOCAL_HOST}:{port[name]}"

    specs: list[ServiceSpec] = []
    for name in available:
        if name == "trainer":
            steps = (cli("setup"), cli("train", "--if-no-champion"))
            specs.append(ServiceSpec(name, "oneshot", steps))
        elif name == "mlflow":
            db = _absolute(str(sqlite_file(config.model.tracking_uri) or ""), workdir)
            store = ("--backend-store-uri", f"sqlite:///{db}")
            artifacts = ("--artifacts-destination", str(db.parent / "artifacts"))
            argv = (py, "-m", "mlflow", "server", *listen(name), *store, *artifacts)
            env = {"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", **MLFLOW_NO_JOBS}
            specs.append(
                server(name, (*argv, "--workers", "1"), "/health", ready_timeout=180.0, env=env)
            )
        elif name == "optuna-dashboard":
            storage = config.optuna.storage
            sqlite = sqlite_file(storage)
            if sqlite is not None:
                storage = f"sqlite:///{_absolute(str(sqlite), workdir)}"
            argv = (binary("optuna-dashboard") or "optuna-dashboard", storage, *listen(name))
            specs.append(server(name, argv, "/api/meta", "/dashboard", ready_timeout=90.0))
        elif name == "api":
            argv = cli("api", *listen(name))
            specs.append(server(name, argv, "/health", "/docs", ready_timeout=180.0))
        elif name == "exporter":
            argv = cli("run", "--mode", "continuous", *listen(name))
            specs.append(server(name, argv, "/healthz", "/metrics"))
        elif name == "ui":
            env = {
                "STREAMLIT_SERVER_HEADLESS": "true",
                "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
            }
            argv = cli("ui", "--port", str(port[name]))
            specs.append(server(name, argv, "/_stcore/health", env=env))
        elif name == "sinks":
            argv = cli("sinks", *listen(name), "--smtp-port", str(port["sinks-smtp"]))
            spec = server(name, argv, HEALTH_PATH, SLACK_PATH, ready_timeout=60.0)
            specs.append(replace(spec, extra_ports=(port["sinks-smtp"],)))
        elif name == "alertmanager":
            assert facts.alertmanager_base is not None
            path = run / "alertmanager.yml"
            sinks = (
                (f"{LOCAL_HOST}:{port['sinks-smtp']}", local("sinks", SLACK_PATH))
                if "sinks" in available
                else None
            )
            files[path] = stack_alertmanager_config(
                facts.alertmanager_base,
                config.stack,
                webhook_url=local("exporter", "/alerts/webhook"),
                sinks=sinks,
                secrets_dir=secrets,
                secrets=facts.secrets,
            )
            exe = binary(*ALERTMANAGER_BINARIES) or ALERTMANAGER_BINARIES[0]
            storage_flag = f"--storage.path={run / 'alertmanager-data'}"
            argv = (exe, f"--config.file={path}", storage_flag, web(name))
            # An empty cluster address: a single instance, no gossip port (9094) opened.
            argv = (*argv, "--cluster.listen-address=")
            specs.append(server(name, argv, "/-/ready", ready_timeout=60.0))
        elif name == "prometheus":
            assert facts.prometheus_base is not None
            path = run / "prometheus.yml"
            manager = "alertmanager" in available
            rules_dir = promconfig.PROMETHEUS_RULES_DIR
            if config.stack.alert_for_scale != 1:
                rules_dir = run / "rules"
                files.update(scaled_rules(rules_dir, config.stack.alert_for_scale))
            files[path] = promconfig.render_prometheus_config(
                facts.prometheus_base,
                exporter=f"{LOCAL_HOST}:{port['exporter']}",
                api=f"{LOCAL_HOST}:{port['api']}" if "api" in available else None,
                alertmanager=f"{LOCAL_HOST}:{port['alertmanager']}" if manager else None,
                prometheus=f"{LOCAL_HOST}:{port[name]}",
                rules_dir=rules_dir,
                scrape_interval=config.stack.scrape_interval,
                evaluation_interval=config.stack.evaluation_interval,
            )
            exe = binary("prometheus") or "prometheus"
            storage_flag = f"--storage.tsdb.path={run / 'prometheus-data'}"
            # Below every rule's `for:`, so a restart restores firing alerts (docs/runbook.md);
            # never above the shortest `for:` a scaled demo or test runs with.
            grace = f"--rules.alert.for-grace-period={grace_period(config.stack.alert_for_scale)}"
            argv = (exe, f"--config.file={path}", storage_flag, grace, web(name))
            if config.stack.alert_resend_delay:
                argv = (*argv, f"--rules.alert.resend-delay={config.stack.alert_resend_delay}")
            specs.append(server(name, argv, "/-/ready", ready_timeout=60.0))
        elif name == "simulator":
            sim = config.simulator
            argv = cli(
                "simulate",
                "--api",
                local("api"),
                "--rate",
                f"{sim.rate:g}",
                "--duration",
                f"{sim.duration_seconds:g}",
                "--scenario",
                sim.scenario,
                "--label-delay",
                f"{sim.label_delay_seconds:g}",
            )
            after = ("api",) if "api" in available else ()
            specs.append(ServiceSpec(name, "client", (argv,), after=after))
    if any(s in chosen for s in ("prometheus", "alertmanager")):
        skipped.append(
            (
                "grafana",
                "not started by `up` (no local Grafana): use `docker compose up`, or point "
                "your Grafana at grafana/provisioning (docs/dashboards.md)",
            )
        )
    return StackPlan(tuple(specs), tuple(skipped), files, _absolute(str(log_dir), workdir))


def _cli_commands() -> frozenset[str]:
    from exporter.cli.main import build_parser

    parser = build_parser()
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            return frozenset(action.choices)
    return frozenset()


def _script(name: str) -> str | None:
    """A console script of this environment (beside the interpreter), else on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    import shutil

    return shutil.which(name)


def gather_facts(secrets_dir: Path = Path("secrets")) -> Facts:
    """Look at this machine: binaries, CLI commands, secret files, the repo's configs."""
    import shutil

    names = ("prometheus", *ALERTMANAGER_BINARIES)
    binaries: dict[str, str | None] = {name: shutil.which(name) for name in names}
    binaries["optuna-dashboard"] = _script("optuna-dashboard")
    secrets = frozenset(
        name
        for name in (SMTP_PASSWORD_FILE, SLACK_WEBHOOK_FILE)
        if (secrets_dir / name).is_file() and (secrets_dir / name).stat().st_size > 0
    )

    def base(path: Path) -> Mapping[str, Any] | None:
        return promconfig.load_yaml(path) if path.is_file() else None

    return Facts(
        python=sys.executable,
        binaries=binaries,
        commands=_cli_commands(),
        secrets=secrets,
        prometheus_base=base(promconfig.PROMETHEUS_CONFIG),
        alertmanager_base=base(promconfig.ALERTMANAGER_CONFIG),
    )


# ---------------------------------------------------------------------- process handling


def _set_parent_death_signal() -> None:
    """In the child before exec (Linux): get SIGTERM if `up` dies without cleaning up
    (SIGKILL), so not even a killed `up` leaves its direct children running."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def group_alive(pgid: int) -> bool:
    """True while a live (not zombie) process is in process group `pgid`."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = _stat_fields(stat)
        if len(fields) > 2 and int(fields[2]) == pgid and _process_alive(entry, fields[0]):
            return True
    return False


def _stat_fields(stat: str) -> list[str]:
    """``state ppid pgrp ...`` of a /proc stat line (comm may hold spaces and parens)."""
    return stat[stat.rfind(")") + 2 :].split()


def _process_alive(proc_dir: Path, state: str) -> bool:
    """A zombie leader whose other threads still run is alive: the main thread of an
    exiting Python process shows ``Z`` while a worker thread finishes."""
    if state not in ("Z", "X"):
        return True
    try:
        tasks = list((proc_dir / "task").iterdir())
    except OSError:
        return False
    for task in tasks:
        try:
            if _stat_fields((task / "stat").read_text())[0] not in ("Z", "X"):
                return True
        except (OSError, IndexError):
            continue
    return False


def probe(url: str, timeout: float = 3.0) -> int | None:
    """HTTP status of GET `url`, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, ValueError):
        return None


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Child:
    spec: ServiceSpec
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    reported: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class Stopping(Exception):
    """SIGTERM or Ctrl-C arrived: stop what was started."""


class Supervisor:
    """Starts children in their own sessions and stops every group it started."""

    def __init__(
        self,
        log_dir: Path,
        *,
        out: Callable[[str], None] = print,
        grace: float = GRACE_SECONDS,
        cwd: Path | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.out = out
        self.grace = grace
        self.cwd = cwd
        self.stop = stop or threading.Event()
        self.children: list[Child] = []

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def check(self) -> None:
        if self.stop.is_set():
            raise Stopping

    def spawn(self, spec: ServiceSpec, argv: Sequence[str], *, append: bool = False) -> Child:
        self.check()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(spec.name), "ab" if append else "wb")  # noqa: SIM115
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        try:
            popen = subprocess.Popen(
                list(argv),
                cwd=self.cwd,
                env={**os.environ, **spec.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if sys.platform == "linux" else None,
            )
        except OSError:
            log.close()
            raise
        child = Child(spec, popen, log)
        self.children.append(child)
        return child

    def run_oneshot(self, spec: ServiceSpec) -> int:
        """Run each step to completion (interruptible); the first failing status, or 0."""
        for index, argv in enumerate(spec.steps):
            child = self.spawn(spec, argv, append=index > 0)
            while child.popen.poll() is None:
                self.check()
                time.sleep(0.2)
            child.log.close()
            self.children.remove(child)
            if child.popen.returncode != 0:
                return child.popen.returncode
        return 0

    def wait_ready(self, children: Sequence[Child]) -> dict[str, tuple[str, str]]:
        """Poll each child's health URL until 200, exit or deadline (interruptible).

        Returns service -> (outcome, detail) with outcome ``ok``, ``not-ready`` (it
        answers, but not 200, at the deadline) or ``failed`` (exited or never answered).
        """
        start = time.monotonic()
        pending = {c.spec.name: c for c in children if c.spec.health_url}
        last: dict[str, int | None] = {}
        result: dict[str, tuple[str, str]] = {}
        while pending:
            self.check()
            for name, child in list(pending.items()):
                spec = child.spec
                assert spec.health_url is not None
                if child.popen.poll() is not None:
                    result[name] = ("failed", f"exited with status {child.popen.returncode}")
                    del pending[name]
                    continue
                status = probe(spec.health_url)
                last[name] = status
                if status == 200:
                    result[name] = ("ok", "")
                    del pending[name]
                elif time.monotonic() - start > spec.ready_timeout:
                    if status is None:
                        detail = f"no answer at {spec.health_url} in {spec.ready_timeout:.0f}s"
                        result[name] = ("failed", detail)
                    else:
                        detail = f"{spec.health_url} answers {status}"
                        result[name] = ("not-ready", detail)
                    del pending[name]
            if pending:
                time.sleep(0.5)
        return result

    def stop_all(self) -> None:
        """SIGTERM every group started, SIGKILL those alive after the grace period."""
        children = [c for c in self.children if group_alive(c.pid) or c.alive()]
        for child in reversed(children):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline:
            for child in children:
                child.popen.poll()
            if not any(group_alive(c.pid) for c in children):
                break
            time.sleep(0.1)
        for child in children:
            if group_alive(child.pid) or child.alive():
                self.out(f"{child.spec.name}: still running after {self.grace:.0f}s: SIGKILL")
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.pid, signal.SIGKILL)
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(5)
            child.log.close()
        self.children = []


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join("    " + line for line in text.splitlines()[-lines:])


def _display(argv: Sequence[str]) -> str:
    """A child's command line as a person would type it (``churn-monitor train ...``)."""
    args = list(argv)
    if args[1:3] == ["-m", "exporter"]:
        args = ["churn-monitor", *args[3:]]
    return " ".join(args)


def _relative(path: Path, workdir: Path) -> str:
    try:
        return str(path.relative_to(workdir))
    except ValueError:
        return str(path)


def format_table(plan: StackPlan, workdir: Path, status: Mapping[str, str]) -> str:
    """The services, their URLs, state and log files as an aligned text table."""
    rows = [("service", "url", "state", "log")]
    for spec in plan.services:
        rows.append(
            (
                spec.name,
                spec.url or "-",
                status.get(spec.name, "-"),
                _relative(plan.log_path(spec.name), workdir),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 3 else cell for i, cell in enumerate(row))
        for row in rows
    )


def resolve_config_path(path: str | None) -> str | None:
    """The config file every child gets: `path`, ``$CHURN_MONITOR_CONFIG`` or the default
    file when it exists (absolute), else None (the children use built-in defaults)."""
    named = path or os.environ.get(CONFIG_ENV)
    if named:
        return str(Path(named).resolve())
    return str(DEFAULT_CONFIG_PATH.resolve()) if DEFAULT_CONFIG_PATH.is_file() else None


def up(
    config: MonitoringConfig,
    services: Sequence[str] | None = None,
    no_monitoring: bool = False,
    *,
    config_path: str | None = None,
    ports: Mapping[str, int] | None = None,
    workdir: Path | None = None,
    out: Callable[[str], None] | None = None,
    grace: float = GRACE_SECONDS,
) -> int:
    """Start the stack, print its URLs, run until SIGTERM or Ctrl-C, stop every child.

    Returns 0 after a requested stop, 1 when a service failed to start or every server
    exited on its own; raises StackError (exit 2) for a bad request, before starting
    anything.
    """
    workdir = (workdir or Path.cwd()).resolve()

    def say(line: str) -> None:
        (out or (lambda text: print(text, flush=True)))(line)

    config_path = resolve_config_path(config_path)
    facts = gather_facts(workdir / "secrets")
    plan = plan_stack(
        config,
        services=services,
        no_monitoring=no_monitoring,
        facts=facts,
        config_path=config_path,
        workdir=workdir,
        ports=ports,
    )
    for name, reason in plan.skipped:
        say(f"{name}: {reason}")
    if not plan.services:
        say("nothing to start")
        return 1
    busy = [
        (spec, number)
        for spec in plan.services
        for number in ((spec.port,) if spec.port is not None else ()) + spec.extra_ports
        if port_in_use(LOCAL_HOST, number)
    ]
    if busy:
        for spec, number in busy:
            say(f"{spec.name}: port {number} on {LOCAL_HOST} is already in use")
        say("nothing started (free the ports, or set other ones in the config or with --port)")
        return 1
    for path, content in plan.files.items():
        promconfig.write_config(content, path)

    stop = threading.Event()
    supervisor = Supervisor(plan.log_dir, out=say, grace=grace, cwd=workdir, stop=stop)
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    status: dict[str, str] = {}
    code = 0
    try:
        code = _run(plan, supervisor, workdir, status, say)
    except Stopping:
        code = 0
    finally:
        if supervisor.children:
            say("stopping: " + ", ".join(c.spec.name for c in reversed(supervisor.children)))
        supervisor.stop_all()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        say("stopped")
    return code


def _run(
    plan: StackPlan,
    supervisor: Supervisor,
    workdir: Path,
    status: dict[str, str],
    say: Callable[[str], None],
) -> int:
    def failed(spec: ServiceSpec, detail: str) -> int:
        say(f"{spec.name}: {detail}; last lines of {_relative(plan.log_path(spec.name), workdir)}:")
        say(_tail(plan.log_path(spec.name)))
        return 1

    for spec in (s for s in plan.services if s.kind == "oneshot"):
        commands = " && ".join(_display(step) for step in spec.steps)
        log = _relative(plan.log_path(spec.name), workdir)
        say(f"{spec.name}: {commands} (log: {log}) ...")
        try:
            code = supervisor.run_oneshot(spec)
        except OSError as err:
            return failed(spec, f"cannot start {spec.argv[0]}: {err.strerror or err}")
        if code != 0:
            return failed(spec, f"exited with status {code}")
        status[spec.name] = "done"
        say(f"{spec.name}: done")

    servers: list[Child] = []
    for spec in (s for s in plan.services if s.kind == "server"):
        try:
            servers.append(supervisor.spawn(spec, spec.argv))
        except OSError as err:
            return failed(spec, f"cannot start {spec.argv[0]}: {err.strerror or err}")
    if servers:
        say("starting: " + ", ".join(c.spec.name for c in servers) + " ...")
    outcome = supervisor.wait_ready(servers)
    for child in servers:
        state, detail = outcome.get(child.spec.name, ("ok", ""))
        if state == "failed":
            return failed(child.spec, detail)
        status[child.spec.name] = "ready" if state == "ok" else "running, not ready"
        if state == "not-ready":
            say(f"{child.spec.name}: running but not ready ({detail}); see its log")
    for spec in (s for s in plan.services if s.kind == "client"):
        blocked = [a for a in spec.after if status.get(a) != "ready"]
        if blocked:
            status[spec.name] = "not started"
            say(f"{spec.name}: not started ({', '.join(blocked)} not ready)")
            continue
        supervisor.spawn(spec, spec.argv)
        status[spec.name] = "running"

    say("")
    say(format_table(plan, workdir, status))
    say("")
    if status.get("sinks") == "ready":
        say("Email and Slack notifications land in the local outbox: `churn-monitor outbox`.")
    say("Ctrl-C (or SIGTERM) stops everything.")
    while True:
        supervisor.check()
        running_servers = 0
        for child in supervisor.children:
            if child.alive():
                running_servers += child.spec.kind == "server"
            elif not child.reported:
                child.reported = True
                log = _relative(plan.log_path(child.spec.name), workdir)
                say(f"{child.spec.name}: exited with status {child.popen.returncode}; see {log}")
        if servers and running_servers == 0:
            say("every server has exited")
            return 1
        if not servers and not any(c.alive() for c in supervisor.children):
            return 0
        supervisor.stop.wait(0.5)


# ---------------------------------------------------------------------- command line


def _service_port(text: str) -> tuple[str, int]:
    name, sep, value = text.partition("=")
    if not sep or name not in DEFAULT_PORTS:
        raise argparse.ArgumentTypeError(
            f"expected SERVICE=PORT with SERVICE one of {', '.join(DEFAULT_PORTS)}, got {text!r}"
        )
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer port, got {value!r}") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 1..65535, got {port}")
    return name, port


def add_up_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``up`` command to the CLI's subparsers; returns its parser (add the
    common ``--config``/``--verbose`` options to it)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "up",
        help="start the whole stack as local processes (Ctrl-C stops it)",
        description="Start MLflow, the Optuna dashboard, the API, the exporter, the UI, the "
        "local email and Slack sinks, Prometheus and Alertmanager as local processes, like "
        "`docker compose up`; logs in logs/<service>.log; Ctrl-C or SIGTERM stops every one.",
    )
    parser.add_argument(
        "--services",
        nargs="+",
        choices=SERVICES,
        metavar="SERVICE",
        help=f"start only these (any of: {', '.join(SERVICES)}; default: all but simulator)",
    )
    parser.add_argument(
        "--no-monitoring",
        action="store_true",
        help=f"leave out {', '.join(MONITORING_SERVICES)}",
    )
    parser.add_argument(
        "--port",
        action="append",
        type=_service_port,
        default=[],
        metavar="SERVICE=PORT",
        help="listen on another port (repeatable), e.g. --port prometheus=9190",
    )
    parser.set_defaults(func=cmd_up)
    return parser


def cmd_up(args: argparse.Namespace, config: MonitoringConfig) -> int:
    try:
        return up(
            config,
            args.services,
            args.no_monitoring,
            config_path=args.config,
            ports=dict(args.port),
        )
    except StackError as err:
        from exporter.cli.main import UsageError

        raise UsageError(str(err)) from None
