"""Latency of `/metrics` with 1 and 20 concurrent scrapers while drift and stream jobs
compute, against an idle baseline.

    python benchmarks/scrape_latency.py                   # 50 features, 1,000,000 rows
    python benchmarks/scrape_latency.py --rows 200000 --seconds 10
    python benchmarks/scrape_latency.py --inprocess       # the jobs in the server process

The exporter runs as the product runs it in continuous mode (`monitor.wiring.serve` with
a `worker.WorkerSpec`): a server process with the snapshot store, the collector, the
cached exposition and the event-loop HTTP server (`httpserver`), and a monitoring worker process
running the jobs on APScheduler and forwarding their updates. Two jobs compute in the
worker, as with streaming on:

* ``drift``: a window of ``--rows`` rows of ``--features`` numeric features against a
  reference profile, back to back (a full drift run);
* ``stream``: a ``--stream-rows`` window every ``--update-seconds`` seconds, whose
  snapshot gives every per-feature family and the PSI bin shares of every feature
  (`collector.STREAMING_BUILDERS`): each update changes the exposition, which the
  server re-renders once.

With ``--inprocess`` the same jobs run on the server's own scheduler (the exporter
before the worker), for comparison.

The scrapers run in this process on one event loop, each on its own kept-alive
connection (a request, then the answer read to its end: little client work inside the
measured time, and no thread of the client competing with another), asking for gzip as
Prometheus does. Each scraper scrapes for ``--seconds``: back to back (the default, a
stress far beyond any Prometheus: the latency is then bounded by the server's
throughput, 20 / scrapes per second, on a machine the scrapers share), or with
``--period`` all scrapers together every that many seconds (bursts of 20 concurrent
scrapes, as Prometheus servers on a shared interval). Phases:

* idle: the jobs publish without the heavy computation (a 1,000-row drift run);
* during updates: both jobs compute as above; the phase starts after the first full
  drift run finished, and reports how many drift runs and stream updates finished
  during it (counted on /metrics), so the load is shown to have overlapped.

Reported: p50, p99 and max per phase, with 1 and with 20 scrapers, and whether the p99
target (10 ms, issue 19) is met during updates. Not part of the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import signal
import socket
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.domain.model import ModelRef
from exporter.monitor.collector import STREAMING_BUILDERS
from exporter.monitor.wiring import Monitor, serve
from exporter.monitor.worker import WorkerSpec
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.snapshots import DriftSnapshot

TARGET_MS = 10.0
MODEL = ModelRef("churn-model", "1", "bench")


class Data:
    """Synthetic numeric reference and current window, and the reference profile."""

    def __init__(self, rows: int, features: int, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.columns = [f"f{i:02d}" for i in range(features)]
        reference = pd.DataFrame({c: rng.normal(0, 1, rows) for c in self.columns})
        self.current = pd.DataFrame({c: rng.normal(0.05, 1.1, rows) for c in self.columns})
        self.profile = drift.build_profile(reference, self.columns, [])


def _snapshot(data: Data, window: pd.DataFrame) -> DriftSnapshot:
    result = assess(data.profile, window, drift_threshold=0.15, min_window_rows=300)
    return DriftSnapshot(MODEL, result, 0.3, 300, time.time())


class DriftLoad:
    """The full drift run: the whole window while `flag` exists, 1,000 rows if not."""

    name = "drift"
    interval_seconds = 0.2

    def __init__(self, data: Data, flag: Path) -> None:
        self.data, self.flag = data, flag

    def run(self) -> DriftSnapshot:
        heavy = self.flag.exists()
        return _snapshot(self.data, self.data.current if heavy else self.data.current.head(1000))


class StreamLoad:
    """The streaming update: a sliding window of `rows` rows (1,000 without `flag`)."""

    name = "stream"

    def __init__(self, data: Data, flag: Path, rows: int, seconds: float) -> None:
        self.data, self.flag, self.rows = data, flag, rows
        self.interval_seconds = seconds
        self.start = 0

    def run(self) -> DriftSnapshot:
        rows = self.rows if self.flag.exists() else 1000
        total = len(self.data.current)
        self.start = (self.start + 997) % max(1, total - rows)
        return _snapshot(self.data, self.data.current.iloc[self.start : self.start + rows])


class Named:
    """A job the server only registers (its runs happen in the worker)."""

    def __init__(self, name: str, interval_seconds: float) -> None:
        self.name, self.interval_seconds = name, interval_seconds

    def run(self) -> None:
        raise RuntimeError("runs in the worker")


def build_jobs_monitor(
    rows: int, features: int, flag: str, stream_rows: int, update_seconds: float
) -> Monitor:
    """The worker's Monitor (and the in-process one): the two load jobs."""
    data = Data(rows, features)
    jobs = [DriftLoad(data, Path(flag)), StreamLoad(data, Path(flag), stream_rows, update_seconds)]
    return Monitor(
        config=parse_config({}), jobs=jobs, model=lambda: MODEL, builders=STREAMING_BUILDERS
    )


