"""The digest email: a period report sent with :mod:`smtplib` through Alertmanager's SMTP
settings.

The relay, sender, login and password file are read from the ``global`` section of an
Alertmanager config (``smtp_smarthost``, ``smtp_from``, ``smtp_hello``,
``smtp_auth_username``, ``smtp_auth_password`` or ``smtp_auth_password_file``,
``smtp_require_tls``), with Alertmanager's meaning: port 465 is TLS from the first byte;
otherwise STARTTLS when ``smtp_require_tls`` is true (the default), plain if false; a
login only with a username; the password file used byte for byte, a relative path
resolved against the config's folder. One place configures the email of both.

The message has a plain-text part (a few lines), the report as its HTML part, and the
same report attached as a ``.html`` file to keep or forward.
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

import yaml

#: Seconds smtplib waits on the relay (connect and each reply).
SMTP_TIMEOUT = 30.0
#: Alertmanager's port of implicit TLS.
SMTPS_PORT = 465


class DigestError(RuntimeError):
    """The digest could not be built or sent; the message names the setting or the relay."""


@dataclass(frozen=True)
class SmtpSettings:
    """Alertmanager's global SMTP settings (see the module notes)."""

    host: str
    port: int
    sender: str
    hello: str = "localhost"
    username: str | None = None
    password: str | None = None
    require_tls: bool = True
    #: Where they were read from (for messages).
    source: str = ""


def smtp_settings(path: str | Path) -> SmtpSettings:
    """The SMTP settings of the Alertmanager config at `path`; DigestError naming the
    file and the key when one is missing or unreadable."""
    config_path = Path(path)
    try:
        raw = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    except OSError as err:
        raise DigestError(f"{config_path}: cannot read: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise DigestError(f"{config_path}: not valid YAML: {err}") from None
    section = raw.get("global") if isinstance(raw, dict) else None
    glob: dict[str, Any] = section if isinstance(section, dict) else {}

    def required(key: str) -> str:
        value = glob.get(key)
        if not isinstance(value, str) or not value:
            raise DigestError(f"{config_path}: global.{key} is not set")
        return value

    host, _, port = required("smtp_smarthost").rpartition(":")
    if not host or not port.isdigit():
        raise DigestError(f"{config_path}: global.smtp_smarthost: expected host:port")
    password = glob.get("smtp_auth_password")
    password_file = glob.get("smtp_auth_password_file")
    if password_file:
        secret = Path(password_file)
        secret = secret if secret.is_absolute() else config_path.parent / secret
        try:
            password = secret.read_bytes().decode()
        except OSError as err:
            raise DigestError(
                f"{config_path}: global.smtp_auth_password_file: cannot read {secret}: "
                f"{err.strerror or err}"
            ) from None
    return SmtpSettings(
        host=host.strip("[]"),
        port=int(port),
        sender=required("smtp_from"),
        hello=glob.get("smtp_hello") or "localhost",
        username=glob.get("smtp_auth_username") or None,
        password=password,
        require_tls=glob.get("smtp_require_tls", True) is not False,
        source=str(config_path),
    )


def digest_message(
    settings: SmtpSettings,
    to: tuple[str, ...],
    subject: str,
    summary: str,
    html: str,
    filename: str,
) -> EmailMessage:
    """The digest: `summary` as plain text, `html` as the HTML body and attached as
    `filename`."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=settings.sender.rpartition("@")[2] or None)
    message.set_content(f"{summary}\n\nThe full report is attached ({filename}).\n")
    message.add_alternative(html, subtype="html")
    # As bytes (base64): the file a recipient saves is the report byte for byte.
    message.add_attachment(
        html.encode(),
        maintype="text",
        subtype="html",
        filename=filename,
        params={"charset": "utf-8"},
    )
    return message


def send(settings: SmtpSettings, message: EmailMessage) -> None:
    """Send `message` through the relay; DigestError naming the relay on failure."""
    where = f"SMTP {settings.host}:{settings.port} (from {settings.source})"
    try:
        if settings.port == SMTPS_PORT:
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                settings.host,
                settings.port,
                local_hostname=settings.hello,
                timeout=SMTP_TIMEOUT,
                context=ssl.create_default_context(),
            )
        else:
            client = smtplib.SMTP(
                settings.host, settings.port, local_hostname=settings.hello, timeout=SMTP_TIMEOUT
            )
        with client:
            if settings.port != SMTPS_PORT and settings.require_tls:
                client.ehlo()
                if not client.has_extn("starttls"):
                    raise DigestError(
                        f"{where}: the relay does not offer STARTTLS and smtp_require_tls is true"
                    )
                client.starttls(context=ssl.create_default_context())
                client.ehlo()
            if settings.username:
                client.login(settings.username, settings.password or "")
            client.send_message(message)
    except (OSError, smtplib.SMTPException) as err:
        raise DigestError(f"{where}: {err}") from err
