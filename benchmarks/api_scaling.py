"""API throughput and p99 with 1, 2 and 4 replicas, on SQLite and on PostgreSQL, in one run.

For each prediction log (a fresh SQLite file; a fresh database on a throwaway
PostgreSQL server started here when PostgreSQL is installed) and each replica count,
this script starts ``churn-monitor api --workers N`` from ``--config`` (its champion,
the log replaced), waits until every replica serves, and runs a closed loop:
``--clients`` keep-alive connections, client k on replica k mod N (the load balancer),
each sending single ``POST /predict`` back to back for ``--seconds``. Reported:
predictions per second, p50 and p99 latency, and the rate relative to one replica on
the same backend. The client is api_load.py's asyncio client, in this process, on the
same machine as the replicas. Run on demand, never part of the test suite::

    .venv/bin/python benchmarks/api_scaling.py --config configs/monitoring/demo.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_load import REPO, _bodies, _stop, _wait_healthy, closed_loop
from window_read import backends

from tests.pg_fixtures import postgres_bindir


def free_run(n: int) -> int:
    """The first of `n` consecutive free loopback ports."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        free = True
        for port in range(first, first + n):
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    free = False
                    break
        if free:
            return first


def run_replicas(
    config: str, log_url: str, workers: int, folder: Path, args: argparse.Namespace
) -> dict[str, Any]:
    raw = yaml.safe_load(Path(config).read_text(encoding="utf-8")) or {}
    raw.setdefault("data", {})["current"] = {"url": log_url}
    path = folder / f"config-{workers}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    port = free_run(workers)
    ports = [port + i for i in range(workers)]
    log = open(folder / f"api-{workers}.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "exporter", "api", "--config", str(path)),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        for number in ports:
            _wait_healthy(f"http://127.0.0.1:{number}", 300, server)
        bodies = _bodies(5000, seed=7)
        asyncio.run(closed_loop("127.0.0.1", ports, bodies, workers * 2, 2.0))  # warm-up
        return asyncio.run(closed_loop("127.0.0.1", ports, bodies, args.clients, args.seconds))
    finally:
        _stop(server)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a config with a registered champion")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        backends(Path(tmp), postgres_bindir() is not None) as found,
    ):
        for backend, new_url in found.items():
            base = None
            for workers in args.workers:
                r = run_replicas(args.config, new_url(f"log{workers}"), workers, Path(tmp), args)
                base = base or r["rate"]
                print(
                    f"{backend:<11} {workers} replica(s): {r['rate']:7.0f} predictions/s   "
                    f"p50 {r['p50'] * 1000:6.1f} ms   p99 {r['p99'] * 1000:6.1f} ms   "
                    f"x{r['rate'] / base:.2f}   statuses {r['statuses']}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
