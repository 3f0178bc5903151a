"""`churn-monitor up`: plan the stack, start it, print its table, run until stopped.

:func:`up` plans with :func:`~exporter.ops.plan.plan_stack` (facts from
:func:`~exporter.ops.facts.gather_facts`), writes the rendered configs, starts the
one-shots, then the servers, then the clients through a
:class:`~exporter.ops.supervisor.Supervisor`, prints the services' URLs and log files,
and turns SIGTERM and Ctrl-C into a clean stop: nothing it started outlives it.
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
from exporter.ops.services import LOCAL_HOST, ServiceSpec
from exporter.ops.supervisor import GRACE_SECONDS, Child, Stopping, Supervisor, port_in_use

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


def _print(line: str) -> None:
    print(line, flush=True)


def _ports_free(plan: StackPlan, say: Callable[[str], None]) -> bool:
    """True when every port of the plan is free; else say which are busy."""
    busy = [
        (spec, number)
        for spec in plan.services
        for number in ((spec.port,) if spec.port is not None else ()) + spec.extra_ports
        if port_in_use(LOCAL_HOST, number)
    ]
    for spec, number in busy:
        say(f"{spec.name}: port {number} on {LOCAL_HOST} is already in use")
    if busy:
        say("nothing started (free the ports, or set other ones in the config or with --port)")
    return not busy


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

    Returns 0 after a requested stop, 1 when a service failed to start or every server
    exited on its own; raises StackError (exit 2) for a bad request, before starting
    anything.
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
    if not _ports_free(plan, say):
        return 1
    for path, content in plan.files.items():
        promconfig.write_config(content, path)

    stop = threading.Event()
    supervisor = Supervisor(plan.log_dir, out=say, grace=grace, cwd=workdir, stop=stop)
    with _stop_on_signals(stop):
        try:
            return _Run(plan, supervisor, workdir, say).run()
        except Stopping:
            return 0
        finally:
            if supervisor.children:
                say("stopping: " + ", ".join(c.spec.name for c in reversed(supervisor.children)))
            supervisor.stop_all()
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
        outcome = self.supervisor.wait_ready(servers)
        for child in servers:
            state, detail = outcome.get(child.spec.name, ("ok", ""))
            if state == "failed":
                return self.failed(child.spec, detail)
            self.status[child.spec.name] = "ready" if state == "ok" else "running, not ready"
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
        self.status[spec.name] = "done"
        self.say(f"{spec.name}: done")
        return 0

    def start_clients(self) -> None:
        """Start each client whose servers are ready; the others are not started."""
        for spec in self.of_kind("client"):
            blocked = [a for a in spec.after if self.status.get(a) != "ready"]
            if blocked:
                self.status[spec.name] = "not started"
                self.say(f"{spec.name}: not started ({', '.join(blocked)} not ready)")
                continue
            self.supervisor.spawn(spec, spec.argv)
            self.status[spec.name] = "running"

    def announce(self) -> None:
        self.say("")
        self.say(format_table(self.plan, self.workdir, self.status))
        self.say("")
        if self.status.get("sinks") == "ready":
            self.say(
                "Email and Slack notifications land in the local outbox: `churn-monitor outbox`."
            )
        self.say("Ctrl-C (or SIGTERM) stops everything.")

    def watch(self, had_servers: bool) -> int:
        """Report children that exit; 1 once every server has exited, 0 once the clients
        of a stack without servers are done (a stop raises :class:`Stopping`)."""
        supervisor = self.supervisor
        while True:
            supervisor.check()
            running_servers = 0
            for child in supervisor.children:
                if child.alive():
                    running_servers += child.spec.kind == "server"
                elif not child.reported:
                    child.reported = True
                    name, status = child.spec.name, child.popen.returncode
                    self.say(f"{name}: exited with status {status}; see {self.log(name)}")
            if had_servers and running_servers == 0:
                self.say("every server has exited")
                return 1
            if not had_servers and not any(c.alive() for c in supervisor.children):
                return 0
            supervisor.stop.wait(0.5)
