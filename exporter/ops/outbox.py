"""The local outbox: where `churn-monitor up` delivers email and Slack notifications.

On a machine with no mail relay and no Slack workspace, Alertmanager's notifications
would go nowhere. `churn-monitor sinks` runs two small real servers instead, and
`churn-monitor up` points the Alertmanager config it renders at them:

* an SMTP server (aiosmtpd) that stores every message it accepts as
  ``<outbox>/email/<id>.eml``, the message exactly as Alertmanager sent it;
* a Slack-compatible incoming webhook (any ``POST`` path) that stores every JSON body
  as ``<outbox>/slack/<id>.json`` and answers ``200 ok`` like Slack.

``<id>`` is the UTC arrival time and a sequence number (``20261201T035212.123456Z-0001``),
so names sort in arrival order. Files are written atomically. `churn-monitor outbox`
lists them, one line per message, and shows one in full.

The reading side (:class:`Outbox`, :func:`message_text`) is pure file access; the
servers live in :class:`Sinks`.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from exporter.data.atomic import write_bytes_atomically

log = logging.getLogger(__name__)

Channel = Literal["email", "slack"]
CHANNELS: tuple[Channel, ...] = ("email", "slack")
_SUFFIX: dict[Channel, str] = {"email": ".eml", "slack": ".json"}
#: Where the HTTP side answers 200 while the sinks run (`up` polls it).
HEALTH_PATH = "/-/healthy"
#: The path `up` gives Alertmanager as the Slack incoming-webhook URL.
SLACK_PATH = "/slack"


@dataclass(frozen=True)
class Message:
    """One stored notification."""

    channel: Channel
    id: str
    path: Path
    received: datetime
    #: Email subject, or the title of the Slack post's first attachment (else its text).
    title: str


class Outbox:
    """The folder of stored messages: ``email/*.eml`` and ``slack/*.json``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._sequence = itertools.count(1)
        self._lock = threading.Lock()

    def folder(self, channel: Channel) -> Path:
        return self.root / channel

    def store(self, channel: Channel, data: bytes, now: datetime | None = None) -> Path:
        """Write one message atomically; return its path."""
        moment = now or datetime.now(UTC)
        with self._lock:
            number = next(self._sequence)
        name = f"{moment.strftime('%Y%m%dT%H%M%S.%fZ')}-{number:04d}{_SUFFIX[channel]}"
        return write_bytes_atomically(self.folder(channel) / name, data)

    def messages(self, channel: Channel | None = None) -> list[Message]:
        """Every stored message (of one channel, or both), oldest first."""
        found: list[Message] = []
        for kind in CHANNELS if channel is None else (channel,):
            folder = self.folder(kind)
            if not folder.is_dir():
                continue
            for path in folder.glob(f"*{_SUFFIX[kind]}"):
                found.append(_message(kind, path))
        return sorted(found, key=lambda m: (m.received, m.id))

    def find(self, key: str) -> Message:
        """A message by its position in :meth:`messages` (1-based) or by (a prefix of)
        its id; raise LookupError naming what was asked for."""
        messages = self.messages()
        if key.isdigit() and 1 <= int(key) <= len(messages):
            return messages[int(key) - 1]
        matches = [m for m in messages if m.id.startswith(key)]
        if len(matches) != 1:
            what = "no message matches" if not matches else f"{len(matches)} messages match"
            raise LookupError(f"{what} {key!r} in {self.root}")
        return matches[0]


def _received(stem: str) -> datetime:
    stamp = stem.split("-", 1)[0]
    try:
        return datetime.strptime(stamp, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _message(channel: Channel, path: Path) -> Message:
    if channel == "email":
        title = str(_parse_email(path.read_bytes()).get("Subject", "(no subject)"))
    else:
        title = _slack_title(_parse_json(path.read_bytes()))
    return Message(channel, path.stem, path, _received(path.stem), " ".join(title.split()))


def _parse_email(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return {}


def _slack_title(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "(not a JSON object)"
    for attachment in payload.get("attachments") or []:
        if isinstance(attachment, dict) and attachment.get("title"):
            return str(attachment["title"])
    return str(payload.get("text") or "(no title)")


def message_text(message: Message) -> str:
    """The whole message as a person reads it.

    Email: the From, To, Date and Subject headers, then the plain-text part (the HTML
    part when there is none). Slack: channel and user, then each attachment's title,
    link and text, as the Slack client would show them.
    """
    data = message.path.read_bytes()
    if message.channel == "email":
        mail = _parse_email(data)
        names = ("From", "To", "Date", "Subject")
        headers = [f"{name}: {mail[name]}" for name in names if mail[name]]
        body = mail.get_body(preferencelist=("plain", "html"))
        content = body.get_content() if body is not None else ""
        return "\n".join(headers) + "\n\n" + str(content).rstrip() + "\n"
    payload = _parse_json(data)
    if not isinstance(payload, dict):
        return data.decode(errors="replace")
    lines = [f"Channel: {payload.get('channel', '-')}", f"User: {payload.get('username', '-')}"]
    if payload.get("text"):
        lines += ["", str(payload["text"])]
    for attachment in payload.get("attachments") or []:
        lines += ["", f"[{attachment.get('color', '')}] {attachment.get('title', '')}"]
        if attachment.get("title_link"):
            lines.append(str(attachment["title_link"]))
        lines.append(str(attachment.get("text", "")).rstrip())
    return "\n".join(lines) + "\n"


def format_list(messages: list[Message]) -> str:
    """One line per message: position, arrival time (UTC), channel, title."""
    if not messages:
        return "the outbox is empty"
    width = len(str(len(messages)))
    return "\n".join(
        f"{i:>{width}}  {m.received.strftime('%Y-%m-%d %H:%M:%S')}  {m.channel:<5}  {m.title}"
        for i, m in enumerate(messages, start=1)
    )


# --------------------------------------------------------------------------- servers


class _SmtpHandler:
    """aiosmtpd handler: store each message's bytes as they arrived."""

    def __init__(self, store: Callable[[Channel, bytes], Path]) -> None:
        self._store = store

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        path = self._store("email", data)
        log.info("email from %s to %s stored as %s", envelope.mail_from, envelope.rcpt_tos, path)
        return "250 Message accepted for delivery"


def _http_handler(store: Callable[[Channel, bytes], Path]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, text: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path == HEALTH_PATH:
                self._answer(200, "ok")
            else:
                self._answer(404, f"POST Slack messages here; GET {HEALTH_PATH} for health")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            if not isinstance(_parse_json(data), dict) or not data.strip():
                self._answer(400, "invalid_payload")
                return
            path = store("slack", data)
            log.info("Slack post to %s stored as %s", self.path, path)
            self._answer(200, "ok")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("sinks http: " + format, *args)

    return Handler


class Sinks:
    """The SMTP server and the Slack webhook, each on its own thread, storing into an
    :class:`Outbox`."""

    def __init__(self, outbox: Outbox, host: str, smtp_port: int, http_port: int) -> None:
        from aiosmtpd.controller import Controller

        self.outbox = outbox
        self.host = host
        self.smtp_port = smtp_port
        self.http_port = http_port
        self._http = ThreadingHTTPServer((host, http_port), _http_handler(outbox.store))
        self._http.daemon_threads = True
        self._smtp = Controller(_SmtpHandler(outbox.store), hostname=host, port=smtp_port)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def start(self) -> Sinks:
        for channel in CHANNELS:
            self.outbox.folder(channel).mkdir(parents=True, exist_ok=True)
        self._smtp.start()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._smtp.stop()
