"""A real PostgreSQL server for the storage tests, and the ``backend`` fixture.

`postgres_server` (session scope) runs ``initdb`` and ``pg_ctl start`` in a new folder
under the system's temp dir, on a free loopback port, and stops the server by its pid
at the end of the session. Under pytest-xdist each worker that needs it starts its
own server (its own folder and port). ``initdb`` refuses to run as root: as root (CI)
the folder belongs to the ``postgres`` system user of Debian's package and the server
runs as that user (``runuser -u postgres``). The binaries are looked up on PATH, then
in Debian's ``/usr/lib/postgresql/<version>/bin``; missing ones skip the tests on a
laptop and fail them when ``CI`` is set (conftest's `require_binary` policy).

`backend` is parametrized ``sqlite`` / ``postgresql`` and gives a `Backend` whose
``url(name)`` is a fresh, empty database: a SQLite file under the test's tmp_path, or a
new PostgreSQL database dropped after the test.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

#: The system user the server runs as when the tests run as root.
PG_USER = "postgres"
#: How long the server may take to start or stop (seconds).
START_TIMEOUT = 60


def _missing(message: str) -> None:
    from .conftest import in_ci  # conftest imports this module's fixtures

    if in_ci():
        pytest.fail(f"{message}; CI is set, so this is an error", pytrace=False)
    pytest.skip(message)


def _bindir() -> Path | None:
    """The folder of initdb and pg_ctl: PATH first, then Debian's newest version."""
    found = shutil.which("initdb")
    if found is not None and shutil.which("pg_ctl") is not None:
        return Path(found).parent
    bindirs = [Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")]
    bindirs = [d for d in bindirs if d.parent.name.isdigit() and (d / "pg_ctl").exists()]
    return max(bindirs, key=lambda d: int(d.parent.name)) if bindirs else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: its port, folder and the superuser to connect as."""

    bindir: Path
    root: Path
    port: int
    user: str
    as_user: list[str] = field(default_factory=list)

    @property
    def data(self) -> Path:
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def run(self, *args: str, timeout: float = START_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.as_user, *args], capture_output=True, text=True, timeout=timeout, check=False
        )

    def start(self) -> None:
        options = " ".join(
            (
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                # a throwaway server: durability off, for speed
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
                "-c max_connections=100",
            )
        )
        done = self.run(
            str(self.bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-D",
            str(self.data),
            "-l",
            str(self.root / "server.log"),
            "-o",
            options,
        )
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}\n{tail}")

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        try:
            return int(pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        """Immediate shutdown by pid (SIGQUIT to the postmaster: a throwaway server), then
        SIGKILL if it lingers."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + START_TIMEOUT
            while time.monotonic() < deadline:
                os.kill(pid, 0)  # raises ProcessLookupError once it is gone
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)


def _start_server() -> Iterator[PostgresServer]:
    bindir = _bindir()
    if bindir is None:
        _missing("PostgreSQL is not installed (initdb and pg_ctl not found)")
        return
    as_user: list[str] = []
    user = pwd.getpwuid(os.getuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="churn-pg-"))
    if os.getuid() == 0:
        try:
            account = pwd.getpwnam(PG_USER)
        except KeyError:
            shutil.rmtree(root, ignore_errors=True)
            _missing(f"running as root and there is no {PG_USER!r} user to run PostgreSQL as")
            return
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", PG_USER, "--"]
        user = PG_USER
    server = PostgresServer(bindir, root, 0, user, as_user)
    try:
        done = server.run(
            str(bindir / "initdb"),
            "-D",
            str(server.data),
            "-U",
            user,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        for attempt in range(3):  # a port taken between the probe and the start: retry
            server.port = _free_port()
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for this session (this xdist worker): module notes."""
    yield from _start_server()


@dataclass
class Backend:
    """Fresh empty databases of one kind for one test (`url`)."""

    name: str
    tmp_path: Path
    server: PostgresServer | None = None
    created: list[str] = field(default_factory=list)

    def url(self, label: str = "db") -> str:
        if self.server is None:
            return f"sqlite:///{self.tmp_path / label}.db"
        database = f"t_{label}_{uuid.uuid4().hex[:12]}".lower()
        admin = sa.create_engine(self.server.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
        finally:
            admin.dispose()
        self.created.append(database)
        return self.server.url(database)

    def drop(self) -> None:
        if self.server is None or not self.created:
            return
        admin = sa.create_engine(self.server.url(), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                for database in self.created:
                    conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            admin.dispose()


#: The parameters of `backend`: PostgreSQL starts a server, so it is an integration test.
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A `Backend` of each kind: the test runs on SQLite and on PostgreSQL."""
    server = request.getfixturevalue("postgres_server") if request.param == "postgresql" else None
    chosen = Backend(request.param, tmp_path, server)
    try:
        yield chosen
    finally:
        chosen.drop()


def postgres_bindir() -> Path | None:
    """The folder of initdb and pg_ctl (None when PostgreSQL is not installed), for
    callers outside pytest such as benchmarks/."""
    return _bindir()


@contextlib.contextmanager
def throwaway_server() -> Iterator[PostgresServer]:
    """A server outside pytest (benchmarks/): started as `postgres_server` starts it,
    stopped by pid on exit. Check `postgres_bindir` first: without PostgreSQL this
    raises pytest's skip."""
    yield from _start_server()
