"""The Prometheus and Alertmanager configs `up` writes, rendered from the repository's.

Pure: each function takes the parsed shipped files and returns new mappings, rendered
with :mod:`exporter.ops.promconfig`; :mod:`exporter.ops.up` writes them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from exporter.config import StackConfig
from exporter.ops import promconfig


def stack_alertmanager_config(
    base: Mapping[str, Any],
    stack: StackConfig,
    *,
    webhook_url: str,
    sinks: tuple[str, str] | None,
    secrets_dir: Path,
    secrets: Iterable[str],
) -> dict[str, Any]:
    """alertmanager.yml for `up`: the history webhook at the local exporter; email and
    Slack to the local sinks (``sinks`` = SMTP host:port and Slack URL) when they run,
    else to the relay and webhook of the shipped file with the secrets of
    `secrets_dir`; the ``stack`` section's timers. Routes, receivers, inhibition and
    templates are the shipped ones."""
    if sinks is None:
        rendered = local_alertmanager_config(
            base, webhook_url=webhook_url, secrets_dir=secrets_dir, secrets=secrets
        )
    else:
        smtp, slack = sinks
        rendered = promconfig.to_local_sinks(
            promconfig.render_alertmanager_config(
                base, webhook_url=webhook_url, templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR
            ),
            smtp_smarthost=smtp,
            slack_url=slack,
        )
    return promconfig.render_alertmanager_config(
        rendered,
        group_wait=stack.group_wait,
        group_interval=stack.group_interval,
        repeat_interval=stack.repeat_interval,
    )


def local_alertmanager_config(
    base: Mapping[str, Any], *, webhook_url: str, secrets_dir: Path, secrets: Iterable[str]
) -> dict[str, Any]:
    """alertmanager.yml for a local run: webhook at the local exporter, absolute
    templates, the secret files of `secrets_dir` when present, Slack off otherwise."""
    present = set(secrets)
    smtp_password = promconfig.SMTP_PASSWORD_FILE
    slack_webhook = promconfig.SLACK_WEBHOOK_FILE
    rendered = promconfig.render_alertmanager_config(
        base,
        webhook_url=webhook_url,
        templates_dir=promconfig.ALERTMANAGER_TEMPLATES_DIR,
        smtp_auth_password_file=secrets_dir / smtp_password if smtp_password in present else None,
        slack_api_url_file=secrets_dir / slack_webhook if slack_webhook in present else None,
    )
    return rendered if slack_webhook in present else promconfig.without_slack(rendered)


def scaled_rules(target_dir: Path, factor: float) -> dict[Path, dict[str, Any]]:
    """The repository's rule files with every ``for:`` times ``factor``: path -> rules."""
    return {
        target_dir / source.name: promconfig.scale_rule_durations(
            promconfig.load_yaml(source), factor
        )
        for source in sorted(promconfig.PROMETHEUS_RULES_DIR.glob("*.yml"))
    }


def grace_period(factor: float) -> str:
    """Prometheus' --rules.alert.for-grace-period: 1m, scaled like the rules' ``for:``."""
    return promconfig.format_duration(60 * factor)
