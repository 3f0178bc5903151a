"""The compose stack's one-shot config rendering (``python -m exporter.ops.compose``).

Prometheus and Alertmanager cannot merge config files, and what the compose stack
changes depends on which secret files exist at start; so instead of hand-kept copies,
one-shot services render the repository's files (the single sources) into volumes the
servers read:

* ``render-alertmanager``: ``alertmanager/alertmanager.yml`` with the SMTP relay
  (Mailpit), SMTP login only with ``smtp_password``, Slack only with
  ``slack_webhook_url``, and basic auth on the exporter's webhook with the exporter's
  credentials.
* ``render-prometheus``: ``prometheus/prometheus.yml`` with the rules folder made
  absolute, the scrape jobs of scalable services (``--dns-sd``, the API) finding every
  replica by DNS (``dns_sd_configs`` of type A on the service name: compose's DNS
  answers with one address per replica) and, per server, ``basic_auth: {username,
  password_file}`` on its scrape job when its credential files exist. The renderer
  also reads the servers' web config (``exporter.web_config_file``,
  ``api.web_config_file``) and stops with exit status 2
  when the two disagree: users configured but no credentials, credentials the server
  refuses, or TLS (the stack's health checks and clients speak plain HTTP).

Credential files, in the secrets folder (docs/deployment.md): ``<server>_auth_username``
(the user name, written into the rendered config) and ``<server>_auth_password`` (the
password, read only by Prometheus and Alertmanager at request time; the rendered files
name it, never contain it), for ``<server>`` ``exporter`` and ``api``.
"""

from __future__ import annotations

import argparse
import base64
import copy
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from exporter.config import ConfigError, load_config
from exporter.ops import promconfig
from exporter.web.webconfig import load_web_config

#: Scrape job -> the file prefix of the credentials Prometheus uses on that server.
SERVERS: dict[str, str] = {promconfig.JOB_EXPORTER: "exporter", promconfig.JOB_API: "api"}


class ComposeError(ValueError):
    """Secret files and web config that do not fit together: exit status 2."""


@dataclass(frozen=True)
class Credentials:
    """A basic-auth login: the user name and the file holding the password."""

    username: str
    password_file: str


def username_file(server: str) -> str:
    return f"{server}_auth_username"


def password_file(server: str) -> str:
    return f"{server}_auth_password"


