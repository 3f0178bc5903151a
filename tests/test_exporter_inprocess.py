"""The exporter's seams in one process: scheduler, store, collector and HTTP server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.server import ExporterServer, make_app
from exporter.service import Monitor, serve
from exporter.snapshot import ModelRef

from .support import free_port, http_get, wait_until


class GatedJob:
    """A job whose runs block until the test opens the gate; returns a counter."""

    name = "gated"
    interval_seconds = 0.2

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.runs = 0

    def run(self) -> int:
        self.started.set()
        if not self.gate.wait(30):
            raise TimeoutError("gate never opened")
        self.runs += 1
        return self.runs


def gated_builder(value: int):
    from prometheus_client.core import GaugeMetricFamily

    family = GaugeMetricFamily("churn_test_runs", "Runs of the gated job.")
    family.add_metric([], value)
    yield family


@pytest.fixture
def gated_exporter():
    job = GatedJob()
    monitor = Monitor(
        config=parse_config({}),
        jobs=[job],
        model=lambda: ModelRef(name="churn-model"),
        builders={"gated": gated_builder},
    )
    stop = threading.Event()
    port = free_port()
    thread = threading.Thread(
        target=serve, args=(monitor, "127.0.0.1", port), kwargs={"stop": stop}
    )
    thread.start()
    try:
        yield job, port
    finally:
        job.gate.set()
        stop.set()
        thread.join(10)
        assert not thread.is_alive()


def runs_served(port: int) -> float | None:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    for family in text_string_to_metric_families(body):
        if family.name == "churn_test_runs":
            return family.samples[0].value
    return None


def test_not_ready_while_the_first_run_is_blocked(gated_exporter) -> None:
    job, port = gated_exporter
    assert job.started.wait(10)
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 10, "healthz")
    status, body = http_get(f"http://127.0.0.1:{port}/ready")
    assert status == 503 and '"gated": false' in body
    assert runs_served(port) is None
    job.gate.set()
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, 10, "ready")
    assert runs_served(port) >= 1


def test_scrape_during_a_long_run_returns_the_previous_snapshot(gated_exporter) -> None:
    job, port = gated_exporter
    job.gate.set()
    wait_until(lambda: (runs_served(port) or 0) >= 2, 10, "two finished runs")
    job.gate.clear()
    job.started.clear()
    assert job.started.wait(10)  # a run is now blocked inside the job
    before = runs_served(port)
    started = time.monotonic()
    for _ in range(5):
        assert runs_served(port) == before  # served at once, from the previous snapshot
    # the scrapes completed while the job is still blocked
    assert job.started.is_set() and not job.gate.is_set()
    assert time.monotonic() - started < 30  # sanity: nothing waited for the 30 s gate


def test_feature_that_disappears_stops_being_exported(tmp_path: Path) -> None:
    """A column missing from the window yields no per-feature series, not a stale one."""
    import pandas as pd

    from exporter import drift, synthetic
    from exporter.collector import drift_families
    from exporter.decision import assess
    from exporter.snapshot import DriftSnapshot

    ref = synthetic.generate_customers(1000, seed=1)
    profile = drift.build_profile(ref, ["tenure", "MonthlyCharges"], ["Contract"])
    cur = synthetic.generate_customers(500, seed=2)

    def features(window: pd.DataFrame) -> set[str]:
        result = assess(profile, window, drift_threshold=0.15, min_window_rows=100)
        snap = DriftSnapshot(ModelRef("m"), result, 0.3, 100, 0.0)
        return {
            s.labels["feature"]
            for fam in drift_families(snap)
            if fam.name == "churn_feature_drift_psi"
            for s in fam.samples
        }

    assert features(cur) == {"tenure", "MonthlyCharges", "Contract"}
    assert "MonthlyCharges" not in features(cur.drop(columns=["MonthlyCharges"]))


def test_server_404_and_landing(tmp_path: Path) -> None:
    monitor = Monitor(config=parse_config({}), jobs=[], model=lambda: None)
    server = ExporterServer(make_app(monitor.registry, monitor.store), "127.0.0.1", 0)
    server.start()
    try:
        assert http_get(f"http://127.0.0.1:{server.port}/nope")[0] == 404
        status, body = http_get(f"http://127.0.0.1:{server.port}/")
        assert status == 200 and "/metrics" in body
        status, body = http_get(f"http://127.0.0.1:{server.port}/metrics")
        assert status == 200 and "churn_exporter_build_info" in body
    finally:
        server.stop()


def test_a_truncated_csv_window_is_an_error_naming_the_row(tmp_path: Path) -> None:
    from exporter import synthetic
    from exporter.sources import SourceError, read_frame

    path = tmp_path / "current.csv"
    synthetic.generate_customers(50, seed=3).to_csv(path, index=False)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # cut mid-row, as a crashed writer leaves it
    with pytest.raises(
        SourceError, match=r"current.csv: cannot read: CSV parse error: Expected 21"
    ):
        read_frame(path)