def server_main(port: int, inprocess: bool, job_args: tuple[object, ...]) -> None:
    """The exporter's server process (its SIGTERM stops `serve`)."""
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # "skipped: already running"
    if inprocess:
        monitor = build_jobs_monitor(*job_args)  # type: ignore[arg-type]
        serve(monitor, "127.0.0.1", port)
        os._exit(0)  # a job still computing would hold the interpreter at exit
    update_seconds = float(job_args[-1])  # type: ignore[arg-type]
    monitor = Monitor(
        config=parse_config({}),
        jobs=[Named("drift", DriftLoad.interval_seconds), Named("stream", update_seconds)],
        model=lambda: MODEL,
        builders=STREAMING_BUILDERS,
    )
    serve(monitor, "127.0.0.1", port, worker=WorkerSpec(build_jobs_monitor, job_args))


# --------------------------------------------------------------------------- scrapers


async def _scraper(port: int, start: float, deadline: float, period: float) -> list[float]:
    """One scraper on one kept-alive connection, as a Prometheus server scrapes: a
    request, then the answer read to its end; the latency of each, in ms."""
    request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept-Encoding: gzip\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    latencies: list[float] = []
    tick = start
    try:
        while True:
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
            tick += period
            if time.monotonic() >= deadline:
                return latencies
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"scrape answered {head[:40]!r}")
            length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            await reader.readexactly(length)
            latencies.append((time.perf_counter() - started) * 1000.0)
    finally:
        writer.close()


def scrape_phase(port: int, scrapers: int, seconds: float, period: float) -> list[float]:
    """Latencies (ms) of `scrapers` concurrent scrapers scraping for `seconds`: back to
    back with `period` 0, else all together every `period` seconds (bursts of
    `scrapers` concurrent scrapes, as Prometheus servers scraping on a shared interval).
    """

    async def phase() -> list[list[float]]:
        start = time.monotonic() + 0.2
        return await asyncio.gather(
            *(_scraper(port, start, start + seconds, period) for _ in range(scrapers))
        )

    return [ms for mine in asyncio.run(phase()) for ms in mine]


def job_runs(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        body = response.read().decode()
    return {
        s.labels["task"]: s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "churn_exporter_job_runs_total"
    }


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


def describe(name: str, ms: list[float]) -> tuple[float, float]:
    ordered = sorted(ms)
    p50 = statistics.median(ordered)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    print(
        f"{name:<28} {len(ordered):>7,} scrapes   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   "
        f"max {ordered[-1]:8.2f} ms",
        flush=True,
    )
    return p50, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--stream-rows", type=int, default=20_000)
    parser.add_argument("--update-seconds", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument(
        "--period",
        type=float,
        default=0.0,
        help="seconds between one scraper's scrapes, all scrapers together (0: back to back)",
    )
    parser.add_argument("--inprocess", action="store_true", help="jobs in the server process")
    args = parser.parse_args()

    where = "the server process" if args.inprocess else "a monitoring worker process"
    print(
        f"{args.features} features, drift window {args.rows:,} rows, stream window "
        f"{args.stream_rows:,} rows every {args.update_seconds:g} s; jobs in {where}; "
        + (f"scrapes every {args.period:g} s per scraper" if args.period else "back to back"),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        flag = Path(tmp) / "heavy"
        with socket.socket() as probe:  # a free loopback port
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        job_args = (args.rows, args.features, str(flag), args.stream_rows, args.update_seconds)
        ctx = multiprocessing.get_context("spawn")
        server = ctx.Process(target=server_main, args=(port, args.inprocess, job_args))
        server.start()
        try:
            while not ready(port):
                if not server.is_alive():
                    raise SystemExit(f"the exporter exited with {server.exitcode}")
                time.sleep(0.2)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as response:
                body = response.read()
            lines = body.count(b"\n")
            print(f"one scrape: {len(body):,} bytes, {lines:,} lines", flush=True)

            idle = {n: scrape_phase(port, n, args.seconds, args.period) for n in (1, 20)}
            flag.touch()
            first = job_runs(port).get("drift", 0.0)
            # the first full-size run has started and finished: its snapshot is served
            while job_runs(port).get("drift", 0.0) < first + 2:
                time.sleep(0.2)
            loaded, runs = {}, {}
            for n in (1, 20):
                before = job_runs(port)
                loaded[n] = scrape_phase(port, n, args.seconds, args.period)
                after = job_runs(port)
                runs[n] = {task: after[task] - before.get(task, 0.0) for task in after}
        finally:
            if server.pid is not None and server.is_alive():
                os.kill(server.pid, signal.SIGTERM)
            server.join(60)

    print()
    verdicts = []
    for n in (1, 20):
        describe(f"idle, {n} scraper(s)", idle[n])
    for n in (1, 20):
        _, p99 = describe(f"during updates, {n} scraper(s)", loaded[n])
        print(
            f"{'':<28} meanwhile {runs[n].get('drift', 0):.0f} drift runs and "
            f"{runs[n].get('stream', 0):.0f} stream updates finished",
        )
        verdicts.append((n, p99))
    for n, p99 in verdicts:
        met = "met" if p99 < TARGET_MS else "NOT met"
        print(f"target p99 < {TARGET_MS:g} ms during updates, {n} scraper(s): {met} ({p99:.2f} ms)")


if __name__ == "__main__":
    main()
