"""The exporter's HTTP/1.1 server: one asyncio event loop in a background thread.

Why not a thread per connection
    prometheus_client's threading WSGI server starts a thread per connection. When 20
    scrapers arrive at once, the accepting thread competes for the interpreter with the
    handler threads it started, each holding it up to the 5 ms switch interval: the
    last scrape of a burst waited 30 to 100 ms for a cached answer (issue 19). Here one
    event loop accepts, parses (h11) and answers; connections stay open between scrapes
    (HTTP/1.1 keep-alive, as Prometheus keeps them), and answers leave in one write
    with Nagle's algorithm off.

Which requests run where
    The app is WSGI (:mod:`exporter.monitor.server`). A request without a body (GET,
    HEAD: /metrics from the cache, /healthz, /ready, the landing page) is answered by
    calling the app on the loop: each of those only reads memory. A request with a
    body (the alert webhook, the push endpoint: database writes) runs the app in a
    small thread pool, and so does a request whose credentials would need bcrypt
    (`WebConfig.remembered` is False); the app reads the body as it arrives
    (``wsgi.input`` reads from the connection on the loop). An answer given before the
    whole body was read (413) closes the connection afterwards.
"""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote

import h11

from exporter.web.webconfig import OPEN_PATHS, WebConfig

log = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

#: The listen backlog: more concurrent scrapers than the default 5 otherwise wait for a
#: SYN retransmission (1 s, 3 s).
BACKLOG = 128
#: Largest request head (request line and headers), bytes.
MAX_HEAD_BYTES = 64 * 1024
#: Threads running requests with a body or a bcrypt check.
POOL_THREADS = 8
#: A connection that sends nothing for this long is closed, seconds (Prometheus scrapes
#: every 15 to 60 s on the same connection).
IDLE_SECONDS = 300.0
TLS_HANDSHAKE_SECONDS = 10.0
#: How long `stop` waits for the open connections' handlers to end, seconds.
STOP_SECONDS = 5.0
_CHUNK = 65536


class _Closed(Exception):
    """The client closed the connection, or sent something h11 refuses."""


class _Connection:
    """One client connection's reading side: h11's state and the request body read."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._body = bytearray()
        self._body_done = False

    async def event(self) -> Any:
        """The next h11 event, reading from the socket as needed."""
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as err:
                raise _Closed(str(err)) from None
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await asyncio.wait_for(self.reader.read(_CHUNK), IDLE_SECONDS)
            except (TimeoutError, ConnectionError, ssl.SSLError) as err:
                raise _Closed(str(err)) from None
            self.h11.receive_data(data)  # b"" marks the end of the stream

    async def read_body(self, size: int) -> bytes:
        """Up to `size` bytes of the request body (all of it with -1); b"" at its end."""
        while not self._body_done and (size < 0 or len(self._body) < size):
            event = await self.event()
            if isinstance(event, h11.Data):
                self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._body_done = True
            else:
                raise _Closed(f"unexpected {type(event).__name__} in a request body")
        cut = len(self._body) if size < 0 else min(size, len(self._body))
        chunk = bytes(self._body[:cut])
        del self._body[:cut]
        return chunk

    def settle(self) -> bool:
        """Consume the rest of the request body already received (an app that answered
        without reading it); whether the request is now complete."""
        while not self._body_done:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                return False
            if event is h11.NEED_DATA:
                return False
            if isinstance(event, h11.EndOfMessage):
                self._body_done = True
            elif not isinstance(event, h11.Data):
                return False
        return True

    def next_request(self) -> None:
        self._body.clear()
        self._body_done = False
        self.h11.start_next_cycle()


class _BodyStream(io.RawIOBase):
    """``wsgi.input`` for a request run in the pool: reads the body on the loop."""

    def __init__(self, conn: _Connection, loop: asyncio.AbstractEventLoop) -> None:
        self._conn, self._loop = conn, loop

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        future = asyncio.run_coroutine_threadsafe(
            self._conn.read_body(-1 if size is None else size), self._loop
        )
        return future.result()

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


def _environ(
    request: h11.Request, body: Any, server: tuple[str, int], scheme: str
) -> dict[str, Any]:
    path, _, query = request.target.decode("latin-1").partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method.decode("ascii"),
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote(path, encoding="latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{request.http_version.decode('ascii')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.input": body,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in request.headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        if key in ("CONTENT_LENGTH", "CONTENT_TYPE"):
            environ[key] = text
        else:
            key = f"HTTP_{key}"
            environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def _call(app: WSGIApp, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run the WSGI app: (status code, headers, body); an exception is a 500."""
    answer: dict[str, Any] = {}

    def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"], answer["headers"] = int(status.split(" ", 1)[0]), headers

    try:
        chunks = app(environ, start)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
    except Exception:
        log.exception("%s %s failed", environ["REQUEST_METHOD"], environ["PATH_INFO"])
        text = b"internal error\n"
        return 500, [("Content-Type", "text/plain"), ("Content-Length", str(len(text)))], text
    return answer["status"], answer["headers"], body


