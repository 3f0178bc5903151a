"""Continuous mode's monitoring worker (exporter/monitor/worker.py).

- The forwarding seam: jobs run by `run_job` against a `StoreProxy`, their updates sent
  through a real pipe and applied by `receive` to the server's store; a scrape while a
  job is held mid-run is answered from the cached exposition (plain and gzip), with no
  render, and the cache is re-rendered once per batch of updates, not per scrape.
- A worker that dies (SIGKILL) is logged, recorded as a failed run of every job, and
  restarted; the forwarded model feeds ``churn_model_info``.
- The worker exits when the server dies (SIGKILL of the server's pid only), with
  `churn-monitor run --mode continuous` as a real process.

Every wait is a poll with a deadline; no timing is asserted.
"""

from __future__ import annotations

import gzip
import logging
import multiprocessing
import os
import signal
import threading
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.domain.model import ModelRef
from exporter.monitor.exposition import EMPTY, Fragment
from exporter.monitor.httpserver import ExporterServer
from exporter.monitor.jobs import run_job, start_scheduler
from exporter.monitor.server import make_app
from exporter.monitor.store import SnapshotStore
from exporter.monitor.wiring import Monitor, serve
from exporter.monitor.worker import StoreProxy, WorkerSpec, _watch_parent, receive

from .support import Process, churn_monitor, free_port, http_get, wait_until
from .test_exporter_inprocess import GatedJob, gated_builder

DEADLINE = 60.0
STARTUP = 180.0


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return samples(body)


def scrape_bytes(port: int, *, gzipped: bool) -> bytes:
    headers = {"Accept-Encoding": "gzip"} if gzipped else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        assert (response.headers.get("Content-Encoding") == "gzip") is gzipped
        return response.read()


# --------------------------------------------------------------------------- the seam


def score_builder(snapshot: dict[str, float]):
    family = GaugeMetricFamily("churn_test_score", "A score.")
    family.add_metric([], snapshot["score"])
    yield family


def test_receive_applies_a_batch_then_renders_once() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    model = ModelRef("churn-model", "4", "run-4")
    proxy = StoreProxy(writer, lambda: model, {"drift": score_builder})
    proxy.register("drift", 60.0)
    proxy.register("optuna", 60.0)
    proxy.publish("drift", {"score": 0.5})
    proxy.publish("optuna", {"score": 0.7})  # no builder: published, but nothing to show
    proxy.record("drift", ok=True, duration=1.5, at=100.0, error=None)
    writer.close()  # the worker is gone after its updates
    store = SnapshotStore()
    models: list[Any] = []
    changes: list[int] = []
    receive(reader, store, on_model=models.append, on_change=lambda: changes.append(1))
    # the snapshot crossed rendered: its families as text and as a deflate stream
    drift = store.snapshots()["drift"]
    assert isinstance(drift, Fragment)
    assert samples(drift.plain.decode()) == {("churn_test_score", ()): 0.5}
    assert zlib.decompressobj(-zlib.MAX_WBITS).decompress(drift.deflated) == drift.plain
    assert store.snapshots()["optuna"] == EMPTY
    health = store.health()["drift"]
    assert (health.runs, health.success, health.duration_seconds) == (1, True, 1.5)
    assert models == [model, model, model]
    assert changes == [1]  # one batch, one render


def _no_families(snapshot: object):
    raise TypeError(f"cannot show {snapshot!r}")
    yield  # a generator, as every builder


class _Unshowable:
    """A job whose snapshot its builder cannot render."""

    name = "unshowable"
    interval_seconds = 60.0

    def run(self) -> object:
        return threading.Lock()


