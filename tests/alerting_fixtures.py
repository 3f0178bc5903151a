"""Real alert delivery for the end-to-end tests: sinks, Alertmanager, Prometheus.

- :class:`SmtpSink`: an aiosmtpd server on a free port (its own thread and event loop)
  that requires SMTP AUTH with the password Alertmanager reads from a secret file,
  and keeps every message it accepts, parsed.
- :class:`HttpSink`: an ``http.server`` in a thread that keeps every JSON body POSTed
  to one path (the Slack incoming webhook, whose URL is a secret; the generic
  webhook). Other paths get 404, so a wrong URL shows up as "nothing arrived".
- :class:`Alertmanager` and :class:`Prometheus`: the real binaries on free ports,
  configured by rendering the repository's own files with :mod:`exporter.ops.promconfig`
  (never a hand-kept copy); the alert rules get their ``for:`` durations capped by
  :func:`tests.promconfig_helpers.write_short_rules`.
- For the fault tests (tests/faults/): :meth:`SmtpSink.refuse_next` answers MAIL FROM
  with a transient 4xx a given number of times; Alertmanager and Prometheus can be
  prepared without starting and restarted on the same port and storage directory;
  :class:`ExporterProcess` runs the exporter on a port that a restart or SIGKILL keeps.

With `for:` capped, ChurnExporterDown fires for a moment after each Prometheus start
(`absent(up{job="churn-exporter"})` holds until the first scrape, which the scrape
manager starts a few seconds late); production's `for: 2m` rides that out. The tests
select notifications by alert group (alertname, model), so that blip is ignored.

Notifications are parsed into :class:`Notification` records (status, alertname, model,
severity, text) from the title the templates put in the email subject and the Slack
attachment title, so the tests can count notifications per alert group. Twins of one
alertname (ChurnDataDriftDetected warning and critical) share the group on the Slack
route; a test of the critical selects the notifications that list it
(``listing="critical"``): Prometheus sends each rule's alerts in a request of its own,
and a flush that falls between the two requests (the group's periodic one, or the
immediate one of an alert older than group_wait) notifies the warning alone, before
the critical arrives and inhibits it.

"Nothing more was sent" is checked by counting Alertmanager's own flushes of the group
(:func:`assert_quiet`), never by watching a wall-clock window: Alertmanager decides at
each flush whether the group needs a notification, and a flush's notifications are
delivered before the group's next flush starts.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from prometheus_client.parser import text_string_to_metric_families

from exporter.ops import promconfig

from .promconfig_helpers import write_short_rules
from .support import Process, free_port, http_get

T = TypeVar("T")

#: Alertmanager timers of the test stack. repeat_interval is far longer than any test,
#: so a second notification of an unchanged group is a bug, not a repeat. A flush's
#: notification attempts get max(group_interval, 10 s) (Alertmanager's minimum), so a
#: short group_interval does not cut retries short.
GROUP_WAIT = "1s"
GROUP_INTERVAL = "1s"
REPEAT_INTERVAL = "1h"
#: Prometheus rule evaluation interval, and the cap on every rule's `for:`.
EVAL_INTERVAL = "1s"
MAX_FOR = "2s"
#: Prometheus scrape interval and timeout (the timeout cannot exceed the interval). A
#: scrape that times out marks every series of the exporter stale: a firing alert
#: resolves and fires again (RESOLVED + FIRING). The exporter is a Python process that a
#: busy machine can hold up for more than a second, so it gets 3 s, not the 1 s of
#: evaluation.
SCRAPE_INTERVAL = "3s"
SCRAPE_TIMEOUT = "3s"
#: --rules.alert.resend-delay. Prometheus sends a newly firing or resolved alert at
#: once; the delay only spaces the re-sends of an unchanged firing alert, and
#: Alertmanager keeps an alert 4 x max(resend-delay, evaluation interval) after its
#: last send (here 120 s), so a Prometheus stalled on a busy machine cannot let it
#: expire mid-test. A test that needs re-sends (Alertmanager down) passes a shorter one.
RESEND_DELAY = "30s"
#: Deadline for Prometheus, Alertmanager and the exporter to get ready.
STARTUP = 180.0
#: Flushes of a group that :func:`assert_quiet` lets pass with nothing new sent.
QUIET_FLUSHES = 3
#: Deadline for those flushes (QUIET_FLUSHES group_intervals when the machine is idle).
QUIET_DEADLINE = 120.0

SMTP_USER = "churn-monitor@example.com"
EMAIL_TO = "ml-oncall@example.com"  # alertmanager/alertmanager.yml, receiver churn-email

# "[FIRING:1] ChurnDataDriftDetected churn-model (critical)" (templates/churn.tmpl,
# "churn.title"): the model and the severity are absent when the group has none in common.
_TITLE = re.compile(
    r"^\[(?P<status>FIRING|RESOLVED)(?::(?P<count>\d+))?\] (?P<alertname>\S+)"
    r"(?: (?P<model>[^\s()]+))?(?: \((?P<severity>\w+)\))?$"
)


@dataclass(frozen=True)
class Notification:
    """One notification, as the receiver saw it."""

    channel: str  # "email" or "slack"
    status: str  # "firing" or "resolved"
    alertname: str
    model: str | None
    severity: str | None
    title: str
    text: str  # email: the plain-text part; Slack: the attachment text
    received: float  # time.monotonic() at arrival
    raw: Any = field(repr=False, default=None)

    def lists(self, severity: str) -> bool:
        """Whether an alert of `severity` is among those the notification lists (the
        templates give each alert a "Severity:" line)."""
        line = rf"^(?:Severity:\s+{severity}$|Type: `[^`]*` \| Severity: `{severity}`)"
        return re.search(line, self.text, re.M) is not None

    @classmethod
    def parse(cls, channel: str, title: str, text: str, received: float, raw: Any) -> Notification:
        match = _TITLE.match(title.strip())
        if match is None:
            raise AssertionError(f"{channel} notification with an unexpected title: {title!r}")
        return cls(
            channel=channel,
            status=match["status"].lower(),
            alertname=match["alertname"],
            model=match["model"],
            severity=match["severity"],
            title=title.strip(),
            text=text,
            received=received,
            raw=raw,
        )


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Email:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None  # the SMTP AUTH user the client authenticated as
    subject: str
    text: str
    html: str
    received: float


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that requires AUTH PLAIN and keeps mail."""

    def __init__(self, password: str) -> None:
        self.password = password
        self.port = free_port()
        self._lock = threading.Lock()
        self._emails: list[Email] = []
        self.rejected_logins: list[str] = []  # "user:password" of each failed AUTH
        self.unauthenticated = 0  # messages refused because the client did not log in
        self._refuse_left = 0  # commands still to refuse (see refuse_next)
        self._refuse_reply = ""
        self._refuse_at = "MAIL"
        self.refusals: list[float] = []  # time.monotonic() of each refusal
        self._controller = Controller(
            self,
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            # 127.0.0.1 only: Go's net/smtp sends PLAIN unencrypted to localhost alone.
            auth_require_tls=False,
            # aiosmtpd's LOGIN challenges ("User Name\0") are not the "Username:" that
            # Alertmanager (and most servers) use; PLAIN is what it picks without LOGIN.
            auth_exclude_mechanism=["LOGIN"],
            ready_timeout=30.0,
        )

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SmtpSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def refuse_next(
        self, count: int, reply: str = "451 4.3.0 Try again later", *, at: str = "MAIL"
    ) -> None:
        """Answer the next `count` MAIL FROM commands (``at="MAIL"``) or message ends
        (``at="DATA"``, the reply to the final ".") with `reply`, a transient 4xx, then
        accept again. Alertmanager 0.25 retries a refused MAIL FROM but takes any reply
        to the end of DATA for a success."""
        if at not in ("MAIL", "DATA"):
            raise ValueError(f"at must be MAIL or DATA, got {at!r}")
        with self._lock:
            self._refuse_left, self._refuse_reply, self._refuse_at = count, reply, at

    def _refuse(self, at: str) -> str | None:
        with self._lock:
            if self._refuse_left > 0 and self._refuse_at == at:
                self._refuse_left -= 1
                self.refusals.append(time.monotonic())
                return self._refuse_reply
        return None

    async def handle_MAIL(self, server, session, envelope, address, mail_options) -> str:
        refused = self._refuse("MAIL")
        if refused is not None:
            return refused
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            if login == SMTP_USER and auth_data.password.decode() == self.password:
                return AuthResult(success=True, auth_data=auth_data)
            with self._lock:
                self.rejected_logins.append(f"{login}:{auth_data.password!r}")
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, server, session, envelope) -> str:
        # AUTH is enforced here rather than with aiosmtpd's auth_required, which warns
        # on every connection without TLS.
        if not session.authenticated:
            with self._lock:
                self.unauthenticated += 1
            return "530 5.7.0 Authentication required"
        refused = self._refuse("DATA")
        if refused is not None:
            return refused
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
        auth = session.auth_data
        record = Email(
            mail_from=envelope.mail_from,
            rcpt_tos=tuple(envelope.rcpt_tos),
            login=auth.login.decode() if isinstance(auth, LoginPassword) else None,
            subject=str(message["Subject"] or ""),
            # SMTP bodies travel with CRLF line ends
            text=text.get_content().replace("\r\n", "\n") if text is not None else "",
            html=html.get_content().replace("\r\n", "\n") if html is not None else "",
            received=time.monotonic(),
        )
        with self._lock:
            self._emails.append(record)
        return "250 Message accepted for delivery"

    def emails(self) -> list[Email]:
        with self._lock:
            return list(self._emails)

    def notifications(self) -> list[Notification]:
        return [
            Notification.parse("email", e.subject, e.text, e.received, e) for e in self.emails()
        ]


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class Post:
    path: str
    body: Any  # the parsed JSON
    received: float


