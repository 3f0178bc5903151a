"""The push endpoint: ``POST /ingest`` appends another server's predictions to the log.

For models this project's API does not serve (docs/ingest.md). A body is a JSON array
of records or JSON lines, each record a prediction-log row
(:mod:`exporter.data.records`). A batch is all or nothing: every record is checked
first, and one bad field refuses the whole batch (422, naming ``rows[i].field``) with
nothing written; a good batch is appended in one transaction
(:func:`exporter.data.predlog.append_pushed`). The exporter's drift and performance
jobs read the log, so pushed rows reach them like the API's.

The server's route (:mod:`exporter.monitor.server`) bounds the body; authentication
is the server's web config (basic auth and TLS), as for /metrics.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exporter.config import ConfigError, MonitoringConfig
from exporter.data import predlog
from exporter.data.records import BadBody, BadRows, parse_body, validate_records
from exporter.monitor.collector import INGEST_REFUSED_STATUSES, ingest_families
from exporter.web.webconfig import WebConfig

log = logging.getLogger(__name__)

Answer = tuple[int, dict[str, Any]]


class Ingestor(Collector):
    """Checks and appends pushed batches; counts rows and refusals for /metrics.

    Thread-safe: the server calls `handle` from one thread per request.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_body_bytes: int,
        model: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.max_body_bytes = max_body_bytes
        self.model = model
        self.clock = clock
        self._lock = threading.Lock()
        self._rows = 0
        self._refused: dict[str, int] = dict.fromkeys(INGEST_REFUSED_STATUSES, 0)
        #: Changes with every count: the server's cached exposition is keyed on it.
        self.generation = 0

    def refused(self, status: int) -> None:
        """Count a refused request (the server calls it for 405, 411 and 413 itself)."""
        with self._lock:
            key = str(status)
            self._refused[key] = self._refused.get(key, 0) + 1
            self.generation += 1

    def _ingested(self, rows: int) -> None:
        with self._lock:
            self._rows += rows
            self.generation += 1

    def handle(self, body: bytes) -> Answer:
        """(HTTP status, JSON answer) for one request body within the size bound."""
        status, answer = self._handle(body)
        if status >= 400:
            self.refused(status)
        return status, answer

    def _handle(self, body: bytes) -> Answer:
        now = self.clock()
        try:
            batch = validate_records(parse_body(body), now=now, model=self.model)
        except BadBody as err:
            return 400, {"error": str(err)}
        except BadRows as err:
            problems = [
                {"row": p.row, "field": p.field, "where": p.where, "message": p.message}
                for p in err.problems
            ]
            return 422, {"error": str(err), "problems": problems}
        try:
            predlog.append_pushed(
                self.engine, batch.rows, batch.labels, label_ts=now, client_ids=batch.given_ids
            )
        except predlog.DuplicatePrediction as err:
            where = next(
                (f"rows[{i}].id: " for i, row in enumerate(batch.rows) if row["id"] == err.id), ""
            )
            return 409, {"error": f"{where}{err}; nothing was logged"}
        except predlog.LogUnavailable as err:
            log.error("push refused: %s", err)
            return 503, {"error": "prediction log unavailable; nothing was logged, retry later"}
        self._ingested(len(batch.rows))
        return 200, {
            "ingested": len(batch.rows),
            "labels": len(batch.labels),
            "ids": [row["id"] for row in batch.rows],
        }

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            rows, refused = self._rows, dict(self._refused)
        yield from ingest_families(rows, refused)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_ingestor(config: MonitoringConfig, web: WebConfig | None = None) -> Ingestor | None:
    """The push endpoint of `config` (None while ``exporter.ingest.enabled`` is false).

    Opens the prediction log (``data.current.url``, tables created when missing); a
    file source has no log to append to, a ConfigError naming the field. Warns when the
    endpoint is reachable beyond this machine without basic auth.
    """
    settings = config.exporter.ingest
    if not settings.enabled:
        return None
    current = config.data.current
    if current.kind != "sql":
        raise ConfigError(
            "exporter.ingest.enabled: the push endpoint appends to the prediction log, "
            f"but data.current.kind is {current.kind!r} (set it to 'sql')"
        )
    if (web is None or not web.users) and not _loopback(config.exporter.host):
        log.warning(
            "POST /ingest on %s accepts predictions without credentials: set "
            "basic_auth_users in exporter.web_config_file (docs/ingest.md)",
            config.exporter.host,
        )
    engine = predlog.make_engine(current.url)
    try:
        predlog.create_tables(engine)
    except SQLAlchemyError as err:  # the log may come up later; each push reports it then
        log.warning("prediction log not ready for POST /ingest yet: %s", err)
    return Ingestor(engine, max_body_bytes=settings.max_body_bytes, model=config.model.name)
