"""The exporter's HTTP server: /metrics, /healthz, /ready, a landing page, and when
configured the alert webhook and the push endpoint (``POST /ingest``).

A plain WSGI app on prometheus_client's threading server: each request gets a thread,
and /metrics serves the exposition cached since the store last changed
(`CachedExposition`, plain and gzip), so a scrape never waits for a job. In continuous
mode the jobs run in a worker process (:mod:`exporter.monitor.worker`), not here.
"""

from __future__ import annotations

import gzip
import html
import json
import logging
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from exporter import __version__
from exporter.loop.receiver import MAX_BODY_BYTES, AlertReceiver
from exporter.monitor.ingest import Ingestor
from exporter.monitor.store import SnapshotStore

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood the log; access logging stays off."""


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
    """The text exposition of the registry and its gzip, rendered once per change.

    Formatting some 2,000 samples costs about 10 ms of Python; the snapshots only
    change when a job finishes, so every scrape in between gets the same bytes (plain
    or gzip), and a scrape costs well under a millisecond. The rendering is keyed on
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
            plain = generate_latest(self.registry)
            cached = (key, plain, gzip.compress(plain))
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

    `/metrics` serves the cached text exposition; a query (``name[]`` filters) goes
    through prometheus_client's own app.
    """
    metrics_app = make_wsgi_app(registry)
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
            if environ.get("QUERY_STRING"):
                return metrics_app(environ, start)
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


class _Server(ThreadingWSGIServer):
    """prometheus_client's threading server, with TLS set up in each request's thread
    and a listen backlog for many concurrent scrapers.

    Wrapping the listening socket instead would run every handshake in the accept loop,
    where one slow client would hold up all others.
    """

    ssl_context: ssl.SSLContext | None = None
    #: The listen backlog: socketserver's default of 5 drops the connections of more
    #: concurrent scrapers than that, which then wait a SYN retransmission (1 s, 3 s).
    request_queue_size = 128

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.ssl_context is not None:
            request.settimeout(10)
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (OSError, ssl.SSLError) as err:
                log.debug("TLS handshake with %s failed: %s", client_address, err)
                return
        super().finish_request(request, client_address)


class ExporterServer:
    """The HTTP server in a background thread; `port` is the bound port (0 picks one)."""

    def __init__(
        self, app: WSGIApp, host: str, port: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self.httpd = make_server(host, port, app, server_class=_Server, handler_class=_QuietHandler)
        self.httpd.ssl_context = ssl_context
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, name="exporter-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
