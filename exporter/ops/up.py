"""`churn-monitor up`: plan the stack, start it, print its table, run until stopped.

:func:`up` plans with :func:`~exporter.ops.plan.plan_stack` (facts from
:func:`~exporter.ops.facts.gather_facts`), writes the rendered configs, starts the
one-shots, then the servers, then the clients through a
:class:`~exporter.ops.supervisor.Supervisor`, prints the services' URLs and log files,
and turns SIGTERM and Ctrl-C into a clean stop: nothing it started outlives it. A server
that exits on its own is restarted (the config's restart policy, ``stack.restart_*``);
one that crashes too often stops the stack, and `up` exits 1 naming it. The state of
every service is kept in ``data/stack/state.json`` for `churn-monitor status`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from exporter.config import CONFIG_ENV, DEFAULT_CONFIG_PATH, MonitoringConfig
from exporter.ops import promconfig
from exporter.ops.facts import gather_facts
from exporter.ops.plan import StackPlan, plan_stack
from exporter.ops.services import LOCAL_HOST, PortsInUse, ServiceSpec
from exporter.ops.status import STATE_FILE, ServiceState, write_state
from exporter.ops.supervisor import (
    GRACE_SECONDS,
    Child,
    CrashLoop,
    RestartPolicy,
    Stopping,
    Supervisor,
    port_in_use,
    probe,
)

#: A signal handler as :func:`signal.signal` returns it.
Handler = Callable[[int, FrameType | None], Any] | int | None


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


def format_table(
    plan: StackPlan,
    workdir: Path,
    status: Mapping[str, str],
    restarts: Mapping[str, int] | None = None,
) -> str:
    """The services, their URLs, state, restarts and log files as an aligned text table."""
    rows = [("service", "url", "state", "restarts", "log")]
    for spec in plan.services:
        rows.append(
            (
                spec.name,
                spec.url or "-",
                status.get(spec.name, "-"),
                str((restarts or {}).get(spec.name, 0)),
                _relative(plan.log_path(spec.name), workdir),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row))
        for row in rows
    )


def resolve_config_path(path: str | None) -> str | None:
    """The config file every child gets: `path`, ``$CHURN_MONITOR_CONFIG`` or the default
    file when it exists (absolute), else None (the children use built-in defaults)."""
    named = path or os.environ.get(CONFIG_ENV)
    if named:
        return str(Path(named).resolve())
    return str(DEFAULT_CONFIG_PATH.resolve()) if DEFAULT_CONFIG_PATH.is_file() else None


def _print(line: str) -> None:
    print(line, flush=True)


def _check_ports(plan: StackPlan) -> None:
    """Raise PortsInUse naming every port of the plan that something else holds."""
    busy = [
        f"{number} ({spec.name})"
        for spec in plan.services
        for number in ((spec.port,) if spec.port is not None else ()) + spec.extra_ports
        if port_in_use(LOCAL_HOST, number)
    ]
    if busy:
        raise PortsInUse(
            f"port {', '.join(busy)} on {LOCAL_HOST} already in use; nothing started (stop "
            "what listens there, or set another port in the config or with --port SERVICE=PORT)"
        )


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` meanwhile (main thread only); then the old handlers."""
    previous: dict[signal.Signals, Handler] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def up(
    config: MonitoringConfig,
    services: Sequence[str] | None = None,
    no_monitoring: bool = False,
    *,
    config_path: str | None = None,
    ports: Mapping[str, int] | None = None,
    api_replicas: int = 1,
    workdir: Path | None = None,
    out: Callable[[str], None] | None = None,
    grace: float = GRACE_SECONDS,
) -> int:
    """Start the stack, print its URLs, run until SIGTERM or Ctrl-C, stop every child.

    Returns 0 after a requested stop, 1 when a service failed to start or crashed too
    often; raises StackError (exit 2) for a bad request and PortsInUse when a port is
    taken, before starting anything.
    """
    workdir = (workdir or Path.cwd()).resolve()
    say = out or _print
    plan = plan_stack(
        config,
        services=services,
        no_monitoring=no_monitoring,
        facts=gather_facts(workdir / "secrets"),
        config_path=resolve_config_path(config_path),
        workdir=workdir,
        ports=ports,
        api_replicas=api_replicas,
    )
    for name, reason in plan.skipped:
        say(f"{name}: {reason}")
    if not plan.services:
        say("nothing to start")
        return 1
    _check_ports(plan)
    for path, content in plan.files.items():
        promconfig.write_config(content, path)

    stop = threading.Event()
    stack = config.stack
    policy = RestartPolicy(
        max_crashes=stack.restart_max_crashes,
        window=stack.restart_window_seconds,
        backoff=stack.restart_backoff_seconds,
        backoff_max=stack.restart_backoff_max_seconds,
    )
    supervisor = Supervisor(
        plan.log_dir, out=say, grace=grace, cwd=workdir, stop=stop, policy=policy
    )
    with _stop_on_signals(stop):
        try:
            return _Run(plan, supervisor, workdir, say).run()
        except Stopping:
            return 0
        except CrashLoop as err:
            log = _relative(plan.log_path(err.service), workdir)
            say(f"{err}: stopping everything; last lines of {log}:")
            say(_tail(plan.log_path(err.service)))
            return 1
        finally:
            if supervisor.children:
                say("stopping: " + ", ".join(c.spec.name for c in reversed(supervisor.children)))
            supervisor.stop_all()
            (workdir / STATE_FILE).unlink(missing_ok=True)
            say("stopped")