class HttpSink:
    """An HTTP server on 127.0.0.1 keeping the JSON bodies POSTed to ``path``."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._posts: list[Post] = []
        self.misses: list[str] = []  # other paths that were POSTed to
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                data = self.rfile.read(length)
                path = urllib.parse.urlsplit(self.path).path
                if path != sink.path:
                    with sink._lock:
                        sink.misses.append(path)
                    self.send_error(404)
                    return
                try:
                    body = json.loads(data)
                except ValueError:
                    self.send_error(400)
                    return
                with sink._lock:
                    sink._posts.append(Post(path, body, time.monotonic()))
                reply = b"ok"
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"http-sink-{self.port}", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self) -> HttpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    def posts(self) -> list[Post]:
        with self._lock:
            return list(self._posts)

    def slack_notifications(self) -> list[Notification]:
        """The posts as Slack messages (one attachment each, as alertmanager.yml sends)."""
        result = []
        for post in self.posts():
            (attachment,) = post.body["attachments"]
            title, text = attachment["title"], attachment["text"]
            result.append(Notification.parse("slack", title, text, post.received, post.body))
        return result


# --------------------------------------------------------------------------- servers


def _wait_ready(process: Process, url: str, what: str) -> None:
    """Wait for ``url`` to answer 200; stop the process if it never does."""

    def ready() -> bool:
        if not process.alive():
            raise Fatal(f"exited with status {process.popen.returncode}")
        return http_get(url, timeout=2)[0] == 200

    try:
        wait_for(ready, STARTUP, what, lambda: process.output()[-3000:])
    except AssertionError:
        process.stop()
        raise


def get_json(url: str) -> Any:
    status, body = http_get(url)
    if status != 200:
        raise AssertionError(f"GET {url}: HTTP {status}: {body[:300]}")
    return json.loads(body)


def metric_total(url: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples carrying `labels`, from a process's /metrics."""
    status, body = http_get(f"{url}/metrics")
    if status != 200:
        raise AssertionError(f"GET {url}/metrics: HTTP {status}: {body[:300]}")
    return sum(
        s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


# `... aggrGroup="{}/{severity=\"critical\"}:{alertname=\"X\", model=\"m\"}" msg=flushing ...`:
# Alertmanager's debug line at the start of each flush of an aggregation group.
_FLUSHING = re.compile(r'aggrGroup="((?:[^"\\]|\\.)*)" msg=flushing ')


class Alertmanager:
    """prometheus-alertmanager with the repository's config pointed at the sinks.

    ``start=False`` only prepares it (config, port): a fault test can point Prometheus
    at an Alertmanager that is not running yet. :meth:`restart` (or :meth:`stop` then
    :meth:`start`) runs it again on the same port with the same storage directory.
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        smtp: SmtpSink,
        slack_url: str,
        webhook_url: str,
        start: bool = True,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.workdir = workdir
        secrets_dir = workdir / "secrets"
        secrets_dir.mkdir()
        password_file = secrets_dir / "smtp_password"
        # Alertmanager 0.25 sends the password file byte for byte (a final newline would
        # be part of the password); the Slack URL file is trimmed.
        password_file.write_text(smtp.password)
        slack_file = secrets_dir / "slack_webhook_url"
        slack_file.write_text(slack_url + "\n")
        config = promconfig.render_alertmanager_config(
            promconfig.load_yaml(promconfig.ALERTMANAGER_CONFIG),
            smtp_smarthost=smtp.smarthost,
            smtp_auth_username=SMTP_USER,
            smtp_auth_password_file=password_file,
            smtp_require_tls=False,
            slack_api_url_file=slack_file,
            webhook_url=webhook_url,
            templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR,
            group_wait=GROUP_WAIT,
            group_interval=GROUP_INTERVAL,
            repeat_interval=REPEAT_INTERVAL,
        )
        self.config_path = promconfig.write_config(config, workdir / "alertmanager.yml")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self._process: Process | None = None
        if start:
            self.start()

    def start(self) -> None:
        """Run the binary (again) on this port and storage path; wait until ready."""
        if self._process is not None and self._process.alive():
            raise RuntimeError("Alertmanager is already running")
        self.starts += 1
        suffix = "" if self.starts == 1 else f"-{self.starts}"
        self._process = Process(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url={self.url}",
                "--cluster.listen-address=",
                "--log.level=debug",
            ],
            self.workdir / f"alertmanager{suffix}.log",
            cwd=self.workdir,
        )
        _wait_ready(self.process, f"{self.url}/-/ready", "Alertmanager ready")

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def flushes(self, alertname: str, model: str) -> Counter[str]:
        """How often each aggregation group of (alertname, model) flushed, one per route
        that matched the group's alerts, from the running process's debug log."""
        labels = f'{{alertname="{alertname}", model="{model}"}}'
        found: Counter[str] = Counter()
        for match in _FLUSHING.finditer(self.process.output()):
            group = re.sub(r"\\(.)", r"\1", match[1])
            if group.endswith(":" + labels):
                found[group] += 1
        return found

    def notifications_total(self, integration: str) -> float:
        """alertmanager_notifications_total of one integration (email, slack, webhook):
        counted when a notification starts, before its first attempt."""
        return metric_total(self.url, "alertmanager_notifications_total", integration=integration)

    def alerts(self, **params: str | bool) -> list[dict[str, Any]]:
        """GET /api/v2/alerts; ``filter`` may be a list of matchers."""
        query = []
        for key, value in params.items():
            values = value if isinstance(value, list | tuple) else [value]
            for v in values:
                query.append((key, str(v).lower() if isinstance(v, bool) else v))
        return get_json(f"{self.url}/api/v2/alerts?{urllib.parse.urlencode(query)}")

    @property
    def process(self) -> Process:
        """The running (or last) process."""
        if self._process is None:
            raise RuntimeError("not started yet")
        return self._process

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


class Prometheus:
    """prometheus scraping one exporter, evaluating the repository's rules (short `for:`).

    ``alertmanager=None`` evaluates the rules without sending alerts anywhere.
    ``max_for``, ``resend_delay``, ``evaluation_interval`` and ``extra_args`` (more
    flags) let a fault test model other timings. :meth:`restart` (or :meth:`stop` then
    :meth:`start`) runs the binary again on the same port with the same TSDB directory,
    optionally with other flags; :meth:`reload` makes the running one read its config and
    rules again.
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        *,
        exporter: str,
        alertmanager: str | None,
        max_for: str = MAX_FOR,
        resend_delay: str = RESEND_DELAY,
        evaluation_interval: str = EVAL_INTERVAL,
        extra_args: Sequence[str] = (),
        start: bool = True,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        #: The shortened rules; rewrite them (write_short_rules) before a restart to
        #: change the `for:` cap.
        self.rules_dir = write_short_rules(workdir / "rules", max_for=max_for)
        self.binary = binary
        self.workdir = workdir
        self.resend_delay = resend_delay
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = promconfig.render_prometheus_config(
            promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG),
            exporter=exporter,
            api=None,
            alertmanager=alertmanager,
            prometheus=f"127.0.0.1:{self.port}",
            rules_dir=self.rules_dir,
            scrape_interval=SCRAPE_INTERVAL,
            evaluation_interval=evaluation_interval,
        )
        config["global"]["scrape_timeout"] = SCRAPE_TIMEOUT
        self.config_path = promconfig.write_config(config, workdir / "prometheus.yml")
        self.starts = 0
        self._process: Process | None = None
        if start:
            self.start()

    def start(self, extra_args: Sequence[str] | None = None) -> None:
        """Run the binary (again) on this port and TSDB directory; wait until ready.
        ``extra_args``, when given, replace the previous extra flags."""
        if self._process is not None and self._process.alive():
            raise RuntimeError("Prometheus is already running")
        if extra_args is not None:
            self.extra_args = list(extra_args)
        self.starts += 1
        suffix = "" if self.starts == 1 else f"-{self.starts}"
        self._process = Process(
            [
                self.binary,
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                f"--rules.alert.resend-delay={self.resend_delay}",
                *self.extra_args,
            ],
            self.workdir / f"prometheus{suffix}.log",
            cwd=self.workdir,
        )
        _wait_ready(self.process, f"{self.url}/-/ready", "Prometheus ready")

    def restart(self, extra_args: Sequence[str] | None = None) -> None:
        self.stop()
        self.start(extra_args)

    def reload(self) -> None:
        """SIGHUP: read the config and the rules again (rewrite them first); wait until
        Prometheus reports a successful reload after the signal."""

        def logs() -> str:
            return self.process.output()[-3000:]

        before = self.last_reload()
        # the timestamp has whole seconds: a reload in the second of the last one would
        # not show (this returns at once unless Prometheus has just loaded its config)
        wait_for(lambda: time.time() >= before + 1, STARTUP, "the next second", logs)
        self.process.signal(signal.SIGHUP)

        def reloaded() -> bool:
            if not self.process.alive():
                raise Fatal(f"exited with status {self.process.popen.returncode}")
            if not metric_total(self.url, "prometheus_config_last_reload_successful"):
                raise Fatal("the reload failed")
            return self.last_reload() > before

        wait_for(reloaded, STARTUP, "Prometheus to reload", logs)

    def last_reload(self) -> float:
        """prometheus_config_last_reload_success_timestamp_seconds: when the config and
        rules were last loaded successfully (whole seconds)."""
        return metric_total(self.url, "prometheus_config_last_reload_success_timestamp_seconds")

    def alerts(self) -> list[dict[str, Any]]:
        """Active (pending or firing) alerts from /api/v1/alerts."""
        return get_json(f"{self.url}/api/v1/alerts")["data"]["alerts"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
        return get_json(url)["data"]["result"]

    @property
    def process(self) -> Process:
        """The running (or last) process."""
        if self._process is None:
            raise RuntimeError("not started yet")
        return self._process

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()


class ExporterProcess:
    """`churn-monitor run --mode continuous` on a port that a restart keeps.

    Prometheus scrapes one fixed target, so a fault test can stop, kill (SIGKILL) and
    start the exporter again, even with another config, under the same target.
    ``interval`` is the jobs' schedule in minutes (``--interval``). Each start logs
    to its own file, ``<name>-<n>.log``.
    """

    def __init__(self, workdir: Path, *, name: str = "exporter", port: int | None = None) -> None:
        self.workdir = workdir
        self.name = name
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.starts = 0
        self._process: Process | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def process(self) -> Process:
        if self._process is None:
            raise RuntimeError("not started yet")
        return self._process

    def start(
        self,
        config: Path,
        current: Path,
        *,
        interval: str = "0.02",
        timeout: float = 180.0,
        env: dict[str, str] | None = None,
        wait_ready: bool = True,
    ) -> None:
        """Start it and wait until /ready answers 200 (every job ran once), unless
        ``wait_ready`` is false. ``env`` adds environment variables."""
        if self._process is not None and self._process.alive():
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        args = ["run", "--mode", "continuous", "--port", str(self.port)]
        args += ["--interval", interval, "--current", str(current), "--config", str(config)]
        proc = Process(
            [sys.executable, "-m", "exporter", *args],
            self.workdir / f"{self.name}-{self.starts}.log",
            cwd=self.workdir,
            env=env,
        )
        self._process = proc
        if not wait_ready:
            return

        def ready() -> bool:
            if not proc.alive():
                raise Fatal(f"{self.name} exited with status {proc.popen.returncode}")
            return http_get(f"{self.url}/ready", timeout=2)[0] == 200

        try:
            wait_for(ready, timeout, f"{self.name} ready", lambda: proc.output()[-4000:])
        except AssertionError:
            proc.stop()
            raise

    def kill(self) -> int | None:
        """SIGKILL, no chance to clean up; return the exit status (-9)."""
        proc = self.process
        proc.signal(signal.SIGKILL)
        proc.popen.wait(10)
        return proc.stop()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()

    def output(self) -> str:
        return self.process.output()


# --------------------------------------------------------------------------- the stack


@dataclass
class AlertStack:
    """Sinks and Alertmanager shared by a module; Prometheus started per test."""

    workdir: Path
    prometheus_binary: str
    smtp: SmtpSink
    slack: HttpSink
    webhook: HttpSink
    alertmanager: Alertmanager

    @contextmanager
    def prometheus(self, exporter_port: int, name: str) -> Iterator[Prometheus]:
        prom = Prometheus(
            self.prometheus_binary,
            self.workdir / name,
            exporter=f"127.0.0.1:{exporter_port}",
            alertmanager=self.alertmanager.target,
        )
        try:
            yield prom
        finally:
            prom.stop()

    def notifications(
        self,
        alertname: str,
        model: str,
        *,
        channel: str | None = None,
        listing: str | None = None,
    ) -> list[Notification]:
        """Email and Slack notifications of one alert group, in order of arrival; with
        ``listing``, only those that list an alert of that severity."""
        found = [*self.smtp.notifications(), *self.slack.slack_notifications()]
        return sorted(
            (
                n
                for n in found
                if n.alertname == alertname
                and n.model == model
                and (channel is None or n.channel == channel)
                and (listing is None or n.lists(listing))
            ),
            key=lambda n: n.received,
        )

    def webhook_payloads(self, alertname: str, model: str) -> list[dict[str, Any]]:
        return [
            p.body
            for p in self.webhook.posts()
            if p.body.get("groupLabels") == {"alertname": alertname, "model": model}
        ]

    def logs(self, *processes: Process) -> str:
        """The tail of each log, for a failure message."""
        parts = []
        for proc in (self.alertmanager.process, *processes):
            parts.append(f"--- {proc.log_path.name}\n{proc.output()[-2500:]}")
        return "\n".join(parts)


@contextmanager
def alert_stack(workdir: Path, *, prometheus: str, alertmanager: str) -> Iterator[AlertStack]:
    """Start the sinks and Alertmanager; stop everything on exit, whatever happened."""
    smtp = SmtpSink(password=secrets.token_urlsafe(16))
    # An incoming-webhook URL is a secret: a token in the path, read from a file.
    slack = HttpSink(f"/services/T0000/B0000/{secrets.token_urlsafe(12)}")
    webhook = HttpSink("/alerts/webhook")
    started: list[Any] = []
    try:
        for sink in (smtp, slack, webhook):
            sink.start()
            started.append(sink)
        manager = Alertmanager(
            alertmanager,
            workdir / "alertmanager",
            smtp=smtp,
            slack_url=slack.url,
            webhook_url=webhook.url,
        )
        started.append(manager)
        yield AlertStack(workdir, prometheus, smtp, slack, webhook, manager)
    finally:
        for part in reversed(started):
            part.stop()


class Fatal(Exception):
    """Raised by a `wait_for` check when waiting longer cannot help (a process died)."""


def wait_for(check: Callable[[], T], timeout: float, what: str, logs: Callable[[], str]) -> T:
    """Poll `check` until it returns something truthy; fail at the deadline, or at once
    when it raises `Fatal`, with the processes' logs in the message.

    Other exceptions count as "not yet" (a server still starting refuses connections).
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Fatal as err:
            raise AssertionError(f"{what}: {err}\n{logs()}") from None
        except Exception as err:
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; last: {last!r}\n{logs()}"
            )
        time.sleep(0.2)


def assert_quiet(
    alertmanager: Alertmanager,
    alertname: str,
    model: str,
    extra: Callable[[], Any],
    what: str,
    logs: Callable[[], str],
    *,
    flushes: int = QUIET_FLUSHES,
) -> float:
    """Let every aggregation group of (alertname, model) flush `flushes` more times, then
    fail if `extra()` returns something truthy (a notification that should not exist);
    fail as soon as it does. Return the seconds watched (a measurement only).

    Each flush is Alertmanager deciding whether the group needs a notification, and a
    flush returns only once its notifications are delivered (the sinks have them), before
    the group's next flush starts: so after `flushes` + 1 new "flushing" lines per group,
    whatever the first `flushes` flushes sent has arrived. Counting flushes instead of
    seconds keeps the check as strong on a busy machine as on an idle one.
    """
    started = time.monotonic()
    before = alertmanager.flushes(alertname, model)
    if not before:
        raise AssertionError(f"no flush of the group ({alertname}, {model}) logged\n{logs()}")

    def flushed() -> bool:
        found = extra()
        if found:
            raise Fatal(f"{what}: {found!r}")
        now = alertmanager.flushes(alertname, model)
        return all(now[group] >= count + flushes + 1 for group, count in before.items())

    wait_for(
        flushed,
        QUIET_DEADLINE,
        f"{flushes} more flushes of each ({alertname}, {model}) group, nothing new sent",
        logs,
    )
    found = extra()
    if found:
        raise AssertionError(f"{what}: {found!r}\n{logs()}")
    return time.monotonic() - started
