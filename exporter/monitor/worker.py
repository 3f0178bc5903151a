"""The monitoring worker: continuous mode's scheduled jobs, in a process of their own.

Why a process
    A drift run over a large window holds the interpreter for seconds. Run in the
    server's process, it competed with the scrapes for the GIL: /metrics p99 went to
    seconds under 20 scrapers (docs/reliability.md). In continuous mode the server's
    process now only serves; the jobs compute in the worker.

How
    `serve` (:mod:`exporter.monitor.wiring`) starts a `WorkerSupervisor`, which starts
    the worker with multiprocessing's ``spawn`` context (a fresh interpreter, never a
    fork of the threaded server). The worker builds the Monitor from the same config
    (`WorkerSpec`: ``build_monitor`` and its arguments) and runs its jobs on an
    APScheduler scheduler with `jobs.run_job`, unchanged. The store they write to is a
    `StoreProxy`: each ``register``, ``publish`` and ``record`` is sent down a pipe,
    ``publish`` and ``record`` with the model the worker's jobs resolved. A snapshot
    crosses rendered: its families as exposition text and deflate stream
    (:mod:`exporter.monitor.exposition`), formatted and compressed here, in the worker.
    In the server one receiver thread applies the updates to the real `SnapshotStore`,
    keeps the forwarded model (`WorkerSupervisor.model`, what ``churn_model_info``
    shows) and, once per batch of updates, joins the server's own small part with the
    jobs' fragments (`server.CachedExposition.refresh`); a scrape only copies bytes out.

    The server keeps the HTTP server, the collector, the alert webhook and retraining
    trigger, and the push endpoint (``POST /ingest`` appends to the prediction log; the
    worker's streaming job reads it from there).
Stopping
    The worker exits when the server closes its control pipe (SIGTERM or SIGINT to the
    server: `serve` stops the worker, then the HTTP server), when the server dies
    however it dies (end of file on the pipe, or its parent pid changes), and on its
    own SIGTERM. It ignores SIGINT: a Ctrl-C reaches the whole process group, and the
    server stops it. A run in progress is abandoned; reports are written atomically.
A worker that dies
    (a crash, the OOM killer, a SIGKILL) is restarted by the server, which keeps
    serving the last good snapshots meanwhile. It logs an error naming the exit code
    and records a failed run for every job, with the error ``monitoring worker ...
    died``: ``churn_exporter_job_success`` is 0 and ``churn_exporter_job_failures_total``
    grows until each job's next run in the new worker, so a worker that keeps dying
    fires ``ChurnMonitoringJobFailing``. The restart waits 1 s, doubling to at most
    60 s while workers keep dying young (back to 1 s after one lived 60 s). The new
    worker runs every job at once; the streaming window is rebuilt from the log.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from exporter.monitor.collector import BUILDERS, FamilyBuilder
from exporter.monitor.exposition import EMPTY, Fragment
from exporter.monitor.jobs import start_scheduler
from exporter.monitor.store import SnapshotStore

if TYPE_CHECKING:
    from exporter.monitor.wiring import Monitor

log = logging.getLogger(__name__)

#: The start method of the worker: a fresh interpreter, not a fork of a threaded one.
START_METHOD = "spawn"
#: First and longest wait before a dead worker is restarted (module notes).
RESTART_DELAYS = (1.0, 60.0)
#: How long the receiver waits for a message following one, to render both at once
#: (`run_job` sends a run's snapshot and health back to back).
BATCH_WAIT = 0.005
#: The worker's scheduling niceness, added to the server's: when both want a core, the
#: kernel runs the server first, so a scrape does not queue behind a drift run.
NICENESS = 10
#: How long a stopped worker gets to exit before it is terminated, then killed.
STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class WorkerSpec:
    """How the worker builds its Monitor: ``build(*args, **kwargs)`` in the worker.

    Everything is pickled to the new interpreter: `build` is a module-level function
    (``wiring.build_monitor``), the arguments plain data (the config).
    """

    build: Callable[..., Monitor]
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class StoreProxy:
    """The store the worker's jobs write to: every call is sent to the server.

    Implements `store.StoreWriter` (what `jobs.run_job` calls). A published snapshot
    crosses rendered: its families (`builders`, by job) as an exposition `Fragment`,
    which the server joins into /metrics as is (a job without a builder: an empty
    one). Thread-safe: the scheduler's threads send whole messages one at a time.
    """

    def __init__(
        self,
        conn: Connection,
        model: Callable[[], Any],
        builders: Mapping[str, FamilyBuilder] = BUILDERS,
    ) -> None:
        self._conn = conn
        self._model = model
        self._builders = builders
        self._lock = threading.Lock()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            self._conn.send(message)

    def register(self, job: str, interval_seconds: float) -> None:
        self._send(("register", job, interval_seconds))

    def publish(self, job: str, snapshot: Any) -> None:
        builder = self._builders.get(job)
        fragment = EMPTY if builder is None else Fragment.render(builder(snapshot))
        self._send(("publish", job, fragment, self._model()))

    def record(self, job: str, *, ok: bool, duration: float, at: float, error: str | None) -> None:
        self._send(("record", job, ok, duration, at, error, self._model()))


def apply(store: SnapshotStore, message: tuple[Any, ...]) -> tuple[bool, Any]:
    """Apply one `StoreProxy` message to `store`; return (carries a model, the model)."""
    kind = message[0]
    if kind == "register":
        _, job, interval = message
        store.register(job, interval)
        return False, None
    if kind == "publish":
        _, job, fragment, model = message
        store.publish(job, fragment)
        return True, model
    if kind == "record":
        _, job, ok, duration, at, error, model = message
        store.record(job, ok=ok, duration=duration, at=at, error=error)
        return True, model
    raise ValueError(f"unknown worker message {kind!r}")


def receive(
    conn: Connection,
    store: SnapshotStore,
    *,
    on_model: Callable[[Any], None] = lambda _: None,
    on_change: Callable[[], None] = lambda: None,
) -> None:
    """Apply the updates arriving on `conn` to `store` until the sender is gone.

    After each batch (every message waiting, or following within `BATCH_WAIT`)
    `on_change` runs once: the server re-renders its cached exposition there, not per
    scrape.
    """
    while True:
        batch: list[tuple[Any, ...]] = []
        gone = False
        try:
            batch.append(conn.recv())
            while conn.poll(BATCH_WAIT):
                batch.append(conn.recv())
        except (EOFError, OSError):
            gone = True
        except Exception:  # one message that does not unpickle: the next ones may
            log.exception("cannot read an update of the worker")
        for message in batch:
            try:
                carries, model = apply(store, message)
            except Exception:
                log.exception("cannot apply the worker's update %r", message[:2])
                continue
            if carries:
                on_model(model)
        if batch:
            try:
                on_change()
            except Exception:
                log.exception("cannot render the exposition after the worker's updates")
        if gone:
            return


# --------------------------------------------------------------------------- the worker


def _logging_setup() -> dict[str, Any]:
    """The server's logging, for the worker to repeat (format, levels)."""
    root = logging.getLogger()
    formats = [getattr(h.formatter, "_fmt", None) for h in root.handlers if h.formatter]
    levels = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET
    }
    return {"level": root.level, "format": formats[0] if formats else None, "levels": levels}


