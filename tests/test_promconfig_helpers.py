"""The test helpers of tests/promconfig_helpers.py: shortened rules for the e2e tests."""

from __future__ import annotations

from pathlib import Path

from exporter.ops import promconfig

from .promconfig_helpers import shorten_rule_durations, write_short_rules


def test_short_rules_change_only_the_for_durations(tmp_path: Path) -> None:
    """The e2e Prometheus evaluates the shipped rules; only `for:` is capped."""
    target = write_short_rules(tmp_path, max_for="2s")
    sources = sorted(promconfig.PROMETHEUS_RULES_DIR.glob("*.yml"))
    assert sorted(p.name for p in target.glob("*.yml")) == [p.name for p in sources]
    capped = 0
    for source in sources:
        original = promconfig.load_yaml(source)
        short = promconfig.load_yaml(target / source.name)
        for group, short_group in zip(original["groups"], short["groups"], strict=True):
            for rule, short_rule in zip(group["rules"], short_group["rules"], strict=True):
                if "for" in rule:
                    assert short_rule["for"] == "2s", rule.get("alert")
                    capped += 1
                assert {k: v for k, v in short_rule.items() if k != "for"} == {
                    k: v for k, v in rule.items() if k != "for"
                }
    assert capped >= 10
    # shorter durations are kept, the input is not modified
    doc = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "1s"}]}]}
    assert shorten_rule_durations(doc, "2s") == doc
    longer = {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "1", "for": "1h"}]}]}
    assert shorten_rule_durations(longer, "2s")["groups"][0]["rules"][0]["for"] == "2s"
    assert longer["groups"][0]["rules"][0]["for"] == "1h"
