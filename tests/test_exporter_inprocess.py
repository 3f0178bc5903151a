"""The exporter's seams in one process: scheduler, store, collector and HTTP server."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.domain.model import ModelRef
from exporter.monitor.httpserver import ExporterServer
from exporter.monitor.server import make_app
from exporter.monitor.wiring import Monitor, serve

from .support import free_port, http_get, wait_until

#: Deadline of every wait of this module; generous for a busy machine.
DEADLINE = 60.0


class GatedJob:
    """A job whose runs wait at a gate the test opens and closes; returns a counter.

    One condition guards the gate and the counts, so the test sees exactly where the
    runs are: ``waiting`` runs are held at the closed gate, ``finished`` went through.
    A run waits as long as the gate is closed (the fixture opens it at the end).
    """

    name = "gated"
    interval_seconds = 0.2

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._open = False
        self.waiting = 0
        self.finished = 0

    def run(self) -> int:
        with self._cond:
            self.waiting += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open)
            self.waiting -= 1
            self.finished += 1
            return self.finished

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._open = False

    def wait_held(self, timeout: float = DEADLINE) -> int:
        """Wait until a run is held at the closed gate; return the finished runs then
        (they cannot change until the gate opens)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.waiting and not self._open, timeout):
                raise AssertionError(f"no run held at the closed gate within {timeout:.0f} s")
            return self.finished

    def state(self) -> tuple[int, int, bool]:
        """(waiting, finished, open), read together."""
        with self._cond:
            return self.waiting, self.finished, self._open


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
        job.open()
        stop.set()
        thread.join(DEADLINE)
        assert not thread.is_alive(), f"serve() still ran {DEADLINE:.0f} s after the stop"


def runs_served(port: int) -> float | None:
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    for family in text_string_to_metric_families(body):
        if family.name == "churn_test_runs":
            return family.samples[0].value
    return None


def test_not_ready_while_the_first_run_is_blocked(gated_exporter) -> None:
    job, port = gated_exporter
    assert job.wait_held() == 0  # the first run is held at the gate
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, DEADLINE, "healthz")
    status, body = http_get(f"http://127.0.0.1:{port}/ready")
    assert status == 503 and '"gated": false' in body
    assert runs_served(port) is None
    assert job.state() == (1, 0, False)  # still held: the answers did not wait for it
    job.open()
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, DEADLINE, "ready")
    assert runs_served(port) >= 1


def test_scrape_during_a_long_run_returns_the_previous_snapshot(gated_exporter) -> None:
    job, port = gated_exporter
    job.open()
    wait_until(lambda: (runs_served(port) or 0) >= 2, DEADLINE, "two finished runs")
    job.close()
    # A run is now held inside the job. Runs never overlap, so the one before it has
    # published its snapshot: the exporter serves that run's count.
    finished = job.wait_held()
    assert finished >= 2
    for _ in range(5):
        # each scrape is answered from the previous snapshot while the run is held
        assert runs_served(port) == finished
    assert job.state() == (1, finished, False)  # the run was held throughout


def test_feature_that_disappears_stops_being_exported(tmp_path: Path) -> None:
    """A column missing from the window yields no per-feature series, not a stale one."""
    import pandas as pd

    from exporter.data import synthetic
    from exporter.monitor.collector import drift_families
    from exporter.stats import drift
    from exporter.stats.decision import assess
    from exporter.stats.snapshots import DriftSnapshot

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


def test_job_health_is_labelled_task_and_no_series_has_a_target_label() -> None:
    """`job` and `instance` are Prometheus' own target labels: the exporter leaves them to
    the scrape (no `honor_labels`) and names its scheduled jobs `task`."""
    from exporter.data import synthetic
    from exporter.monitor.collector import SnapshotCollector
    from exporter.monitor.store import SnapshotStore
    from exporter.stats import drift
    from exporter.stats.decision import assess
    from exporter.stats.snapshots import DriftSnapshot

    profile = drift.build_profile(synthetic.generate_customers(500, seed=1), ["tenure"], [])
    result = assess(
        profile,
        synthetic.generate_customers(200, seed=2),
        drift_threshold=0.15,
        min_window_rows=100,
    )
    store = SnapshotStore()
    store.register("drift", 60.0)
    store.publish("drift", DriftSnapshot(ModelRef("m"), result, 0.3, 100, 0.0))
    store.record("drift", ok=True, duration=0.5, at=10.0, error=None)
    collector = SnapshotCollector(store, model=lambda: ModelRef("m"))
    samples = [s for family in collector.collect() for s in family.samples]

    assert [s for s in samples if {"job", "instance"} & set(s.labels)] == []
    health = {s.name: s.labels for s in samples if s.name.startswith("churn_exporter_job_")}
    assert set(health) == {
        "churn_exporter_job_success",
        "churn_exporter_job_duration_seconds",
        "churn_exporter_job_last_success_timestamp_seconds",
        "churn_exporter_job_interval_seconds",
        "churn_exporter_job_runs_total",
        "churn_exporter_job_failures_total",
    }
    assert all(labels == {"task": "drift"} for labels in health.values())


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
    from exporter.data import synthetic
    from exporter.data.sources import SourceError, read_frame

    path = tmp_path / "current.csv"
    synthetic.generate_customers(50, seed=3).to_csv(path, index=False)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])  # cut mid-row, as a crashed writer leaves it
    with pytest.raises(
        SourceError, match=r"current.csv: cannot read: CSV parse error: Expected 21"
    ):
        read_frame(path)
