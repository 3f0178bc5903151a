"""Latency of `/metrics` while a drift job over a large window runs, against an idle baseline.

    python benchmarks/scrape_latency.py                   # 50 features, 1,000,000 rows
    python benchmarks/scrape_latency.py --rows 200000 --scrapes 300

The exporter's own parts run in this process: the snapshot store, the collector, the
threading HTTP server and the APScheduler-driven job loop (`monitor.wiring.serve`). The job
compares a 1,000,000-row window of ``--features`` numeric features with a reference
profile, over and over, so scrapes land while it computes. One client scrapes
sequentially and records each request's latency:

* baseline: the same scrapes with the last snapshot published and no job running;
* under load: the same while the drift job runs back to back.

Reported: p50, p99 and max of both, the ratio under load / baseline, and how many
drift runs finished during the scrapes (so the load is shown to have overlapped). Each
scrape serves every per-feature family, the PSI bin shares of every feature and the job
health. Not part of the tests.
"""

from __future__ import annotations

import argparse
import logging
import socket
import statistics
import threading
import time
import urllib.request

import numpy as np
import pandas as pd

from exporter.config import parse_config
from exporter.domain.model import ModelRef
from exporter.monitor.wiring import Monitor, serve
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.snapshots import DriftSnapshot


class DriftLoad:
    """A drift job over synthetic numeric columns, counting its finished runs."""

    name = "drift"
    interval_seconds = 0.2

    def __init__(self, rows: int, features: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.columns = [f"f{i:02d}" for i in range(features)]
        reference = pd.DataFrame({c: rng.normal(0, 1, rows) for c in self.columns})
        self.current = pd.DataFrame({c: rng.normal(0.05, 1.1, rows) for c in self.columns})
        self.profile = drift.build_profile(reference, self.columns, [])
        self.runs = 0
        self.running = False
        self.enabled = threading.Event()

    def run(self) -> DriftSnapshot:
        if self.enabled.is_set():
            self.running = True
            result = assess(self.profile, self.current, drift_threshold=0.15, min_window_rows=300)
            self.running = False
            self.runs += 1
        else:  # baseline: publish a tiny computation only
            result = assess(
                self.profile, self.current.head(1000), drift_threshold=0.15, min_window_rows=300
            )
        return DriftSnapshot(ModelRef("churn-model"), result, 0.3, 300, time.time())


def scrape(url: str, n: int, job: DriftLoad) -> tuple[list[float], int]:
    """Latencies in ms of `n` sequential scrapes, and how many began while the job ran."""
    latencies, overlapped = [], 0
    for _ in range(n):
        overlapped += job.running
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=30) as response:
            response.read()
        latencies.append((time.perf_counter() - started) * 1000.0)
    return latencies, overlapped


def describe(name: str, ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(f"{name:<12} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   max {ordered[-1]:7.2f} ms")
    return p50, p99


def main() -> None:
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running"
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--scrapes", type=int, default=500)
    args = parser.parse_args()

    print(f"building {args.features} profiles of {args.rows:,} rows ...", flush=True)
    job = DriftLoad(args.rows, args.features)
    monitor = Monitor(config=parse_config({}), jobs=[job], model=lambda: ModelRef("churn-model"))
    stop = threading.Event()
    with socket.socket() as probe:  # a free loopback port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = threading.Thread(
        target=serve, args=(monitor, "127.0.0.1", port), kwargs={"stop": stop}
    )
    server.start()
    url = f"http://127.0.0.1:{port}/metrics"
    while not monitor.store.ready():
        time.sleep(0.05)
    body = urllib.request.urlopen(url, timeout=30).read()
    lines = body.count(b"\n")
    print(f"one scrape: {len(body):,} bytes, {lines:,} lines")

    idle, _ = scrape(url, args.scrapes, job)
    job.enabled.set()
    while job.runs == 0:  # the first full-size run has finished: its snapshot is served
        time.sleep(0.05)
    runs_before = job.runs
    loaded, overlapped = scrape(url, args.scrapes, job)
    runs_during = job.runs - runs_before
    stop.set()
    server.join(60)

    print(
        f"{overlapped} of {len(loaded)} loaded scrapes began while a drift run was computing; "
        f"{runs_during} runs finished meanwhile"
    )
    _, idle_p99 = describe("idle", idle)
    _, load_p99 = describe("during job", loaded)
    print(f"p99 ratio during job / idle: {load_p99 / idle_p99:.2f}x (target: p99 < 10 ms)")


if __name__ == "__main__":
    main()
