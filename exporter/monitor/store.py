"""The store the collector reads the scheduled jobs' results from, and their health.

A job builds a new snapshot off to the side and swaps it in with one assignment under a
lock, so a scrape sees either the previous snapshot or the next one, never a mixture,
and never waits for a computation.

`StoreWriter` is the part of the store the jobs' bookkeeping (`jobs.run_job`) writes
to: in continuous mode the jobs run in a worker process and write to a forwarding
`worker.StoreProxy`, whose updates the server applies to its `SnapshotStore`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol


class StoreWriter(Protocol):
    """What a job's bookkeeping writes: registration, snapshots and run health."""

    def register(self, job: str, interval_seconds: float) -> None: ...

    def publish(self, job: str, snapshot: Any) -> None: ...

    def record(
        self, job: str, *, ok: bool, duration: float, at: float, error: str | None
    ) -> None: ...


@dataclass(frozen=True)
class JobHealth:
    """Run bookkeeping of one scheduled job (the `churn_exporter_job_*` families)."""

    job: str
    interval_seconds: float
    runs: int = 0
    failures: int = 0
    success: bool | None = None
    duration_seconds: float | None = None
    last_success: float | None = None
    last_error: str | None = None

    def finished(self, *, ok: bool, duration: float, at: float, error: str | None) -> JobHealth:
        """The health after one more run."""
        return replace(
            self,
            runs=self.runs + 1,
            failures=self.failures + (0 if ok else 1),
            success=ok,
            duration_seconds=duration,
            last_success=at if ok else self.last_success,
            last_error=None if ok else error,
        )


@dataclass
class SnapshotStore:
    """Thread-safe holder of the latest snapshot and health of every job."""

    _lock: threading.Lock = field(default_factory=threading.Lock)
    _snapshots: dict[str, Any] = field(default_factory=dict)
    _health: dict[str, JobHealth] = field(default_factory=dict)
    #: Incremented by every change, so a rendering of the store can be cached until then.
    generation: int = 0

    def register(self, job: str, interval_seconds: float) -> None:
        with self._lock:
            self._health.setdefault(job, JobHealth(job=job, interval_seconds=interval_seconds))

    def publish(self, job: str, snapshot: Any) -> None:
        with self._lock:
            self._snapshots[job] = snapshot
            self.generation += 1

    def record(self, job: str, *, ok: bool, duration: float, at: float, error: str | None) -> None:
        with self._lock:
            self._health[job] = self._health[job].finished(
                ok=ok, duration=duration, at=at, error=error
            )
            self.generation += 1

    def snapshots(self) -> Mapping[str, Any]:
        with self._lock:
            return dict(self._snapshots)

    def health(self) -> Mapping[str, JobHealth]:
        with self._lock:
            return dict(self._health)

    def ready(self) -> bool:
        """True once every registered job has finished at least one run."""
        with self._lock:
            return bool(self._health) and all(h.runs > 0 for h in self._health.values())
