"""Wiring: config -> jobs -> scheduler -> snapshot store -> collector -> HTTP server.

In continuous mode (`serve` with a `worker.WorkerSpec`) the jobs and their scheduler
run in a worker process built from the same config, and their store updates are
forwarded to this process's store (:mod:`exporter.monitor.worker`); `run --mode once`
runs them here (`Monitor.run_once`), then writes the pass's HTML report.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from exporter.config import ConfigError, MonitoringConfig
from exporter.data.history import open_history
from exporter.domain.model import ModelRef
from exporter.loop.receiver import AlertReceiver
from exporter.loop.retraining import RetrainingTrigger
from exporter.model.registry import ModelWatch
from exporter.model.roles import challenger_config
from exporter.monitor.collector import STREAMING_BUILDERS, FamilyBuilder, SnapshotCollector
from exporter.monitor.comparison_job import ComparisonJob
from exporter.monitor.digest_job import DigestJob
from exporter.monitor.drift_job import DriftJob
from exporter.monitor.httpserver import ExporterServer
from exporter.monitor.ingest import make_ingestor
from exporter.monitor.jobs import Job, run_job, start_scheduler
from exporter.monitor.optuna_job import OptunaJob
from exporter.monitor.performance_job import PerformanceJob
from exporter.monitor.reference_job import ReferenceCache
from exporter.monitor.report_job import POLL_SECONDS, RunReportJob, anchor_kind
from exporter.monitor.server import make_app
from exporter.monitor.store import SnapshotStore
from exporter.monitor.stream_job import StreamJob
from exporter.monitor.worker import WorkerSpec, WorkerSupervisor
from exporter.web.webconfig import WebConfig, require_auth

log = logging.getLogger(__name__)


@dataclass
class Monitor:
    """The exporter's parts, built from one config."""

    config: MonitoringConfig
    jobs: list[Job]
    model: Callable[[], ModelRef | None]
    store: SnapshotStore = field(default_factory=SnapshotStore)
    #: Job name -> family builder; None means the exporter's own (collector.BUILDERS).
    builders: Mapping[str, FamilyBuilder] | None = None
    #: The Alertmanager webhook receiver served at /alerts/webhook (history enabled).
    receiver: AlertReceiver | None = None
    #: Jobs of the continuous mode only (`serve` schedules them, `run_once` does not):
    #: the streaming job when `data_drift_monitoring.update_seconds` is set; built with
    #: ``continuous=True``, the HTML report job and the digest job when enabled.
    streams: list[Job] = field(default_factory=list)
    #: `run_once` writes the pass's HTML report with it after the jobs (None: off).
    run_report: RunReportJob | None = None

    def __post_init__(self) -> None:
        for job in self.jobs:
            self.store.register(job.name, job.interval_seconds)
        self.registry = CollectorRegistry()
        # Through `self.model` at each scrape: in continuous mode `serve` points it at
        # the model the worker process forwards.
        self.registry.register(
            SnapshotCollector(self.store, model=lambda: self.model(), builders=self.builders)
        )

    def run_once(self) -> dict[str, bool]:
        """Run every job once, in order; return job name -> success. Then write the HTML
        report of the pass: a by-product, whose failure is logged and leaves the
        outcome (the jobs' results) as it is."""
        outcome = {job.name: run_job(job, self.store) for job in self.jobs}
        if self.run_report is not None:
            try:
                self.run_report.run()
            except Exception:
                log.exception("the HTML report of the pass failed")
        return outcome


def comparing(config: MonitoringConfig) -> bool:
    """Whether champion and challenger are compared: enabled, a challenger alias, and
    the prediction log (where the shadow scores are) as the current window."""
    return (
        config.model_comparison.enabled
        and challenger_config(config) is not None
        and config.data.current.kind == "sql"
    )