def test_a_snapshot_that_does_not_render_is_a_failed_run_not_a_lost_one() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    proxy = StoreProxy(writer, lambda: None, {"unshowable": _no_families})
    proxy.register("unshowable", 60.0)
    assert run_job(_Unshowable(), proxy) is False  # type: ignore[arg-type]
    writer.close()
    store = SnapshotStore()
    receive(reader, store, on_model=lambda _m: None, on_change=lambda: None)
    assert store.snapshots() == {}
    health = store.health()["unshowable"]
    assert (health.runs, health.success) == (1, False)
    assert "cannot show" in (health.last_error or "")


def test_the_worker_stops_when_the_server_closes_the_pipe_or_dies() -> None:
    reader, writer = multiprocessing.Pipe(duplex=False)
    stop = threading.Event()
    watch = threading.Thread(target=_watch_parent, args=(reader, os.getppid(), stop))
    watch.start()
    writer.close()  # what the server's death does to its end
    watch.join(DEADLINE)
    assert stop.is_set()


@pytest.fixture
def forwarded_exporter():
    """A gated job run by `run_job` against a StoreProxy, its updates received through a
    pipe into the store a real HTTP server serves (the worker's seam, in threads)."""
    job = GatedJob()
    store = SnapshotStore()
    model = ModelRef("churn-model", "2", "run-2")
    monitor = Monitor(
        config=parse_config({}),
        jobs=[],
        model=lambda: model,
        store=store,
        builders={"gated": gated_builder},
    )
    app = make_app(monitor.registry, store, model=monitor.model)
    reader, writer = multiprocessing.Pipe(duplex=False)
    receiver = threading.Thread(
        target=receive, args=(reader, store), kwargs={"on_change": app.exposition.refresh}
    )
    receiver.start()
    server = ExporterServer(app, "127.0.0.1", 0)
    server.start()
    scheduler = start_scheduler([job], StoreProxy(writer, lambda: model, {"gated": gated_builder}))
    try:
        yield job, server.port, app.exposition, store
    finally:
        job.open()
        scheduler.shutdown(wait=True)
        writer.close()
        receiver.join(DEADLINE)
        server.stop()
        assert not receiver.is_alive()


def test_a_scrape_during_a_held_run_is_answered_from_the_cache(forwarded_exporter) -> None:
    job, port, exposition, store = forwarded_exporter

    def served_runs() -> float | None:
        return scrape(port).get(("churn_test_runs", ()))

    job.open()
    wait_until(lambda: (served_runs() or 0) >= 2, DEADLINE, "two runs forwarded and served")
    job.close()
    finished = job.wait_held()  # a run is held inside the job from now on
    # its predecessor's snapshot and health have crossed the pipe and been rendered
    wait_until(lambda: store.health()["gated"].runs == finished, DEADLINE, "the last record")
    wait_until(lambda: served_runs() == finished, DEADLINE, "the last snapshot served")
    renders = exposition.renders
    plain = scrape_bytes(port, gzipped=False)
    for _ in range(5):
        assert scrape_bytes(port, gzipped=False) == plain
        assert gzip.decompress(scrape_bytes(port, gzipped=True)) == plain
    assert samples(plain.decode())[("churn_test_runs", ())] == finished
    assert exposition.renders == renders  # every scrape answered from the cache
    assert job.state() == (1, finished, False)  # the run was held throughout

    # the next update is rendered by the receiver, before any scrape asks for it
    job.open()
    wait_until(lambda: store.health()["gated"].runs > finished, DEADLINE, "the next run")
    # no scrape meanwhile: the render is the receiver's
    wait_until(lambda: exposition.renders > renders, DEADLINE, "the receiver's render")


# --------------------------------------------------------------------------- a real worker


class PidJob:
    """Publishes the pid of the process it runs in."""

    name = "pid"
    interval_seconds = 0.2

    def run(self) -> int:
        return os.getpid()


def pid_builder(pid: int):
    family = GaugeMetricFamily("churn_test_worker_pid", "The worker's pid.")
    family.add_metric([], pid)
    yield family


