"""Basic auth on the API from ``api.web_config_file`` (docs/security.md).

Pure ASGI middleware: a request without a configured user's credentials gets 401 with
``WWW-Authenticate: Basic`` and a JSON body, before its body is read; the paths in
``webconfig.OPEN_PATHS`` (``/health``) stay open for liveness probes. A password is
checked against its bcrypt hash in a worker thread (a check costs a few hundred
milliseconds by design, and the event loop keeps serving meanwhile); a correct one is
then remembered, so later requests with it cost a hash lookup.
"""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from exporter.api.asgi import send_json
from exporter.web.webconfig import OPEN_PATHS, WebConfig

_BODY = json.dumps(
    {"detail": "authentication required: send a configured user's password (HTTP basic auth)"}
).encode()


class BasicAuthMiddleware:
    def __init__(self, app: ASGIApp, web: WebConfig) -> None:
        self.app = app
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        if self.web.remembered(header) or await run_in_threadpool(self.web.authorized, header):
            await self.app(scope, receive, send)
            return
        await send_json(send, 401, _BODY, (b"www-authenticate", b'Basic realm="churn-monitor"'))