class ExporterServer:
    """Serves a WSGI app on `host`:`port` (0 picks a free port: `port` is the bound one),
    with TLS when `ssl_context` is given; `web` tells which credentials are known."""

    def __init__(
        self,
        app: WSGIApp,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        web: WebConfig | None = None,
    ) -> None:
        self.app = app
        self.web = web or WebConfig()
        self.ssl_context = ssl_context
        self._sock = socket.create_server((host, port), backlog=BACKLOG)
        self.host = host
        self.port = self._sock.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(POOL_THREADS, thread_name_prefix="exporter-request")
        self._stop: asyncio.Event | None = None
        #: Open connections and their handlers (the loop's thread only).
        self._open: dict[asyncio.StreamWriter, asyncio.Task[None]] = {}
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="exporter-http", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._sock.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        server = await asyncio.start_server(
            self._client,
            sock=self._sock,
            ssl=self.ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_SECONDS if self.ssl_context else None,
        )
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
        # connections kept alive between scrapes: closed with the server, their
        # handlers then end on the end of stream
        for writer in list(self._open):
            writer.close()
        if self._open:
            await asyncio.wait(list(self._open.values()), timeout=STOP_SECONDS)

    def _inline(self, request: h11.Request, environ: dict[str, Any]) -> bool:
        """Whether the app may run on the loop: a GET or HEAD without a body, and no
        bcrypt to run for its credentials."""
        if request.method not in (b"GET", b"HEAD"):
            return False
        if "CONTENT_LENGTH" in environ or "HTTP_TRANSFER_ENCODING" in environ:
            return False
        return environ["PATH_INFO"] in OPEN_PATHS or self.web.remembered(
            environ.get("HTTP_AUTHORIZATION")
        )

    async def _answer(self, conn: _Connection, request: h11.Request) -> bytes:
        """The app's answer to `request`, as bytes to send."""
        scheme = "https" if self.ssl_context else "http"
        where = (self.host, self.port)
        environ = _environ(request, io.BytesIO(), where, scheme)
        if self._inline(request, environ):
            status, headers, body = _call(self.app, environ)
        else:
            environ["wsgi.input"] = _BodyStream(conn, self._loop)
            status, headers, body = await self._loop.run_in_executor(
                self._pool, _call, self.app, environ
            )
        if not conn.settle():
            headers = [*headers, ("Connection", "close")]  # a body left unread
        out = conn.h11.send(h11.Response(status_code=status, headers=headers))
        if request.method != b"HEAD":
            out += conn.h11.send(h11.Data(data=body))
        return out + conn.h11.send(h11.EndOfMessage())

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: its requests in turn, until either side closes it."""
        conn = _Connection(reader)
        self._open[writer] = asyncio.current_task()  # type: ignore[assignment]
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                request = await conn.event()
                if not isinstance(request, h11.Request):
                    return  # ConnectionClosed: the client is done
                writer.write(await self._answer(conn, request))
                await writer.drain()
                if conn.h11.our_state is not h11.DONE or conn.h11.their_state is not h11.DONE:
                    return
                conn.next_request()
        except _Closed:
            if conn.h11.their_state is h11.ERROR and conn.h11.our_state in (
                h11.IDLE,
                h11.SEND_RESPONSE,
            ):
                writer.write(_bad_request(conn))
        except (ConnectionError, ssl.SSLError) as err:
            log.debug("connection ended: %s", err)
        finally:
            del self._open[writer]
            writer.close()


def _bad_request(conn: _Connection) -> bytes:
    """A 400 for a request h11 could not parse."""
    text = b"bad request\n"
    head = [("Content-Length", str(len(text))), ("Connection", "close")]
    return (
        conn.h11.send(h11.Response(status_code=400, headers=head))
        + conn.h11.send(h11.Data(data=text))
        + conn.h11.send(h11.EndOfMessage())
    )
