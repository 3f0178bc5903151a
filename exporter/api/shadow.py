"""Shadow scoring: the challenger scores the logged predictions off the request path.

The champion's micro-batch is scored, logged and answered first (:mod:`.scoring`);
its logged rows are then handed to `ShadowScorer`, whose own worker thread, every
:data:`FLUSH_SECONDS`, takes everything handed over since, scores it with the
challenger in one call (its verified fast path when it has one) and writes the
challenger's version and scores into those rows in one transaction. A request never
waits for the challenger, and a slow challenger costs the champion only CPU: one call
and one short write a few times a second, however many requests arrived meanwhile.

The write goes through the champion's own worker (the `writer` given to :meth:`start`),
so the log has one writer: the champion's next insert queues behind a write of a
millisecond instead of meeting SQLite's write lock, whose busy handler sleeps for
milliseconds at a time (measured: the champion's p99 at 300 requests/s rose by a fifth
with two writers).

Nothing here fails a request. A challenger that raises, or a log that refuses the
write, leaves the rows' challenger columns null (the comparison skips them) and is
counted in ``churn_api_shadow_failures_total`` (``stage`` ``score`` or ``log``), and
logged once per challenger version. More than :data:`MAX_PENDING_ROWS` rows waiting
(a challenger far slower than the traffic) are not queued: counted as ``overload``.
At shutdown what is pending is scored once more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import numpy as np
from sqlalchemy.engine import Engine

from exporter.api.champion import ModelHolder
from exporter.api.logguard import LogFileGuard
from exporter.api.metrics import ApiMetrics, ShadowStage
from exporter.data import predlog
from exporter.domain import schema
from exporter.domain.model import ModelRef

log = logging.getLogger("churn_monitor.api")

#: How often the rows handed over are scored and written (seconds).
FLUSH_SECONDS = 0.25
#: Rows waiting beyond this are not shadow-scored (counted as overload).
MAX_PENDING_ROWS = 100_000


def _concat(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Feature columns of several micro-batches as one (arrays joined, lists chained)."""
    if len(parts) == 1:
        return parts[0]
    columns: dict[str, Any] = {}
    for name in schema.FEATURES:
        values = [part[name] for part in parts]
        if isinstance(values[0], np.ndarray):
            columns[name] = np.concatenate(values)
        else:
            columns[name] = [v for chunk in values for v in chunk]
    return columns


class ShadowScorer:
    """The challenger's worker: rows handed over, scored and written in the background."""

    def __init__(
        self,
        holder: ModelHolder,
        engine: Engine,
        metrics: ApiMetrics,
        guard: LogFileGuard | None = None,
        thread_initializer: Callable[[], None] | None = None,
    ) -> None:
        self.holder = holder
        self.engine = engine
        self.metrics = metrics
        self.guard = guard if guard is not None else LogFileGuard(engine)
        self._initializer = thread_initializer
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._columns: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writer: Executor | None = None
        self._failed: ModelRef | None = None  # the challenger whose failure was logged

    def submit(self, ids: list[str], columns: dict[str, Any]) -> None:
        """Hand over logged rows (their ids and feature columns); thread-safe, no wait."""
        if self.holder.current is None or not ids:
            return
        with self._lock:
            if len(self._ids) + len(ids) > MAX_PENDING_ROWS:
                self.metrics.shadow_failed("overload")
                return
            self._ids.extend(ids)
            self._columns.append(columns)

    def _take(self) -> tuple[list[str], list[dict[str, Any]]]:
        with self._lock:
            ids, columns = self._ids, self._columns
            self._ids, self._columns = [], []
        return ids, columns

    def flush(self) -> int:
        """Blocking: score and write everything handed over; the rows written."""
        ids, parts = self._take()
        challenger = self.holder.current
        if not ids or challenger is None:
            return 0
        try:
            scores = challenger.probabilities(_concat(parts), len(ids))
        except Exception:
            self._failure("score", challenger.ref)
            return 0
        version = challenger.ref.version
        rows = [(version, score, pid) for score, pid in zip(scores.tolist(), ids, strict=True)]
        try:
            if self._writer is None:
                self._write(rows)
            else:
                self._writer.submit(self._write, rows).result()
        except predlog.LogUnavailable:
            self._failure("log", challenger.ref)
            return 0
        self.metrics.observe_shadow(scores)
        return len(rows)

    def _write(self, rows: list[tuple[str, float, str]]) -> None:
        self.guard.check()
        predlog.record_shadow_scores(self.engine, rows)

    def _failure(self, stage: ShadowStage, ref: ModelRef) -> None:
        self.metrics.shadow_failed(stage)
        if self._failed != ref:
            self._failed = ref
            log.exception(
                "shadow scoring with challenger %s version %s failed (%s); those rows keep "
                "null challenger columns (said once per version)",
                ref.name,
                ref.version,
                stage,
            )

    def start(self, writer: Executor | None = None) -> None:
        """Start the worker; the log writes go through `writer` (None: this worker)."""
        self._writer = writer
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="churn-api-shadow", initializer=self._initializer
        )
        self._task = asyncio.create_task(self._run(), name="churn-api-shadow")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await loop.run_in_executor(self._executor, self.flush)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self.flush)
            self._executor.shutdown(wait=True)
            self._executor = None
        self._writer = None
