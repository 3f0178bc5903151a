"""The children of `up`: started in their own process groups, polled, stopped.

:class:`Supervisor` starts each child in its own session (so its process group is its
pid), logs it to ``logs/<service>.log``, polls the health endpoints against a deadline,
and stops every group it started: SIGTERM, then SIGKILL after a grace period. A group
counts as alive while /proc shows a live (not zombie) process in it. A server that exits
on its own is restarted under a :class:`RestartPolicy` (exponential backoff; too many
crashes in a short period raise :class:`CrashLoop`).
"""

from __future__ import annotations

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
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from exporter.ops.services import ServiceSpec

GRACE_SECONDS = 10.0


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
    """True when nothing can bind `host`:`port` now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


@dataclass
class Child:
    """A started child: its spec, process and open log file."""

    spec: ServiceSpec
    popen: subprocess.Popen[bytes]
    log: IO[bytes]
    #: Its exit has been told to the user.
    reported: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None


class Stopping(Exception):
    """SIGTERM or Ctrl-C arrived: stop what was started."""


class CrashLoop(Exception):
    """A server crashed too often in a short period: the stack stops."""

    def __init__(self, child: Child, crashes: int, window: float) -> None:
        super().__init__(
            f"{child.spec.name}: crashed {crashes} times within {window:g}s "
            f"(last exit status {child.popen.returncode})"
        )
        self.service = child.spec.name


@dataclass
class RestartPolicy:
    """When a crashed server is started again: after `backoff` seconds, doubled on each
    crash still within `window` seconds, at most `backoff_max`; never once it has crashed
    `max_crashes` times within `window` seconds."""

    max_crashes: int = 5
    window: float = 300.0
    backoff: float = 1.0
    backoff_max: float = 30.0
    #: Service -> monotonic times of its recent crashes.
    crashes: dict[str, deque[float]] = field(default_factory=dict)

    def crash(self, service: str, now: float) -> float | None:
        """Record a crash of `service` at `now`; the delay before its restart, or None
        when it must not be restarted."""
        recent = self.crashes.setdefault(service, deque())
        recent.append(now)
        while recent and recent[0] < now - self.window:
            recent.popleft()
        if len(recent) >= self.max_crashes:
            return None
        return float(min(self.backoff * 2 ** (len(recent) - 1), self.backoff_max))


#: Outcome of a health wait: ``ok``, ``not-ready`` or ``failed``, and a detail.
Readiness = tuple[str, str]


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
        policy: RestartPolicy | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.out = out
        self.grace = grace
        self.cwd = cwd
        self.stop = stop or threading.Event()
        self.policy = policy or RestartPolicy()
        self.children: list[Child] = []
        #: Service -> how often it was restarted.
        self.restarts: Counter[str] = Counter()

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def check(self) -> None:
        """Raise :class:`Stopping` once a stop was requested."""
        if self.stop.is_set():
            raise Stopping

    def spawn(self, spec: ServiceSpec, argv: Sequence[str], *, append: bool = False) -> Child:
        """Start `argv` for `spec` in its own session, logging to its log file."""
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

    def restart(self, child: Child) -> Child:
        """Start the server `child`, which exited, again after its backoff (interruptible);
        raise :class:`CrashLoop` when the policy allows no more restarts."""
        name = child.spec.name
        delay = self.policy.crash(name, time.monotonic())
        if delay is None:
            raise CrashLoop(child, self.policy.max_crashes, self.policy.window)
        self.out(
            f"{name}: exited with status {child.popen.returncode}; restarting in {delay:g}s "
            f"(restart {self.restarts[name] + 1}; see {self.log_path(name)})"
        )
        # what is left of its group (a worker process) goes before the new one starts
        if group_alive(child.pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
        child.log.close()
        self.children.remove(child)
        self.stop.wait(delay)
        self.check()
        new = self.spawn(child.spec, child.spec.argv, append=True)
        self.restarts[name] += 1
        return new

    def wait_ready(self, children: Sequence[Child]) -> dict[str, Readiness]:
        """Poll each child's health URL until 200, exit or deadline (interruptible); a
        child that exits meanwhile is restarted (:meth:`restart`).

        Returns service -> (outcome, detail) with outcome ``ok``, ``not-ready`` (it
        answers, but not 200, at the deadline) or ``failed`` (never answered).
        """
        start = time.monotonic()
        pending = {c.spec.name: c for c in children if c.spec.health_url}
        result: dict[str, Readiness] = {}
        while pending:
            self.check()
            for name, child in list(pending.items()):
                if child.popen.poll() is not None:
                    pending[name] = self.restart(child)
                    continue
                outcome = _readiness(child, start)
                if outcome is not None:
                    result[name] = outcome
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


def _readiness(child: Child, start: float) -> Readiness | None:
    """One poll of a child's health (polled since `start`, monotonic): its outcome, or
    None while it may still get ready."""
    spec = child.spec
    assert spec.health_url is not None
    status = probe(spec.health_url)
    if status == 200:
        return ("ok", "")
    if time.monotonic() - start <= spec.ready_timeout:
        return None
    if status is None:
        return ("failed", f"no answer at {spec.health_url} in {spec.ready_timeout:.0f}s")
    return ("not-ready", f"{spec.health_url} answers {status}")
