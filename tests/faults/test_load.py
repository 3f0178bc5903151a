"""Bounded loopback load: the prediction API under 50 concurrent clients, and the
exporter's /metrics under 20 concurrent scrapers while its drift job runs non-stop.

Both servers are real processes on 127.0.0.1. The figures are recorded in
docs/reliability.md as measured on the machine that ran the suite; nothing here
asserts a wall-clock time (timings live in benchmarks/, docs/architecture.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exporter.data import predlog, synthetic  # noqa: E402

from ..api_fixtures import LiveApi, count_rows, customers, fetch_rows  # noqa: E402
from ..support import Process, churn_monitor, free_port, http_get, wait_until  # noqa: E402

pytest_plugins = ["tests.api_fixtures"]
pytestmark = [pytest.mark.integration, pytest.mark.slow]

CLIENTS = 50
PREDICTIONS = 20_000
SCRAPERS = 20
#: The scrapers run until this many drift job runs finished while they scraped.
DRIFT_RUNS = 2
#: Deadline for those runs (each reads and tests a 50,000-row window).
RUNS_DEADLINE = 300.0


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def test_api_under_50_concurrent_clients_has_no_5xx_and_one_row_per_answer(
    live_api: LiveApi, reliability: Any
) -> None:
    """20,000 single predictions from 50 keep-alive clients: every answer a 2xx, and
    the log holds exactly one row per answer, by prediction_id."""
    per_client = PREDICTIONS // CLIENTS
    payloads = [
        json.dumps(c).encode() for c in customers(PREDICTIONS, seed=41, id_offset=3_000_000)
    ]
    statuses: Counter[int] = Counter()
    ids: list[str] = []
    latencies: list[float] = []
    problems: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    def worker(k: int) -> None:
        mine = payloads[k * per_client : (k + 1) * per_client]
        seen: list[str] = []
        times: list[float] = []
        codes: Counter[int] = Counter()
        headers = {"content-type": "application/json"}
        with httpx.Client(base_url=live_api.url, timeout=60) as http:
            go.wait()
            for body in mine:
                start = time.perf_counter()
                try:
                    response = http.post("/predict", content=body, headers=headers)
                except httpx.HTTPError as err:
                    with lock:
                        problems.append(repr(err))
                    continue
                times.append(time.perf_counter() - start)
                codes[response.status_code] += 1
                if response.status_code == 200:
                    seen.append(response.json()["prediction_id"])
                elif len(problems) < 5:
                    with lock:
                        problems.append(f"{response.status_code}: {response.text[:200]}")
        with lock:
            ids.extend(seen)
            latencies.extend(times)
            statuses.update(codes)

    before = count_rows(live_api.db_url)
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    started = time.monotonic()
    go.set()
    for t in threads:
        t.join(600)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "clients still running after 600 s"
    assert not problems, problems[:5]
    assert statuses == {200: PREDICTIONS}, statuses
    assert len(set(ids)) == PREDICTIONS

    table = predlog.predictions
    found: Counter[str] = Counter()
    for start in range(0, len(ids), 900):
        chunk = ids[start : start + 900]
        query = sa.select(table.c.id).where(table.c.id.in_(chunk))
        found.update(row["id"] for row in fetch_rows(live_api.db_url, query))
    assert set(found) == set(ids)
    assert max(found.values()) == 1
    assert count_rows(live_api.db_url) == before + PREDICTIONS

    rate = PREDICTIONS / elapsed
    p50, p99 = _percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000
    print(f"{PREDICTIONS} predictions, {CLIENTS} clients: {elapsed:.1f} s, {rate:.0f}/s")
    reliability.record(
        f"API load: {CLIENTS} concurrent keep-alive clients, {PREDICTIONS:,} POST /predict",
        "load",
        "zero 5xx; exactly one logged row per 2xx (matched by prediction_id)",
        f"{statuses[200]:,} × 200, 0 × 5xx, 0 connection errors; {len(found):,} rows, "
        f"one per prediction_id; {elapsed:.1f} s ({rate:,.0f} predictions/s), "
        f"latency p50 {p50:.0f} ms, p99 {p99:.0f} ms (2 shared cores, client and "
        "server on the same machine)",
    )


# ------------------------------------------------------------------ exporter scrapes


@pytest.fixture(scope="module")
def drift_exporter(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A drift-only exporter re-running its drift job every 1.2 s over 50,000 rows."""
    tmp = tmp_path_factory.mktemp("scrape-load")
    reference = tmp / "reference.parquet"
    synthetic.generate_customers(5_000, seed=1).to_parquet(reference, index=False)
    current = tmp / "current.csv"
    synthetic.generate_customers(50_000, seed=2, scenario="sudden").to_csv(current, index=False)
    config = tmp / "config.yaml"
    config.write_text(
        "performance_monitoring: {enabled: false}\n"
        "optuna: {enabled: false}\n"
        f"data: {{reference_path: '{reference}'}}\n"
        f"history: {{url: 'sqlite:///{tmp / 'history.db'}'}}\n"
        f"reports: {{dir: '{tmp / 'reports'}'}}\n"
    )
    port = free_port()
    proc = Process(
        churn_monitor(
            "run",
            "--mode",
            "continuous",
            "--interval",
            "0.02",
            "--port",
            str(port),
            "--config",
            str(config),
            "--current",
            str(current),
        ),
        tmp / "exporter.log",
        cwd=tmp,
    )
    try:
        wait_until(
            lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200,
            180,
            "the exporter's first drift snapshot",
        )
        yield proc, port
    finally:
        proc.stop()


