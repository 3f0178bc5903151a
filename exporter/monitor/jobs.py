"""Scheduled jobs: the contract every job meets and the bookkeeping of one run.

A job is an object with a ``name``, an ``interval_seconds`` and a ``run()`` that returns
a snapshot or raises. `run_job` does the bookkeeping every job shares: timing, the
success flag, counters, logging the traceback of a failure, and publishing only a
successful snapshot, so a failure leaves the last good values in place.

The jobs themselves live beside this module: `drift_job`, `performance_job` (both
built on `reference_job`) and `optuna_job`.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from exporter.monitor.store import SnapshotStore

log = logging.getLogger(__name__)


class Job(Protocol):
    name: str
    interval_seconds: float

    def run(self) -> Any: ...


def run_job(job: Job, store: SnapshotStore) -> bool:
    """Run `job` once, publish its snapshot on success, record its health; never raise."""
    started = time.perf_counter()
    try:
        snapshot = job.run()
    except Exception as err:
        duration = time.perf_counter() - started
        log.exception("job %s failed after %.2fs", job.name, duration)
        store.record(job.name, ok=False, duration=duration, at=time.time(), error=str(err))
        return False
    duration = time.perf_counter() - started
    store.publish(job.name, snapshot)
    store.record(job.name, ok=True, duration=duration, at=time.time(), error=None)
    log.info("job %s finished in %.2fs", job.name, duration)
    return True