@dataclass
class _Run:
    """One run of a plan: one-shots, servers, clients, then watching until the end."""

    plan: StackPlan
    supervisor: Supervisor
    workdir: Path
    say: Callable[[str], None]
    #: Service -> its state in the table.
    status: dict[str, str] = field(default_factory=dict)

    def log(self, name: str) -> str:
        return _relative(self.plan.log_path(name), self.workdir)

    def set(self, name: str, state: str) -> None:
        """Record `name`'s state and save every service's for `churn-monitor status`."""
        self.status[name] = state
        pids = {c.spec.name: c.pid for c in self.supervisor.children}
        write_state(
            self.workdir,
            [
                ServiceState(
                    s.name,
                    s.kind,
                    s.url,
                    s.health_url,
                    pids.get(s.name),
                    self.status.get(s.name, "-"),
                    self.supervisor.restarts[s.name],
                )
                for s in self.plan.services
            ],
        )

    def failed(self, spec: ServiceSpec, detail: str) -> int:
        self.say(f"{spec.name}: {detail}; last lines of {self.log(spec.name)}:")
        self.say(_tail(self.plan.log_path(spec.name)))
        return 1

    def of_kind(self, kind: str) -> list[ServiceSpec]:
        return [s for s in self.plan.services if s.kind == kind]

    def run(self) -> int:
        """Start everything; 1 when a service failed to start, else as :meth:`watch`."""
        for spec in self.of_kind("oneshot"):
            code = self.run_oneshot(spec)
            if code != 0:
                return code
        servers: list[Child] = []
        for spec in self.of_kind("server"):
            try:
                servers.append(self.supervisor.spawn(spec, spec.argv))
            except OSError as err:
                return self.failed(spec, f"cannot start {spec.argv[0]}: {err.strerror or err}")
        if servers:
            self.say("starting: " + ", ".join(c.spec.name for c in servers) + " ...")
            for child in servers:
                self.set(child.spec.name, "starting")
        outcome = self.supervisor.wait_ready(servers)
        for child in servers:
            state, detail = outcome.get(child.spec.name, ("ok", ""))
            if state == "failed":
                return self.failed(child.spec, detail)
            self.set(child.spec.name, "ready" if state == "ok" else "running, not ready")
            if state == "not-ready":
                self.say(f"{child.spec.name}: running but not ready ({detail}); see its log")
        self.start_clients()
        self.announce()
        return self.watch(bool(servers))

    def run_oneshot(self, spec: ServiceSpec) -> int:
        commands = " && ".join(_display(step) for step in spec.steps)
        self.say(f"{spec.name}: {commands} (log: {self.log(spec.name)}) ...")
        try:
            code = self.supervisor.run_oneshot(spec)
        except OSError as err:
            return self.failed(spec, f"cannot start {spec.argv[0]}: {err.strerror or err}")
        if code != 0:
            return self.failed(spec, f"exited with status {code}")
        self.set(spec.name, "done")
        self.say(f"{spec.name}: done")
        return 0

    def start_clients(self) -> None:
        """Start each client whose servers are ready; the others are not started."""
        for spec in self.of_kind("client"):
            blocked = [a for a in spec.after if self.status.get(a) != "ready"]
            if blocked:
                self.set(spec.name, "not started")
                self.say(f"{spec.name}: not started ({', '.join(blocked)} not ready)")
                continue
            self.supervisor.spawn(spec, spec.argv)
            self.set(spec.name, "running")

    def announce(self) -> None:
        self.say("")
        self.say(format_table(self.plan, self.workdir, self.status, self.supervisor.restarts))
        self.say("")
        if self.status.get("sinks") == "ready":
            self.say(
                "Email and Slack notifications land in the local outbox: `churn-monitor outbox`."
            )
        self.say("Ctrl-C (or SIGTERM) stops everything.")

    def watch(self, had_servers: bool) -> int:
        """Restart servers that exit and report clients that exit, until a stop
        (:class:`Stopping`) or a crash loop (:class:`CrashLoop`); 0 once the clients of a
        stack without servers are done."""
        supervisor = self.supervisor
        while True:
            supervisor.check()
            for child in list(supervisor.children):
                name = child.spec.name
                if child.alive():
                    self.follow(child)
                elif child.spec.kind == "server":
                    self.set(name, "restarting")
                    supervisor.restart(child)
                    self.set(name, "starting")
                elif not child.reported:
                    child.reported = True
                    self.set(name, f"exited ({child.popen.returncode})")
                    status = child.popen.returncode
                    self.say(f"{name}: exited with status {status}; see {self.log(name)}")
            if not had_servers and not any(c.alive() for c in supervisor.children):
                return 0
            supervisor.stop.wait(0.5)

    def follow(self, child: Child) -> None:
        """A restarted server that answers its health check again is ready."""
        spec = child.spec
        if self.status.get(spec.name) != "starting" or spec.health_url is None:
            return
        if probe(spec.health_url, timeout=1.0) == 200:
            self.set(spec.name, "ready")
            restarts = self.supervisor.restarts[spec.name]
            self.say(f"{spec.name}: ready again (restarts: {restarts})")