def _job_runs(body: str) -> float:
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            drift = sample.labels == {"task": "drift"}
            if sample.name == "churn_exporter_job_runs_total" and drift:
                return sample.value
    return 0.0


def test_exporter_metrics_under_20_scrapers_during_drift_jobs(
    drift_exporter: Any, reliability: Any
) -> None:
    """20 scrapers hammer /metrics until the drift job has finished DRIFT_RUNS more runs
    (counted by the exporter's own churn_exporter_job_runs_total), however long that
    takes on this machine."""
    proc, port = drift_exporter
    url = f"http://127.0.0.1:{port}/metrics"
    results: list[tuple[int, float, bool]] = []
    problems: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    _, first = http_get(url, timeout=30)
    runs_before = _job_runs(first)

    def scraper() -> None:
        mine: list[tuple[int, float, bool]] = []
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                start = time.perf_counter()
                try:
                    response = http.get(url)
                except httpx.HTTPError as err:
                    with lock:
                        problems.append(repr(err))
                    continue
                took = time.perf_counter() - start
                try:
                    families = list(text_string_to_metric_families(response.text))
                    parsed = any(f.name == "churn_data_drift_score" for f in families)
                except Exception as err:
                    parsed = False
                    with lock:
                        problems.append(f"unparseable scrape: {err!r}")
                mine.append((response.status_code, took, parsed))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=scraper) for _ in range(SCRAPERS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    try:
        # the runs counter, read by this thread while the scrapers scrape
        wait_until(
            lambda: _job_runs(http_get(url, timeout=30)[1]) - runs_before >= DRIFT_RUNS,
            RUNS_DEADLINE,
            f"{DRIFT_RUNS} drift job runs to finish while {SCRAPERS} scrapers scrape",
            interval=0.5,
        )
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    elapsed = time.monotonic() - started
    assert not any(t.is_alive() for t in threads), "scrapers still running 60 s after the stop"
    _, last = http_get(url, timeout=30)
    runs = _job_runs(last) - runs_before
    assert not problems, problems[:5]
    assert results
    statuses = Counter(status for status, _, _ in results)
    assert statuses == {200: len(results)}, statuses
    assert all(parsed for _, _, parsed in results)
    assert runs >= DRIFT_RUNS
    assert proc.alive()

    latencies = [took for _, took, _ in results]
    p50, p99 = _percentile(latencies, 50) * 1000, _percentile(latencies, 99) * 1000
    print(f"{len(results)} scrapes, p50 {p50:.1f} ms, p99 {p99:.1f} ms, {runs:.0f} drift runs")
    reliability.record(
        f"exporter /metrics: {SCRAPERS} concurrent scrapers while {DRIFT_RUNS} drift job runs "
        "finish (50,000-row window, job every 1.2 s)",
        "load",
        "every scrape 200 and parseable, with the drift families",
        f"{len(results):,} scrapes in {elapsed:.1f} s, all 200 and parsed; latency p50 "
        f"{p50:.1f} ms, p99 {p99:.1f} ms; {runs:.0f} drift job runs finished meanwhile",
    )