def _configure_logging(setup: Mapping[str, Any]) -> None:
    logging.basicConfig(level=setup["level"], format=setup["format"], force=True)
    for name, level in setup["levels"].items():
        logging.getLogger(name).setLevel(level)


def _watch_parent(control: Connection, parent: int, stop: threading.Event) -> None:
    """Set `stop` when the server says so, closes the pipe, or dies."""
    try:
        while not control.poll(1.0):
            if os.getppid() != parent:
                break
    except (EOFError, OSError):
        pass
    stop.set()


def worker_main(
    spec: WorkerSpec,
    updates: Connection,
    control: Connection,
    parent: int,
    logging_setup: Mapping[str, Any],
) -> None:
    """The worker process: build the Monitor, run its jobs, forward their updates."""
    os.nice(NICENESS)
    _configure_logging(logging_setup)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(
        target=_watch_parent, args=(control, parent, stop), name="worker-parent", daemon=True
    ).start()
    monitor = spec.build(*spec.args, **dict(spec.kwargs))
    proxy = StoreProxy(updates, monitor.model, monitor.builders or BUILDERS)
    scheduler = start_scheduler([*monitor.jobs, *monitor.streams], proxy)
    log.info("monitoring worker %d running %d job(s)", os.getpid(), len(scheduler.get_jobs()))
    stop.wait()
    log.info("monitoring worker %d stopping", os.getpid())
    scheduler.shutdown(wait=False)
    # A job still computing would hold the interpreter at exit; reports are written
    # atomically, so abandoning it loses nothing.
    logging.shutdown()
    os._exit(0)


