"""The prediction service's moving parts and their lifecycle.

`ApiRuntime` holds what the routes use (the champion holder, the challenger holder when
shadow scoring is on, the micro-batching scorer, the prediction log's engine and its
file guard, the ``churn_api_*`` metrics) and runs the app's lifespan: create the log's
tables, load the first model (waiting at most ``model_wait_seconds``), start the scorer
and the background tasks (the model poll every ``api.model_poll_seconds``, the
challenger's first load and then its poll at the same interval, the SQLite WAL
checkpoint every :data:`CHECKPOINT_SECONDS`), and stop them all at shutdown.

Only the champion gates readiness: the challenger is first loaded in a task of its own
once the champion's first load has settled, so it never delays the first answer nor
competes with the champion's load for the CPU, and its loads never hold up the
champion's poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from fastapi import FastAPI
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from exporter.api.champion import ModelHolder
from exporter.api.logguard import LogFileGuard
from exporter.api.metrics import ApiMetrics
from exporter.api.scoring import Scorer
from exporter.data import predlog

log = logging.getLogger("churn_monitor.api")

#: How often the SQLite log's WAL is checkpointed, off the request path.
CHECKPOINT_SECONDS = 1.0

T = TypeVar("T")


def in_daemon_thread(func: Callable[[], T]) -> asyncio.Future[T]:
    """Run blocking `func` in a daemon thread of its own; its result as a future.

    For calls that may block for minutes (MLflow retrying an unreachable registry):
    awaiting them can be cancelled, and a shutdown neither waits for the thread nor
    is held by it at exit (a worker-pool thread would be waited for)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = func()
        except BaseException as err:
            error = err
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="churn-api-model-load", daemon=True).start()
    return future


@dataclass
class ApiRuntime:
    """The service's state and background work (see the module docstring).

    `own_engine`: the engine was made for this app and is disposed at shutdown.
    `freeze_gc`: after each model load, move every live object into the garbage
    collector's permanent generation (see ``create_app``).
    """

    metrics: ApiMetrics
    holder: ModelHolder
    scorer: Scorer
    engine: Engine
    guard: LogFileGuard
    poll_seconds: float
    model_wait_seconds: float
    #: The challenger shadow-scoring every prediction (None: shadow scoring is off).
    challenger: ModelHolder | None = None
    own_engine: bool = False
    freeze_gc: bool = False
    tables_ready: bool = False
    #: The first model load while it outlasts `model_wait_seconds`.
    first_load: asyncio.Future[bool] | None = field(default=None, repr=False)

    def ensure_tables(self) -> None:
        """Create the prediction log's tables once; log (not raise) a failure."""
        if self.tables_ready:
            return
        try:
            predlog.create_tables(self.engine)
            self.tables_ready = True
        except SQLAlchemyError as err:
            log.error(
                "cannot create the prediction log tables at %s: %s",
                self.engine.url.render_as_string(hide_password=True),
                err,
            )

    def settle_gc(self) -> None:
        if self.freeze_gc:
            gc.collect()
            gc.freeze()

    def checkpoint(self) -> None:
        """Checkpoint the SQLite WAL; a failure is only logged (the next one retries)."""
        try:
            self.guard.check()
            predlog.checkpoint(self.engine)
        except (SQLAlchemyError, predlog.LogUnavailable) as err:
            log.debug("WAL checkpoint failed: %s", err)

    def ping(self) -> None:
        """Raise `LogUnavailable` unless the prediction log answers."""
        self.guard.check()
        predlog.ping(self.engine)

    async def _poll_once(self) -> None:
        if not self.tables_ready:
            await run_in_threadpool(self.ensure_tables)
        initial = self.first_load
        if initial is not None:
            if not initial.done():
                return  # the first load is still running (registry slow)
            self.first_load = None
            if self.holder.current is not None:
                self.settle_gc()
                return
        if await in_daemon_thread(self.holder.poll):
            self.settle_gc()

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self._poll_once()
            except Exception:
                log.exception("model poll failed")

    async def follow_challenger(self) -> None:
        """Load the challenger, then poll its alias every `poll_seconds`."""
        assert self.challenger is not None
        step = self.challenger.load
        while True:
            try:
                if await in_daemon_thread(step):
                    self.settle_gc()
            except Exception:
                log.exception("challenger poll failed")
            step = self.challenger.poll
            await asyncio.sleep(self.poll_seconds)

    async def checkpoint_forever(self) -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            await run_in_threadpool(self.checkpoint)

    async def _load_first_model(self) -> None:
        initial = in_daemon_thread(self.holder.load)
        done, _ = await asyncio.wait({initial}, timeout=self.model_wait_seconds)
        if initial in done:
            self.settle_gc()
            return
        self.first_load = initial
        log.warning(
            "no model loaded after %.0f s (the registry is slow or unreachable); "
            "serving with /health at 503 until the load finishes",
            self.model_wait_seconds,
        )

    async def _start(self) -> list[asyncio.Task[None]]:
        await run_in_threadpool(self.ensure_tables)
        await self._load_first_model()
        self.scorer.start()
        background = [asyncio.create_task(self.poll_forever(), name="churn-api-model-poll")]
        if self.challenger is not None:
            background.append(
                asyncio.create_task(self.follow_challenger(), name="churn-api-challenger-poll")
            )
        if predlog.is_sqlite(self.engine):
            background.append(
                asyncio.create_task(self.checkpoint_forever(), name="churn-api-wal-checkpoint")
            )
        return background

    async def _stop(self, background: list[asyncio.Task[None]]) -> None:
        for task in background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.scorer.stop()
        if predlog.is_sqlite(self.engine):
            await run_in_threadpool(self.checkpoint)
        if self.own_engine:
            self.engine.dispose()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        """The app's lifespan: start everything, serve, stop everything."""
        background = await self._start()
        try:
            yield
        finally:
            await self._stop(background)
