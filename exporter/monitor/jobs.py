"""Scheduled jobs: the contract every job meets and the bookkeeping of one run.

A job is an object with a ``name``, an ``interval_seconds`` and a ``run()`` that returns
a snapshot or raises. `run_job` does the bookkeeping every job shares: timing, the
success flag, counters, logging the traceback of a failure, and publishing only a
successful snapshot, so a failure leaves the last good values in place.

The jobs themselves live beside this module: `drift_job`, `performance_job` (both
built on `reference_job`), `comparison_job`, `optuna_job` and `stream_job`. The store
is the server's `SnapshotStore` in one process, or in continuous mode the worker
process's forwarding `worker.StoreProxy`; `run_job` is the same for both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol

from apscheduler.schedulers.background import BackgroundScheduler

from exporter.monitor.store import StoreWriter

log = logging.getLogger(__name__)


class Job(Protocol):
    name: str
    interval_seconds: float

    def run(self) -> Any: ...


def run_job(job: Job, store: StoreWriter) -> bool:
    """Run `job` once, publish its snapshot on success, record its health; never raise.

    A snapshot that cannot be published (in the worker process: one whose families do
    not render) is a failed run like any other, recorded with its error."""
    started = time.perf_counter()
    try:
        snapshot = job.run()
        store.publish(job.name, snapshot)
    except Exception as err:
        duration = time.perf_counter() - started
        # one line; the traceback at DEBUG (--verbose, LOG_LEVEL=DEBUG)
        log.error(
            "job %s failed after %.2fs: %s",
            job.name,
            duration,
            err,
            exc_info=log.isEnabledFor(logging.DEBUG),
        )
        store.record(job.name, ok=False, duration=duration, at=time.time(), error=str(err))
        return False
    duration = time.perf_counter() - started
    store.record(job.name, ok=True, duration=duration, at=time.time(), error=None)
    log.info("job %s finished in %.2fs", job.name, duration)
    return True


def start_scheduler(jobs: Iterable[Job], store: StoreWriter) -> BackgroundScheduler:
    """Register `jobs` in `store` and run each with `run_job` on a started scheduler.

    Each job runs once at start and then every `interval_seconds`, never two runs of
    the same job at once (`max_instances=1`), missed runs collapsed into one
    (`coalesce=True`).
    """
    scheduler = BackgroundScheduler(job_defaults={"max_instances": 1, "coalesce": True})
    for job in jobs:
        store.register(job.name, job.interval_seconds)
        scheduler.add_job(
            run_job,
            "interval",
            args=[job, store],
            seconds=job.interval_seconds,
            next_run_time=datetime.now().astimezone(),
            id=job.name,
            name=job.name,
            misfire_grace_time=None,
        )
    scheduler.start()
    return scheduler