# --------------------------------------------------------------------------- the server


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class WorkerSupervisor:
    """Runs the worker process, applies its updates to `store`, restarts it if it dies.

    `model` answers the model the worker's jobs last forwarded (`fallback` before the
    first). `on_change` runs in the receiver thread once per batch of updates.
    """

    def __init__(
        self,
        spec: WorkerSpec,
        store: SnapshotStore,
        *,
        fallback: Callable[[], Any] = lambda: None,
        on_change: Callable[[], None] = lambda: None,
        delays: tuple[float, float] = RESTART_DELAYS,
    ) -> None:
        self.spec = spec
        self.store = store
        self.fallback = fallback
        self.on_change = on_change
        self.delays = delays
        self._ctx = multiprocessing.get_context("spawn")  # START_METHOD
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: BaseProcess | None = None
        self._control: Connection | None = None
        self._model: Any = None
        self._thread = threading.Thread(target=self._run, name="monitor-worker", daemon=True)
        #: Workers started since start (1 until the first restart).
        self.starts = 0

    def model(self) -> Any:
        model = self._model
        return model if model is not None else self.fallback()

    def _set_model(self, model: Any) -> None:
        if model is not None:
            self._model = model

    @property
    def pid(self) -> int | None:
        """The running worker's pid (None between workers)."""
        with self._lock:
            return None if self._process is None else self._process.pid

    def start(self) -> None:
        self._thread.start()

    def _spawn(self) -> tuple[BaseProcess, Connection, Connection]:
        updates_in, updates_out = self._ctx.Pipe(duplex=False)
        control_in, control_out = self._ctx.Pipe(duplex=False)
        process = self._ctx.Process(
            target=worker_main,
            args=(self.spec, updates_out, control_in, os.getpid(), _logging_setup()),
            name="churn-monitor-worker",
        )
        try:
            process.start()
        finally:
            # the worker's ends: closed here, so the pipes end when either side is gone
            updates_out.close()
            control_in.close()
        self.starts += 1
        log.info("monitoring worker started: pid %d", process.pid)
        return process, updates_in, control_out

    def _run(self) -> None:
        delay = self.delays[0]
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                process, updates, control = self._spawn()
            except Exception:
                log.exception("cannot start the monitoring worker; retrying in %.0f s", delay)
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, self.delays[1])
                continue
            with self._lock:
                self._process, self._control = process, control
                if self._stopping.is_set():
                    control.close()  # stop() came while it started
            receive(updates, self.store, on_model=self._set_model, on_change=self.on_change)
            updates.close()
            process.join(STOP_TIMEOUT)
            if process.is_alive():  # closed its pipe without exiting: make sure
                process.kill()
                process.join(STOP_TIMEOUT)
            with self._lock:
                self._process = None
                control.close()
            if self._stopping.is_set():
                return
            if time.monotonic() - started >= self.delays[1]:
                delay = self.delays[0]
            self._died(process.pid, process.exitcode, delay)
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, self.delays[1])

    def _died(self, pid: int | None, code: int | None, delay: float) -> None:
        error = f"monitoring worker {pid} {_exit_reason(code)} and died; restarted"
        log.error("%s in %.0f s", error, delay)
        now = time.time()
        for job, health in self.store.health().items():
            self.store.record(
                job, ok=False, duration=health.duration_seconds or 0.0, at=now, error=error
            )
        self.on_change()

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the worker (it exits at once, abandoning a run) and the receiver."""
        with self._lock:
            self._stopping.set()
            process, control = self._process, self._control
            if control is not None and not control.closed:
                control.close()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if process is not None and process.is_alive():
            log.warning("monitoring worker %d did not stop; terminating it", process.pid)
            process.terminate()
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join(timeout)
        if self._thread.is_alive():
            self._thread.join(timeout)
