"""The exporter's event-loop HTTP server (exporter/monitor/httpserver.py) with a small
WSGI app: keep-alive, HEAD, request bodies read in the pool, an early answer that
leaves the body unread, a request h11 cannot parse, and an app that raises."""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from exporter.monitor.httpserver import ExporterServer


def app(environ: dict[str, Any], start: Any) -> list[bytes]:
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise RuntimeError("boom")
    if path == "/echo":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > 10:  # answer before reading, as the push endpoint's 413 does
            body = b"too large\n"
            start("413 Content Too Large", [("Content-Length", str(len(body)))])
            return [body]
        body = environ["wsgi.input"].read(length)
        thread = threading.current_thread().name.encode()
        body = body + b" " + thread
    else:
        body = f"{path} {environ['QUERY_STRING']} {threading.current_thread().name}".encode()
    start("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def port() -> Iterator[int]:
    server = ExporterServer(app, "127.0.0.1", 0)
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def test_requests_share_a_kept_alive_connection_and_gets_run_on_the_loop(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for query in ("a=1", "b=2"):
        conn.request("GET", f"/metrics?{query}")
        response = conn.getresponse()
        assert response.status == 200 and response.headers["Connection"] is None
        assert response.read() == f"/metrics {query} exporter-http".encode()
    first = conn.sock
    assert first is not None
    conn.request("HEAD", "/metrics")
    response = conn.getresponse()
    assert response.status == 200 and response.read() == b""
    assert int(response.headers["Content-Length"]) > 0
    conn.request("POST", "/echo", body=b"hello")
    response = conn.getresponse()
    text = response.read()
    assert text.startswith(b"hello exporter-request")  # a body: run in the pool
    assert response.headers["Connection"] is None
    assert conn.sock is first  # one connection throughout
    conn.close()


def test_an_answer_before_the_body_arrived_closes_the_connection(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10
        )
        answer = b""
        while chunk := sock.recv(65536):  # the server closes after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"\r\nconnection: close\r\n" in answer.lower()
    assert answer.endswith(b"too large\n")


def test_a_body_received_whole_keeps_the_connection(port: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("POST", "/echo", body=b"x" * 1000)
    response = conn.getresponse()
    assert response.status == 413 and response.read() == b"too large\n"
    assert response.headers["Connection"] is None  # the unread body had arrived: skipped
    conn.request("GET", "/next")
    assert conn.getresponse().read().startswith(b"/next ")


def test_garbage_gets_a_400_and_an_app_error_a_500(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 ")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/boom")
    response = conn.getresponse()
    assert response.status == 500 and response.read() == b"internal error\n"
    conn.request("GET", "/after")  # the connection survives the app's error
    assert conn.getresponse().read().startswith(b"/after ")
