"""Optional TLS and basic auth for the exporter and the API, from a web config file.

The file has the shape of Prometheus' ``--web.config.file`` (exporter-toolkit), so an
operator writes it once for every server they run:

    tls_server_config:
      cert_file: /etc/churn-monitor/tls.crt
      key_file: /etc/churn-monitor/tls.key
    basic_auth_users:
      prometheus: $2b$12$...   # bcrypt hash (htpasswd -nBC 12 "" | tr -d ':\\n')

Both sections are optional; without a file (the default) nothing changes. Passwords
are only ever compared against their bcrypt hash; a successful check is cached by a
SHA-256 of the credentials so a scrape every few seconds does not pay bcrypt's cost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from exporter.config import ConfigError

#: Paths that stay open without credentials: liveness carries no data.
OPEN_PATHS = frozenset({"/healthz", "/health"})


class _TLS(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    cert_file: str
    key_file: str


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tls_server_config: _TLS | None = None
    basic_auth_users: dict[str, str] = {}

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_only(cls, users: dict[str, str]) -> dict[str, str]:
        for user, hashed in users.items():
            if not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                raise ValueError(f"{user}: expected a bcrypt hash ($2b$...), not a password")
        return users


@dataclass
class WebConfig:
    """TLS files and bcrypt-hashed users; empty means plain HTTP without auth."""

    cert_file: str | None = None
    key_file: str | None = None
    users: Mapping[str, bytes] = field(default_factory=dict)
    _ok: set[bytes] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def ssl_context(self) -> ssl.SSLContext | None:
        """A server context for the certificate, or None without TLS."""
        if not self.tls:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(self.cert_file), str(self.key_file))
        return context

    def _credentials(self, header: str | None) -> tuple[bytes, bytes, bytes] | None:
        """(bcrypt hash, cache key, password) for a Basic header naming a known user."""
        if not header or not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        hashed = self.users.get(user)
        if hashed is None:
            return None
        key = hashlib.sha256(hashed + b"\0" + user.encode() + b"\0" + password.encode()).digest()
        return hashed, key, password.encode()

    def remembered(self, header: str | None) -> bool:
        """True without auth, or for credentials that `authorized` accepted before: a
        check that never runs bcrypt (an async server calls it on its event loop and
        `authorized` in a worker thread only when this says False)."""
        if not self.users:
            return True
        found = self._credentials(header)
        if found is None:
            return False
        with self._lock:
            return found[1] in self._ok

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries a configured user's password."""
        if not self.users:
            return True
        found = self._credentials(header)
        if found is None:
            return False
        hashed, key, password = found
        with self._lock:
            if key in self._ok:
                return True
        # bcrypt reads 72 bytes at most; bcrypt >= 5 raises on longer input instead of
        # ignoring the rest as the tools that made the hashes did.
        if not bcrypt.checkpw(password[:72], hashed):
            return False
        with self._lock:
            self._ok.add(key)
        return True


def load_web_config(path: str | Path | None, field_name: str) -> WebConfig:
    """Read and check a web config file; `field_name` (e.g. ``exporter.web_config_file``)
    starts every error message. None gives the empty config."""
    if path is None:
        return WebConfig()
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as err:
        raise ConfigError(f"{field_name}: cannot read {path}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{field_name}: {path} is not valid YAML: {err}") from None
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{field_name}: {where}: {message}") from None
    web = WebConfig(
        cert_file=parsed.tls_server_config.cert_file if parsed.tls_server_config else None,
        key_file=parsed.tls_server_config.key_file if parsed.tls_server_config else None,
        users={u: h.encode() for u, h in parsed.basic_auth_users.items()},
    )
    try:
        web.ssl_context()
    except (OSError, ssl.SSLError) as err:
        raise ConfigError(f"{field_name}: tls_server_config: {err}") from None
    return web


StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def require_auth(app: WSGIApp, web: WebConfig) -> WSGIApp:
    """Wrap a WSGI app: 401 without valid credentials, except on OPEN_PATHS."""
    if not web.users:
        return app

    def guarded(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in OPEN_PATHS or web.authorized(
            environ.get("HTTP_AUTHORIZATION")
        ):
            return app(environ, start)
        body = b"unauthorized\n"
        start(
            "401 Unauthorized",
            [
                ("WWW-Authenticate", 'Basic realm="churn-monitor"'),
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(body))),
            ],
        )
        return [body]

    return guarded
