"""Several API processes on consecutive ports: ``churn-monitor api --workers N``.

Why not uvicorn's workers
    uvicorn's ``workers`` share one port, and the kernel hands each connection to any
    of them: a scrape of that port would read the counters of whichever worker took it,
    and Prometheus' rates would jump between workers. Here each replica is a whole API
    process (its model, scorer, log writer and /metrics) on its own port, ``port`` to
    ``port + N - 1``: Prometheus scrapes each (file-based discovery under `up`, DNS in
    compose), the dashboards sum over them, and a load balancer spreads the requests.

All replicas write to the one prediction log of the config: a PostgreSQL server
(docs/scaling.md); SQLite serializes writers across processes and suits a few at most.

Stopping
    SIGTERM or SIGINT stops every replica (each finishes its in-flight requests and
    flushes its log), and so does the exit of any one of them: the command exits with
    that replica's status, so a supervisor (``up``, systemd) sees the failure.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.process import BaseProcess

from exporter.config import MonitoringConfig

log = logging.getLogger("churn_monitor.api")

#: How long each replica gets to finish its requests after SIGTERM, seconds.
STOP_SECONDS = 30.0


def replica_ports(port: int, workers: int) -> list[int]:
    """The ports of `workers` replicas starting at `port`."""
    return [port + i for i in range(workers)]


def _replica(config: MonitoringConfig, host: str, port: int) -> None:
    from exporter.api.app import serve_api

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops its replicas
    serve_api(config, host=host, port=port)


def serve_replicas(config: MonitoringConfig, host: str, port: int, workers: int) -> int:
    """Run `workers` API processes on ``port``..``port + workers - 1`` until SIGTERM,
    SIGINT or the exit of one; return 0 after a requested stop, else the status of the
    replica that exited (1 if it was killed)."""
    ctx = multiprocessing.get_context("spawn")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    replicas: list[BaseProcess] = []
    for number in replica_ports(port, workers):
        process = ctx.Process(
            target=_replica, args=(config, host, number), name=f"churn-api-{number}"
        )
        process.start()
        replicas.append(process)
        log.info("API replica on port %d: pid %s", number, process.pid)
    exited: BaseProcess | None = None
    while exited is None and not stop.wait(0.5):
        exited = next((p for p in replicas if not p.is_alive()), None)
    if exited is not None:
        log.error(
            "API replica %s exited with status %s; stopping all", exited.name, exited.exitcode
        )
    for replica in replicas:
        if replica.is_alive():
            replica.terminate()  # SIGTERM: uvicorn's graceful shutdown
    for replica in replicas:
        replica.join(STOP_SECONDS)
        if replica.is_alive():
            replica.kill()
            replica.join()
    if exited is None:
        return 0
    code = exited.exitcode
    return code if code is not None and code > 0 else 1
