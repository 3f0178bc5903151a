"""The exporter's HTTP endpoints: /metrics, /healthz, /ready, a landing page, and when
configured the alert webhook and the push endpoint (``POST /ingest``).

A plain WSGI app, served by :mod:`exporter.monitor.httpserver`. /metrics serves the
exposition cached since the store last changed (`CachedExposition`, plain and gzip), so
a scrape never waits for a job. In continuous mode the jobs run in a worker process
(:mod:`exporter.monitor.worker`), not here.
"""

from __future__ import annotations

import html
import json
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from exporter import __version__
from exporter.loop.receiver import MAX_BODY_BYTES, AlertReceiver
from exporter.monitor.exposition import Fragment, compose, restrict
from exporter.monitor.ingest import Ingestor
from exporter.monitor.store import SnapshotStore

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def _respond(start: StartResponse, status: str, body: bytes, ctype: str) -> list[bytes]:
    start(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
    return [body]


def _webhook(environ: dict[str, Any], start: StartResponse, receiver: AlertReceiver) -> list[bytes]:
    if environ.get("REQUEST_METHOD") != "POST":
        start("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
        return [b""]
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0 or length > MAX_BODY_BYTES:
        status, answer = 413, {"error": f"body larger than {MAX_BODY_BYTES} bytes"}
    else:
        status, answer = receiver.handle(environ["wsgi.input"].read(length))
    reason = {200: "OK", 400: "Bad Request", 413: "Content Too Large", 503: "Unavailable"}
    body = json.dumps(answer).encode()
    return _respond(start, f"{status} {reason[status]}", body, "application/json")


_REASONS = {
    200: "OK",
    400: "Bad Request",
    409: "Conflict",
    411: "Length Required",
    413: "Content Too Large",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


#: A refused body up to this size is read and dropped before the answer: closing a
#: socket with unread data resets the connection, and the client could lose the 413.
_DRAIN_BYTES = 1 << 20


def _drain(stream: Any, length: int) -> None:
    left = min(length, _DRAIN_BYTES)
    while left > 0:
        chunk = stream.read(min(left, 65536))
        if not chunk:
            return
        left -= len(chunk)


def _ingest(environ: dict[str, Any], start: StartResponse, ingestor: Ingestor) -> list[bytes]:
    """``POST /ingest``: a body of at most ``max_body_bytes`` with a Content-Length."""
    if environ.get("REQUEST_METHOD") != "POST":
        ingestor.refused(405)
        start("405 Method Not Allowed", [("Allow", "POST"), ("Content-Length", "0")])
        return [b""]
    limit = ingestor.max_body_bytes
    raw = environ.get("CONTENT_LENGTH")
    try:
        length = int(raw) if raw else None
    except ValueError:
        length = None
    if length is None or length < 0:
        status, answer = 411, {"error": "a Content-Length header is required"}
    elif length > limit:
        _drain(environ["wsgi.input"], length)
        status, answer = (
            413,
            {"error": f"body larger than {limit} bytes (exporter.ingest.max_body_bytes)"},
        )
    else:
        status, answer = ingestor.handle(environ["wsgi.input"].read(length))
    if status in (411, 413):
        ingestor.refused(status)
    body = json.dumps(answer).encode()
    return _respond(start, f"{status} {_REASONS[status]}", body, "application/json")


class CachedExposition:
    """The text exposition and its gzip, joined once per change.

    Two kinds of parts (:mod:`exporter.monitor.exposition`): the registry's families,
    rendered here (build, job health, model, the push endpoint's counters, and in
    process the jobs' snapshots), and the `Fragment` each job published from the
    monitoring worker, rendered and deflated there. Formatting some 2,000 samples costs
    about 10 ms of Python, so every scrape between two changes gets the same bytes
    (plain or gzip), and a scrape costs well under a millisecond. The cache is keyed on
    the store's generation, the model and `changes` (the push endpoint's counters).

    In continuous mode the server's update receiver (:mod:`exporter.monitor.worker`)
    calls :meth:`refresh` once per batch of store updates, so a scrape finds both
    encodings ready; a scrape renders only when the key moved without a refresh (a push
    counted, or the jobs run in-process). A render runs outside the lock scrapes read
    under, and one at a time; `renders` counts them.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        store: SnapshotStore,
        model: Callable[[], Any],
        changes: Callable[[], Any] = lambda: None,
    ) -> None:
        self.registry = registry
        self.store = store
        self.model = model
        #: Anything else the exposition depends on (the push endpoint's counters).
        self.changes = changes
        self._render_lock = threading.Lock()
        #: (key, plain, gzip): replaced whole, so a reader never sees a mixture.
        self._cached: tuple[tuple[Any, ...], bytes, bytes] | None = None
        #: Renders since start (a scrape answered from the cache adds none).
        self.renders = 0

    def _key(self) -> tuple[Any, ...]:
        return (self.store.generation, self.model(), self.changes())

    def _rebuild(self, key: tuple[Any, ...]) -> tuple[tuple[Any, ...], bytes, bytes]:
        with self._render_lock:
            cached = self._cached
            if cached is not None and cached[0] == key:
                return cached  # rendered by another thread meanwhile
            fragments = [
                snapshot
                for _, snapshot in sorted(self.store.snapshots().items())
                if isinstance(snapshot, Fragment)
            ]
            plain, gzipped = compose([Fragment.render(self.registry.collect()), *fragments])
            cached = (key, plain, gzipped)
            self._cached = cached
            self.renders += 1
            return cached

    def refresh(self) -> None:
        """Render now if the store, the model or the counters changed since the last."""
        key = self._key()
        cached = self._cached
        if cached is None or cached[0] != key:
            self._rebuild(key)

    def render(self, gzipped: bool) -> bytes:
        key = self._key()
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = self._rebuild(key)
        return cached[2] if gzipped else cached[1]

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> list[bytes]:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        if "name[]" in query:
            body = restrict(self.render(False), query["name[]"])
            return _respond(start, "200 OK", body, CONTENT_TYPE_LATEST)
        gzipped = "gzip" in environ.get("HTTP_ACCEPT_ENCODING", "")
        body = self.render(gzipped)
        headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
        if gzipped:
            headers.append(("Content-Encoding", "gzip"))
        start("200 OK", headers)
        return [body]


class ExporterApp:
    """The exporter's WSGI app (`make_app`), with the cached exposition it serves."""

    def __init__(self, handler: WSGIApp, exposition: CachedExposition) -> None:
        self._handler = handler
        self.exposition = exposition

    def __call__(self, environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        return self._handler(environ, start)


def make_app(
    registry: CollectorRegistry,
    store: SnapshotStore,
    receiver: AlertReceiver | None = None,
    model: Callable[[], Any] = lambda: None,
    ingest: Ingestor | None = None,
) -> ExporterApp:
    """The WSGI app serving the exporter's endpoints (and the alert webhook and the push
    endpoint if given; the push endpoint's counters are registered in `registry`).

    `/metrics` serves the cached text exposition; ``name[]`` queries filter it.
    """
    if ingest is not None:
        registry.register(ingest)

    def changes() -> Any:
        return ingest.generation if ingest is not None else None

    exposition = CachedExposition(registry, store, model, changes)

    def landing(start: StartResponse) -> list[bytes]:
        rows = "".join(
            f"<tr><td>{html.escape(h.job)}</td><td>{h.success}</td><td>{h.runs}</td>"
            f"<td>{h.failures}</td><td>{html.escape(h.last_error or '')}</td></tr>"
            for h in store.health().values()
        )
        page = (
            "<!doctype html><html><head><title>churn-monitor exporter</title></head><body>"
            f"<h1>churn-monitor exporter {__version__}</h1>"
            '<p><a href="/metrics">Metrics</a> · <a href="/healthz">Health</a> · '
            '<a href="/ready">Ready</a></p>'
            "<table><tr><th>job</th><th>last run ok</th><th>runs</th><th>failures</th>"
            f"<th>last error</th></tr>{rows}</table></body></html>"
        )
        return _respond(start, "200 OK", page.encode(), "text/html; charset=utf-8")

    def app(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return exposition(environ, start)
        if path == "/healthz":
            return _respond(start, "200 OK", b"ok\n", "text/plain; charset=utf-8")
        if path == "/ready":
            ready = store.ready()
            body = json.dumps(
                {
                    "ready": ready,
                    "jobs": {job: h.runs > 0 for job, h in store.health().items()},
                }
            ).encode()
            status = "200 OK" if ready else "503 Service Unavailable"
            return _respond(start, status, body, "application/json")
        if path == "/":
            return landing(start)
        if path == "/alerts/webhook" and receiver is not None:
            return _webhook(environ, start, receiver)
        if path == "/ingest" and ingest is not None:
            return _ingest(environ, start, ingest)
        return _respond(start, "404 Not Found", b"not found\n", "text/plain; charset=utf-8")

    return ExporterApp(app, exposition)
