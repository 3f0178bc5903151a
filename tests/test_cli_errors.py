"""Every user error of the command line, run as a real process: exactly one line on
stderr naming the thing and what to do, and the documented exit status (README,
docs/runbook.md); the traceback only with --verbose."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from exporter.cli.errors import VERBOSE_HINT, describe

from .support import churn_monitor, free_port


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield busy.getsockname()[1]


def _config(tmp_path: Path, name: str, raw: dict) -> str:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


@pytest.mark.integration
def test_each_user_error_prints_one_line_and_its_status(tmp_path: Path, busy_port: int) -> None:
    (tmp_path / "bad.parquet").write_bytes(b"a,b\n\x00\x01\n")
    unreachable_db = _config(
        tmp_path, "db", {"history": {"url": f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/h"}}
    )
    unreachable_registry = _config(
        tmp_path, "registry", {"model": {"tracking_uri": f"http://127.0.0.1:{free_port()}"}}
    )
    busy = _config(tmp_path, "busy", {"exporter": {"port": busy_port}})
    cases: dict[str, tuple[list[str], int, str]] = {
        "missing file": (["run", "--current", "/nonexistent.csv"], 1, "/nonexistent.csv"),
        "missing config": (["run", "--config", "/nonexistent.yaml"], 2, "/nonexistent.yaml"),
        "unreadable file": (["train", "--data", "bad.parquet"], 2, "bad.parquet"),
        "no registered model": (["promote"], 1, "run `churn-monitor train` first"),
        "missing folder": (["outbox", "--dir", "/nonexistent"], 2, "--dir /nonexistent"),
        "unreachable database": (["history", "--config", unreachable_db], 1, "database"),
        "unreachable registry": (["promote", "--config", unreachable_registry], 1, "tracking_uri"),
        "port in use (run)": (
            ["run", "--mode", "continuous", "--port", str(busy_port)],
            1,
            f"port {busy_port}",
        ),
        "port in use (api)": (["api", "--port", str(busy_port)], 1, f"port {busy_port}"),
        "port in use (sinks)": (
            ["sinks", "--port", "0", "--smtp-port", str(busy_port)],
            1,
            f"port {busy_port} on 127.0.0.1 is already in use: stop what listens there, "
            "or pick another with --smtp-port",
        ),
        "port in use (up)": (
            ["up", "--config", busy, "--services", "exporter"],
            1,
            f"port {busy_port} (exporter)",
        ),
    }
    running = {
        name: subprocess.Popen(
            churn_monitor(*args),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, _, _) in cases.items()
    }
    for name, process in running.items():
        _, stderr = process.communicate(timeout=300)  # nine imports at once on a busy machine
        _, status, named = cases[name]
        lines = stderr.splitlines()
        assert len(lines) == 1, f"{name}: {stderr}"
        assert named in lines[0], f"{name}: {lines[0]}"
        assert "Traceback" not in stderr
        assert process.returncode == status, f"{name}: {lines[0]}"


def test_verbose_shows_the_traceback(tmp_path: Path) -> None:
    raw = {"history": {"url": f"postgresql+psycopg://u:p@127.0.0.1:{free_port()}/h"}}
    config = _config(tmp_path, "db", raw)
    done = subprocess.run(
        churn_monitor("--verbose", "history", "--config", config),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("churn-monitor history: database unreachable")


def test_only_without_verbose_does_the_line_offer_the_traceback() -> None:
    err = KeyError("comparison")
    assert describe(err) == f"KeyError: 'comparison' ({VERBOSE_HINT})"
    assert describe(err, verbose=True) == "KeyError: 'comparison'"


def test_a_url_that_is_not_http_is_a_usage_error(tmp_path: Path) -> None:
    done = subprocess.run(
        churn_monitor("notify-test", "--alertmanager", "localhost:9093"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].endswith(
        "argument --alertmanager: expected http://HOST:PORT, got 'localhost:9093'"
    )
