"""Helpers the integration tests share: free ports, polling, processes stopped by pid, and
copies of trained stores."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll `check` until it returns a truthy value; fail naming `what` at the deadline.

    Exceptions raised by `check` count as "not yet" (a server that is still starting
    refuses connections), and the last one is shown when the deadline passes.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def http_get(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET `url`; return (status, body) for any status, raising only on connection errors."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


class Process:
    """A child process in its own session, its output in a log file, stopped by pid."""

    def __init__(
        self,
        args: Sequence[str],
        log_path: Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.args = list(args)
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            self.args,
            cwd=cwd,
            env={**os.environ, **(env or {})},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.popen.pid

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL of the whole process group after `timeout` seconds.

        A slow clean exit past `timeout` becomes -9: a test that asserts the exit status
        passes a generous `timeout`."""
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()
        return self.popen.returncode


def copy_store(source: Path, target: Path) -> Path:
    """Copy a folder of trained stores (an MLflow SQLite tracking store with its
    artifacts, an Optuna study, the reference) to `target`, with the absolute paths the
    SQLite files hold (artifact locations, parameters) pointed into the copy.

    A test that trains into or promotes in the copy leaves `source`, which other tests
    share, as it was, whatever order the tests run in.
    """
    shutil.copytree(source, target)
    old, new = f"{source}{os.sep}", f"{target}{os.sep}"
    for database in sorted(target.rglob("*.db")):
        with contextlib.closing(sqlite3.connect(database)) as conn, conn:
            tables = [
                row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            for table in tables:
                for column in [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]:
                    conn.execute(
                        f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                        f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0',
                        (old, new, old),
                    )
    return target


def churn_monitor(*args: str) -> list[str]:
    """The command line of `churn-monitor ARGS` with this interpreter."""
    return [sys.executable, "-m", "exporter", *args]