def build_pid_monitor() -> Monitor:
    """The worker's Monitor (built in the spawned process: module level, no arguments)."""
    return Monitor(
        config=parse_config({}),
        jobs=[PidJob()],
        model=lambda: ModelRef("churn-model", "7", "run-7"),
        builders={"pid": pid_builder},
    )


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2 :].split()[0] == "Z"


def test_a_dead_worker_is_reported_and_restarted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="exporter.monitor.worker")
    monitor = Monitor(
        config=parse_config({}),
        jobs=[PidJob()],
        model=lambda: ModelRef("churn-model"),
        builders={"pid": pid_builder},
    )
    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(
        target=serve,
        args=(monitor, "127.0.0.1", port),
        kwargs={"stop": stop, "worker": WorkerSpec(build_pid_monitor)},
    )
    thread.start()
    try:
        first = wait_until(
            lambda: scrape(port).get(("churn_test_worker_pid", ())), STARTUP, "the worker's pid"
        )
        first = int(first)
        assert first != os.getpid()  # the job ran in another process
        info = (
            "churn_model_info",
            (("model", "churn-model"), ("run_id", "run-7"), ("version", "7")),
        )
        assert scrape(port)[info] == 1.0  # the model the worker's jobs resolved

        os.kill(first, signal.SIGKILL)
        second = wait_until(
            lambda: (pid := scrape(port).get(("churn_test_worker_pid", ()))) != first and pid,
            STARTUP,
            "a restarted worker's pid",
        )
        assert process_gone(first)
        failures = scrape(port)[("churn_exporter_job_failures_total", (("task", "pid"),))]
        assert failures >= 1.0  # the dead worker counted as a failed run
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any(f"monitoring worker {first} was killed by SIGKILL" in e for e in errors), errors
        wait_until(
            lambda: scrape(port)[("churn_exporter_job_success", (("task", "pid"),))] == 1.0,
            DEADLINE,
            "the restarted worker's successful run",
        )
    finally:
        stop.set()
        thread.join(DEADLINE)
    assert not thread.is_alive(), f"serve() still ran {DEADLINE:.0f} s after the stop"
    wait_until(lambda: process_gone(int(second)), DEADLINE, "the worker stopped with serve()")


@pytest.mark.integration
def test_the_worker_exits_when_the_server_is_killed(tmp_path: Path) -> None:
    from exporter.data.synthetic import generate_customers

    reference = tmp_path / "reference.csv"
    generate_customers(2000, seed=0).to_csv(reference, index=False)
    current = tmp_path / "current.csv"
    generate_customers(500, seed=1, id_offset=10**6).to_csv(current, index=False)
    raw = {
        "model": {"tracking_uri": f"sqlite:///{tmp_path}/no-registry.db"},
        "data": {"reference_path": str(reference)},
        "performance_monitoring": {"enabled": False},
        "optuna": {"enabled": False},
        "reports": {"dir": str(tmp_path / "reports")},
        "history": {"url": f"sqlite:///{tmp_path}/history.db"},
    }
    parse_config(raw)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    port = free_port()
    args = ["run", "--mode", "continuous", "--port", str(port), "--interval", "0.02"]
    proc = Process(
        churn_monitor(*args, "--config", str(config), "--current", str(current)),
        tmp_path / "exporter.log",
        cwd=tmp_path,
    )
    workers: list[int] = []
    try:
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, STARTUP, "ready")
        workers = [pid for pid in children(proc.pid) if "spawn_main" in _cmdline(pid)]
        assert len(workers) == 1, proc.output()[-3000:]
        proc.signal(signal.SIGKILL)  # the server only
        proc.popen.wait(DEADLINE)
        wait_until(lambda: process_gone(workers[0]), DEADLINE, "the orphaned worker's exit")
    finally:
        proc.stop()
        for pid in workers:
            if not process_gone(pid):
                os.kill(pid, signal.SIGKILL)


def children(parent: int) -> list[int]:
    """The pids whose parent is `parent` (from /proc/<pid>/stat)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rfind(")") + 2 :].split()[1]) == parent:
            found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
