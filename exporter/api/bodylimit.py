"""Refuse request bodies larger than ``api.max_body_bytes`` with 413, before parsing.

A declared Content-Length over the limit is refused without reading the body; a body
without one (chunked) is read up to the limit and replayed to the app, or refused as
soon as it passes the limit.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exporter.api.asgi import send_json


async def _refuse(send: Send, limit: int) -> None:
    body = json.dumps(
        {
            "detail": f"request body too large: the limit is {limit} bytes (api.max_body_bytes)",
        }
    ).encode()
    await send_json(send, 413, body, (b"connection", b"close"))


class BodySizeLimitMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None
                break
        if length is not None:
            if length > self.limit:
                await _refuse(send, self.limit)
                return
            await self.app(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        # No declared length: buffer the (chunked) body up to the limit, then replay it.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.limit:
                await _refuse(send, self.limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            return await receive()

        await self.app(scope, replay, send)
