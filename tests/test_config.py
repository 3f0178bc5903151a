"""The config loader: defaults, the seed's keys, errors naming the field, overrides."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from exporter.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    MonitoringConfig,
    load_config,
    parse_config,
)

from .support import REPO, churn_monitor


def test_shipped_config_is_valid_and_keeps_the_seed_keys() -> None:
    raw = yaml.safe_load((REPO / DEFAULT_CONFIG_PATH).read_text())
    config = parse_config(raw)
    assert config.data_drift_monitoring.enabled is True
    assert 0 < config.data_drift_monitoring.drift_threshold < 1
    assert config.data_drift_monitoring.check_interval_minutes == 30
    thresholds = config.performance_monitoring.thresholds
    assert thresholds.min_accuracy == raw["performance_monitoring"]["thresholds"]["min_accuracy"]
    assert thresholds.min_precision == raw["performance_monitoring"]["thresholds"]["min_precision"]
    assert thresholds.degradation_threshold == 0.05


def _missing_keys(model: type[BaseModel], raw: Any, path: str = "") -> list[str]:
    """The dotted fields of `model` (nested models followed) that `raw` does not name."""
    missing = []
    for name, field in model.model_fields.items():
        if not isinstance(raw, dict) or name not in raw:
            missing.append(f"{path}{name}")
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            missing += _missing_keys(field.annotation, raw[name], f"{path}{name}.")
    return missing


def test_shipped_config_spells_out_every_default() -> None:
    """The YAML documents every key: it names every field, and parsing it equals the
    built-in defaults."""
    raw = yaml.safe_load((REPO / DEFAULT_CONFIG_PATH).read_text())
    assert _missing_keys(MonitoringConfig, raw) == []
    assert parse_config(raw) == parse_config({})


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        (
            {"data_drift_monitoring": {"drift_threshold": 1.5}},
            "data_drift_monitoring.drift_threshold",
        ),
        ({"data_drift_monitoring": {"enabled": "maybe"}}, "data_drift_monitoring.enabled"),
        ({"data_drift_monitoring": {"check_interval_minutes": 0}}, "check_interval_minutes"),
        (
            {"performance_monitoring": {"thresholds": {"min_acuracy": 0.7}}},
            "thresholds.min_acuracy",
        ),
        ({"exporter": {"port": 70000}}, "exporter.port"),
        ({"logging": {"level": "LOUD"}}, "logging.level"),
        ({"unknown_section": {}}, "unknown_section"),
        ({"data": {"current": {"kind": "file"}}}, "data.current"),
        ({"features": {"overrides": {"nope": {"method": "ks", "threshold": 0.01}}}}, "overrides"),
        ({"features": {"overrides": {"tenure": {"method": "chi2", "threshold": 1}}}}, "method"),
        (
            {"features": {"overrides": {"Contract": {"method": "ks", "threshold": 0.01}}}},
            "overrides.Contract.method",
        ),
        ({"model": {"registry_alias": "challenger"}}, "model.challenger_alias"),
        ({"model": {"challenger_alias": "champion"}}, "model.challenger_alias"),
        ({"retraining": {"alert_types": ["MODEL_DEGRADATON"]}}, "retraining.alert_types.0"),
        ({"history": {"url": "notaurl"}}, "history.url: Value error, not a database URL"),
        ({"data": {"current": {"url": "mysql://u@h/d"}}}, "data.current.url: Value error, uns"),
        ({"optuna": {"storage": "data/optuna.db"}}, "optuna.storage: Value error, not a data"),
    ],
)
def test_bad_values_name_the_field(raw: dict, path: str) -> None:
    with pytest.raises(ConfigError, match=path.replace(".", r"\.")):
        parse_config(raw)


def test_log_level_env_and_config_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("exporter: {port: 9200}\n")
    monkeypatch.setenv("CHURN_MONITOR_CONFIG", str(cfg))
    monkeypatch.setenv("LOG_LEVEL", "debug")
    config = load_config()
    assert config.exporter.port == 9200
    assert config.logging.level == "DEBUG"
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    with pytest.raises(ConfigError, match="LOG_LEVEL"):
        load_config()


def test_unreadable_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("exporter: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(scalar)


def test_cli_bad_config_exits_2_naming_the_field_and_writes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"data_drift_monitoring: {{drift_threshold: -1}}\nreports: {{dir: {tmp_path}/r}}\n"
    )
    for command in (["run"], ["run", "--mode", "continuous"], ["setup"]):
        proc = subprocess.run(
            churn_monitor(*command, "--config", str(cfg)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "data_drift_monitoring.drift_threshold" in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_cli_bad_argument_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        churn_monitor("run", "--interval", "-3"), cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "--interval" in proc.stderr
