"""What the pure ASGI middlewares share: answering a request themselves."""

from __future__ import annotations

from starlette.types import Send


async def send_json(send: Send, status: int, body: bytes, *headers: tuple[bytes, bytes]) -> None:
    """Answer with `status` and the JSON `body` (content type and length set), plus
    `headers`, without passing the request on to the app."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
