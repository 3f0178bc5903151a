"""Test helpers over the rendered Prometheus configs and the shipped alert rules.

The tests run the real rules against a real Prometheus, whose production ``for:``
durations (minutes) are too long to wait for: :func:`shorten_rule_durations` caps them
and :func:`write_short_rules` writes the capped files where a rendered config's
``rule_files`` find them. :func:`scrape_targets` reads a config's static targets back.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from exporter.ops.promconfig import PROMETHEUS_RULES_DIR, duration_seconds, load_yaml, write_config


def scrape_targets(
    config: Mapping[str, Any], files: Mapping[Path, Any] | None = None
) -> dict[str, list[str]]:
    """Map each scrape job name to its static targets, and to the targets of its
    file-based discovery files found in `files` (path -> content, as a plan holds)."""
    result: dict[str, list[str]] = {}
    for job in config.get("scrape_configs") or []:
        groups = list(job.get("static_configs") or [])
        for sd in job.get("file_sd_configs") or []:
            groups += [g for f in sd["files"] for g in (files or {})[Path(f)]]
        result[job["job_name"]] = [t for group in groups for t in group.get("targets") or []]
    return result


def shorten_rule_durations(rules: Mapping[str, Any], max_for: str) -> dict[str, Any]:
    """Return ``rules`` (a parsed rules file) with every ``for:`` capped at ``max_for``.

    Only ``for:`` changes; expressions, labels and annotations are the shipped ones. A
    rule without ``for:`` or with a shorter one is left as it is.
    """
    limit = duration_seconds(max_for)
    result: dict[str, Any] = copy.deepcopy(dict(rules))
    for group in result.get("groups") or []:
        for rule in group.get("rules") or []:
            current = rule.get("for")
            if current is not None and duration_seconds(str(current)) > limit:
                rule["for"] = max_for
    return result


def write_short_rules(
    target_dir: str | os.PathLike[str],
    *,
    max_for: str,
    source_dir: str | os.PathLike[str] = PROMETHEUS_RULES_DIR,
) -> Path:
    """Write each ``*.yml`` of ``source_dir`` to ``target_dir`` with shortened ``for:``.

    The file names are kept, so a config rendered with ``rules_dir=target_dir`` loads
    them through the same ``rule_files`` globs. Returns ``target_dir``.
    """
    target = Path(target_dir)
    sources = sorted(Path(source_dir).glob("*.yml"))
    if not sources:
        raise ValueError(f"{source_dir}: no *.yml rule files")
    for source in sources:
        write_config(shorten_rule_durations(load_yaml(source), max_for), target / source.name)
    return target