def _present(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def read_credentials(secrets: Path, server: str) -> Credentials | None:
    """The login for `server` from the secrets folder; None when neither file exists.

    Raises ComposeError when only one of the two files exists or the user name is blank.
    """
    user, password = secrets / username_file(server), secrets / password_file(server)
    if not _present(user) and not _present(password):
        return None
    if not (_present(user) and _present(password)):
        missing = password if _present(user) else user
        raise ComposeError(f"{missing} is missing or empty (both files, or neither)")
    name = user.read_text(encoding="utf-8").strip()
    if not name or ":" in name:
        raise ComposeError(f"{user}: expected a user name (no colon), got {name!r}")
    return Credentials(name, str(password))


def compose_alertmanager_config(
    base: Mapping[str, Any],
    *,
    slack: bool,
    smtp_password: bool,
    smtp_smarthost: str | None = None,
    smtp_require_tls: bool | None = None,
    templates_dir: str | None = None,
    webhook_auth: Credentials | None = None,
) -> dict[str, Any]:
    """alertmanager.yml for the compose stack, from the repository's file.

    Only what the stack changes: the SMTP relay (``mailpit:1025`` without TLS in the
    compose file), SMTP authentication dropped when no password file is mounted (Mailpit
    takes mail without it), Slack off unless its webhook file is mounted, the templates
    made absolute (the rendered file lives in another folder), and `webhook_auth` on the
    exporter's webhook. Secret file paths stay as in the base
    (``/etc/alertmanager/secrets/...``).
    """
    rendered = promconfig.render_alertmanager_config(
        base,
        smtp_smarthost=smtp_smarthost,
        smtp_require_tls=smtp_require_tls,
        templates_dir=templates_dir,
    )
    if not smtp_password:
        glob = rendered.setdefault("global", {})
        glob.pop("smtp_auth_username", None)
        glob.pop("smtp_auth_password_file", None)
    if webhook_auth is not None:
        rendered = promconfig.with_webhook_basic_auth(
            rendered, username=webhook_auth.username, password_file=webhook_auth.password_file
        )
    return rendered if slack else promconfig.without_slack(rendered)


def with_dns_discovery(config: Mapping[str, Any], job: str) -> dict[str, Any]:
    """Return ``config`` with scrape job `job` finding its targets by DNS: each static
    ``host:port`` becomes a ``dns_sd_configs`` entry (type A) naming ``host`` on
    ``port``, so every address the name resolves to (every replica of a compose
    service) is scraped, each as its own ``instance``. ComposeError when the job is
    missing or has no static target."""
    result: dict[str, Any] = copy.deepcopy(dict(config))
    jobs = [j for j in result.get("scrape_configs") or [] if j.get("job_name") == job]
    if not jobs:
        raise ComposeError(f"--dns-sd: no scrape job {job!r} in the Prometheus config")
    scrape = jobs[0]
    targets = [t for sc in scrape.pop("static_configs", None) or [] for t in sc["targets"]]
    if not targets:
        raise ComposeError(f"--dns-sd: scrape job {job!r} has no static target to resolve")
    hosts: dict[int, list[str]] = {}
    for target in targets:
        host, _, port = target.rpartition(":")
        hosts.setdefault(int(port), []).append(host)
    scrape["dns_sd_configs"] = [
        {"names": names, "type": "A", "port": port} for port, names in hosts.items()
    ]
    return result


def compose_prometheus_config(
    base: Mapping[str, Any],
    *,
    rules_dir: str,
    auth: Mapping[str, Credentials],
    dns_sd: Sequence[str] = (),
) -> dict[str, Any]:
    """prometheus.yml for the compose stack, from the repository's file.

    The ``rule_files`` globs move to `rules_dir` (a container path: the rendered file
    lives in another folder), each scrape job named in `dns_sd` finds its targets by DNS
    (:func:`with_dns_discovery`) and each one named in `auth` gets its basic auth.
    Other targets stay the base's.
    """
    config: dict[str, Any] = copy.deepcopy(dict(base))
    config["rule_files"] = [
        str(PurePosixPath(rules_dir) / PurePosixPath(pattern).name)
        for pattern in base.get("rule_files") or []
    ]
    for job in dns_sd:
        config = with_dns_discovery(config, job)
    for job, login in auth.items():
        config = promconfig.with_basic_auth(
            config, job, username=login.username, password_file=login.password_file
        )
    return config


def check_server(
    server: str, web_config_file: str | None, login: Credentials | None, secrets: Path
) -> None:
    """Raise ComposeError unless Prometheus' `login` fits `server`'s web config (the
    file its ``<server>.web_config_file`` names)."""
    field_name = f"{server}.web_config_file"
    web = load_web_config(web_config_file, field_name)
    if web.tls:
        raise ComposeError(
            f"{field_name}: TLS is not supported inside the compose stack (its health "
            "checks, the form, the simulator and Alertmanager speak plain HTTP): keep "
            "basic auth only and terminate TLS in front of the published ports"
        )
    if not web.users:
        return
    if login is None:
        raise ComposeError(
            f"{field_name} sets basic_auth_users, but {secrets / username_file(server)} "
            f"and {secrets / password_file(server)} are missing: Prometheus would get 401"
        )
    password = Path(login.password_file).read_text(encoding="utf-8").strip()
    token = base64.b64encode(f"{login.username}:{password}".encode()).decode()
    if not web.authorized(f"Basic {token}"):
        raise ComposeError(
            f"{secrets / username_file(server)}, {secrets / password_file(server)}: "
            f"{field_name} refuses this user name and password (not in basic_auth_users, "
            "or the password does not match its bcrypt hash)"
        )


def render_alertmanager_main(args: argparse.Namespace) -> int:
    """``render-alertmanager``: the compose stack's alertmanager.yml from the repo's."""
    secrets = Path(args.secrets)
    slack = _present(secrets / promconfig.SLACK_WEBHOOK_FILE)
    webhook_auth = read_credentials(secrets, SERVERS[promconfig.JOB_EXPORTER])
    config = compose_alertmanager_config(
        promconfig.load_yaml(args.base),
        slack=slack,
        smtp_password=_present(secrets / promconfig.SMTP_PASSWORD_FILE),
        smtp_smarthost=args.smtp_smarthost,
        smtp_require_tls=False if args.smtp_no_tls else None,
        templates_dir=args.templates,
        webhook_auth=webhook_auth,
    )
    target = promconfig.write_config(config, args.out)
    slack_state = "on" if slack else f"off (no {secrets / promconfig.SLACK_WEBHOOK_FILE})"
    smarthost = config["global"].get("smtp_smarthost")
    webhook = f"as {webhook_auth.username}" if webhook_auth else "without credentials"
    print(f"wrote {target}: email via {smarthost}, Slack {slack_state}, webhook {webhook}")
    return 0


def render_prometheus_main(args: argparse.Namespace) -> int:
    """``render-prometheus``: the compose stack's prometheus.yml from the repo's."""
    secrets = Path(args.secrets)
    app = load_config(args.config)
    web_configs = {"exporter": app.exporter.web_config_file, "api": app.api.web_config_file}
    auth: dict[str, Credentials] = {}
    for job, server in SERVERS.items():
        login = read_credentials(secrets, server)
        check_server(server, web_configs[server], login, secrets)
        if login is not None:
            auth[job] = login
    config = compose_prometheus_config(
        promconfig.load_yaml(args.base), rules_dir=args.rules, auth=auth, dns_sd=args.dns_sd
    )
    target = promconfig.write_config(config, args.out)
    jobs = ", ".join(
        f"{job} as {auth[job].username}" if job in auth else f"{job} without credentials"
        for job in SERVERS
    )
    found = f"; by DNS: {', '.join(args.dns_sd)}" if args.dns_sd else ""
    print(f"wrote {target}: scraping {jobs}{found}")
    return 0


def _renderer(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    program: str,
    func: Callable[[argparse.Namespace], int],
    secrets: str,
) -> argparse.ArgumentParser:
    """Command ``render-<program>``, run by `func`, with the options every renderer takes:
    the repository's ``<program>.yml``, where to write, the secrets folder (`secrets`
    says what it holds)."""
    p = sub.add_parser(f"render-{program}", help=f"render {program}.yml for compose")
    p.add_argument("--base", required=True, help=f"the repository's {program}.yml")
    p.add_argument("--out", required=True, help="where to write the rendered file")
    p.add_argument("--secrets", required=True, help=secrets)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """``python -m exporter.ops.compose``: the compose stack's one-shot renderers."""
    parser = argparse.ArgumentParser(prog="python -m exporter.ops.compose")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    secrets = "folder holding smtp_password / slack_webhook_url / exporter_auth_*"
    p = _renderer(sub, "alertmanager", render_alertmanager_main, secrets)
    p.add_argument("--templates", help="absolute folder of the *.tmpl templates")
    p.add_argument("--smtp-smarthost", metavar="HOST:PORT", help="SMTP relay to use")
    p.add_argument("--smtp-no-tls", action="store_true", help="do not require STARTTLS")

    secrets = "folder holding exporter_auth_* / api_auth_*, where Prometheus mounts it"
    p = _renderer(sub, "prometheus", render_prometheus_main, secrets)
    p.add_argument("--rules", required=True, help="absolute folder of the rule files")
    p.add_argument("--config", help="the churn-monitor config naming the servers' web config files")
    p.add_argument(
        "--dns-sd",
        action="append",
        default=[],
        metavar="JOB",
        help="scrape job whose targets are found by DNS, every replica (repeatable)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ComposeError, ConfigError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")


if __name__ == "__main__":
    sys.exit(main())