def build_monitor(
    config: MonitoringConfig,
    *,
    interval_minutes: float | None = None,
    continuous: bool = False,
) -> Monitor:
    """The jobs enabled in `config`; `interval_minutes` overrides every job's schedule.

    `continuous` (the worker of `run --mode continuous`) adds the scheduled HTML report
    and digest jobs to `streams`; otherwise the HTML report is `run_once`'s. ConfigError
    when the digest is enabled without the history it reports.
    """
    digest = config.reports.digest
    if digest.enabled and not config.history.enabled:
        raise ConfigError(
            "reports.digest.enabled: the digest reports the history, and history.enabled is false"
        )
    interval = interval_minutes * 60.0 if interval_minutes else None
    watch = ModelWatch(config)
    reference = ReferenceCache(config.data.reference_path)
    history = open_history(config.history.url) if config.history.enabled else None
    receiver = None
    if history is not None:
        trigger = RetrainingTrigger(config, history) if config.retraining.enabled else None
        receiver = AlertReceiver(history, trigger)
    common = {"model": watch, "interval_seconds": interval, "history": history}
    jobs: list[Job] = []
    if config.data_drift_monitoring.enabled:
        jobs.append(DriftJob(config, reference, **common))
    if config.performance_monitoring.enabled:
        jobs.append(PerformanceJob(config, reference, **common))
    if comparing(config):
        jobs.append(ComparisonJob(config, reference, model=watch, interval_seconds=interval))
    if config.optuna.enabled:
        jobs.append(OptunaJob(config, interval_seconds=interval))
    streams: list[Job] = []
    streams_on = streaming(config)
    if streams_on:
        streams.append(StreamJob(config, reference, model=watch))
    run_report = None
    if config.reports.html and anchor_kind(config) is not None:
        poll = min(POLL_SECONDS, *(job.interval_seconds for job in jobs))
        run_report = RunReportJob(config, reference, history=history, interval_seconds=poll)
    if continuous:
        if run_report is not None:
            streams.append(run_report)
            run_report = None
        if digest.enabled and history is not None:
            streams.append(DigestJob(config, history))
    return Monitor(
        config=config,
        jobs=jobs,
        model=watch.current,
        receiver=receiver,
        builders=STREAMING_BUILDERS if streams_on else None,
        streams=streams,
        run_report=run_report,
    )


def streaming(config: MonitoringConfig) -> bool:
    """Whether the streaming job runs: drift monitoring on, `update_seconds` set, and
    the prediction log as the current window (a file is not followed: warned)."""
    drift = config.data_drift_monitoring
    if not drift.enabled or drift.update_seconds is None:
        return False
    if config.data.current.kind != "sql":
        log.warning(
            "data_drift_monitoring.update_seconds is ignored: streaming follows the "
            "prediction log, and data.current is a file"
        )
        return False
    return True


def serve(
    monitor: Monitor,
    host: str,
    port: int,
    *,
    stop: threading.Event | None = None,
    web: WebConfig | None = None,
    worker: WorkerSpec | None = None,
) -> None:
    """Serve /metrics and run the jobs on their schedules until `stop` is set.

    With `worker` (what `run --mode continuous` passes), the jobs run in a worker
    process built from it, and this process only serves (:mod:`exporter.monitor.worker`:
    the forwarded updates, the worker's stop and its restart when it dies). Without it,
    the jobs run on a scheduler in this process (tests, and the in-process baseline of
    benchmarks/scrape_latency.py).

    Each job runs once at start and then every `interval_seconds`, never two runs of
    the same job at once (`max_instances=1`), missed runs collapsed into one
    (`coalesce=True`). SIGTERM and SIGINT set `stop` when called from the main thread.
    """
    web = web or WebConfig()
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())

    for job in monitor.streams:
        monitor.store.register(job.name, job.interval_seconds)
    supervisor = None
    if worker is not None:
        supervisor = WorkerSupervisor(worker, monitor.store, fallback=monitor.model)
        monitor.model = supervisor.model  # the collector reads the forwarded model
    ingest = make_ingestor(monitor.config, web)
    app = make_app(monitor.registry, monitor.store, monitor.receiver, monitor.model, ingest=ingest)
    server = ExporterServer(require_auth(app, web), host, port, web.ssl_context(), web)
    server.start()
    log.info("serving %s://%s:%d/metrics", "https" if web.tls else "http", host, server.port)

    scheduler = None
    if supervisor is not None:
        supervisor.on_change = app.exposition.refresh
        supervisor.start()
    else:
        scheduler = start_scheduler([*monitor.jobs, *monitor.streams], monitor.store)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if supervisor is not None:
            log.info("stopping: scheduler and server (monitoring worker %s)", supervisor.pid)
            supervisor.stop()
        else:
            log.info("stopping: scheduler and server")
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        server.stop()
