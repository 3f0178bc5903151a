"""API replicas over one PostgreSQL prediction log (issue 20), with real processes.

- `churn-monitor api --workers 4` on a real PostgreSQL server: 50 keep-alive clients
  spread over the four replicas send 20,000 predictions; every answer is a 2xx, the log
  holds exactly one row per answer, each replica reports its own requests, and the
  feedback of every prediction, sent through any replica, joins its row.
- `churn-monitor up --api-replicas 2` with the PostgreSQL URL: Prometheus discovers both
  replicas from the file `up` writes and scrapes both as up.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.data import predlog

from .api_fixtures import TrainedStore, customers, fetch_rows
from .pg_fixtures import Backend, PostgresServer
from .support import Process, free_port, wait_until

pytest_plugins = ["tests.api_fixtures"]
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
WORKERS = 4
CLIENTS = 50
PREDICTIONS = 20_000
STARTUP = 300.0


def free_ports(n: int) -> int:
    """The first of `n` consecutive free ports on 127.0.0.1."""

    def free(port: int) -> bool:
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
            return True

    return wait_until(
        lambda: (
            (first := free_port()) + n < 65536 and all(free(first + i) for i in range(n)) and first
        ),
        30,
        f"{n} consecutive free ports",
    )


@pytest.fixture(scope="module")
def pg_log(
    postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """An empty PostgreSQL database for the prediction log of this module."""
    backend = Backend("postgresql", tmp_path_factory.mktemp("replicas"), postgres_server)
    try:
        yield backend.url("replicas")
    finally:
        backend.drop()


def replica_config(store: TrainedStore, log_url: str, folder: Path, **extra: Any) -> Path:
    raw = {
        **store.config_raw,
        "data": {**store.config_raw["data"], "current": {"url": log_url}},
        **extra,
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def requests_by_replica(url: str) -> float:
    """The predictions one replica answered, from its own /metrics."""
    body = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == "churn_api_requests_total"
        and s.labels.get("route") == "/predict"
        and s.labels.get("status", "").startswith("2")
    )


async def _post_all(
    port: int, path: str, bodies: list[bytes]
) -> tuple[Counter[int], list[dict[str, Any]], list[str]]:
    """One keep-alive HTTP/1.1 client: POST each body in turn and read each answer."""
    statuses: Counter[int] = Counter()
    answers: list[dict[str, Any]] = []
    problems: list[str] = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for body in bodies:
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json"
                f"\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            status = int(head.split(" ", 2)[1])
            length = int(head.lower().split("content-length:", 1)[1].split("\r\n", 1)[0])
            answer = await reader.readexactly(length)
            statuses[status] += 1
            if 200 <= status < 300:
                answers.append(json.loads(answer))
            elif len(problems) < 5:
                problems.append(f"{status}: {answer[:200]!r}")
    finally:
        writer.close()
    return statuses, answers, problems


def spread(
    ports: list[int], path: str, bodies: list[bytes], clients: int
) -> tuple[Counter[int], list[dict[str, Any]], list[str]]:
    """POST `bodies` to `path` from `clients` concurrent keep-alive clients (one event
    loop: little client CPU taken from the replicas), client k on replica k mod
    len(ports) and sending bodies k, k + clients, ...: the status counts, the 2xx
    answers, and the first errors."""

    async def run() -> list[tuple[Counter[int], list[dict[str, Any]], list[str]]]:
        return await asyncio.gather(
            *(_post_all(ports[k % len(ports)], path, bodies[k::clients]) for k in range(clients))
        )

    statuses: Counter[int] = Counter()
    answers: list[dict[str, Any]] = []
    problems: list[str] = []
    for codes, got, errors in asyncio.run(asyncio.wait_for(run(), 600)):
        statuses.update(codes)
        answers.extend(got)
        problems.extend(errors)
    return statuses, answers, problems


def test_four_replicas_on_postgresql_log_each_answer_once_and_join_every_label(
    mlflow_store: TrainedStore, pg_log: str, tmp_path: Path
) -> None:
    config = replica_config(mlflow_store, pg_log, tmp_path)
    port = free_ports(WORKERS)
    api = Process(
        [
            *(sys.executable, "-m", "exporter", "api", "--config", str(config)),
            *("--host", "127.0.0.1", "--port", str(port), "--workers", str(WORKERS)),
        ],
        tmp_path / "api.log",
        cwd=REPO,
    )
    urls = [f"http://127.0.0.1:{port + i}" for i in range(WORKERS)]
    try:

        def all_serving() -> bool:
            assert api.alive(), api.output()
            return all(httpx.get(f"{u}/health", timeout=2).status_code == 200 for u in urls)

        wait_until(all_serving, STARTUP, f"{WORKERS} replicas to load the champion")
        bodies = [
            json.dumps(c).encode() for c in customers(PREDICTIONS, seed=43, id_offset=5_000_000)
        ]
        ports = [port + i for i in range(WORKERS)]
        statuses, answers, problems = spread(ports, "/predict", bodies, CLIENTS)
        assert not problems, problems[:5]
        assert statuses == {200: PREDICTIONS}, statuses
        ids = [a["prediction_id"] for a in answers]
        assert len(set(ids)) == PREDICTIONS
        # each replica answered its own clients, and counts only its own
        served = [requests_by_replica(u) for u in urls]
        sent = Counter(i % CLIENTS % WORKERS for i in range(PREDICTIONS))  # body i: client i
        assert served == [sent[i] for i in range(WORKERS)], served

        # one row per answer, once every replica flushed its writer
        table = predlog.predictions
        query = sa.select(table.c.id)
        wait_until(lambda: len(fetch_rows(pg_log, query)) >= PREDICTIONS, 120, "every row flushed")
        logged = Counter(row["id"] for row in fetch_rows(pg_log, query))
        assert set(logged) == set(ids) and max(logged.values()) == 1

        # the label of each, sent to a replica chosen by client, joins its row
        labels = {pid: i % 2 for i, pid in enumerate(ids)}
        feedback = [
            json.dumps({"prediction_id": p, "actual": y}).encode() for p, y in labels.items()
        ]
        statuses, _, problems = spread(ports, "/feedback", feedback, CLIENTS)
        assert not problems, problems[:5]
        assert statuses == {201: PREDICTIONS}, statuses
        joined = fetch_rows(pg_log, predlog.labelled_query(columns=["id"]))
        assert {row["id"]: row["actual"] for row in joined} == labels
    finally:
        api.signal(signal.SIGTERM)
        api.popen.wait(120)
        output = api.output()
        api.stop()
    assert api.popen.returncode == 0, output[-3000:]


def test_up_with_two_replicas_on_postgresql_has_both_scraped(
    require_binary: Any, mlflow_store: TrainedStore, pg_log: str, tmp_path: Path
) -> None:
    require_binary("prometheus")
    port = free_ports(2)
    prometheus = free_port()
    config = replica_config(
        mlflow_store,
        pg_log,
        tmp_path,
        api={"port": port, "url": f"http://127.0.0.1:{port}"},
        history={"url": pg_log},
        stack={"ports": {"prometheus": prometheus}, "scrape_interval": "1s"},
    )
    up = Process(
        [
            *(sys.executable, "-m", "exporter", "up", "--config", str(config)),
            *("--services", "api", "prometheus", "--api-replicas", "2"),
        ],
        tmp_path / "up.out",
        cwd=tmp_path,
    )
    try:

        def both_up() -> bool:
            assert up.alive(), up.output()
            answer = httpx.get(f"http://127.0.0.1:{prometheus}/api/v1/targets", timeout=5)
            targets = answer.json()["data"]["activeTargets"]
            api = {
                t["labels"]["instance"]: t["health"]
                for t in targets
                if t["labels"]["job"] == "churn-api"
            }
            return api == {f"127.0.0.1:{port}": "up", f"127.0.0.1:{port + 1}": "up"}

        wait_until(both_up, STARTUP, "Prometheus to scrape both API replicas")
        for number in (port, port + 1):
            assert httpx.get(f"http://127.0.0.1:{number}/health", timeout=5).status_code == 200
    finally:
        up.signal(signal.SIGTERM)
        up.popen.wait(120)
        output = up.output()
        up.stop()
    assert up.popen.returncode == 0, output[-3000:]
