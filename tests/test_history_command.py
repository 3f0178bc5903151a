"""`churn-monitor history`: the history tables as a table, JSON or CSV, by type and age.

The command runs as a real process (``python -m exporter``) on a real SQLite history
written through :mod:`exporter.data.history`, with rows of every type: one from ten
hours ago and one from an hour ago each, so ``--since 2`` keeps exactly the newer.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from datetime import datetime
from pathlib import Path

import pytest

from exporter.data.history import (
    drift_reports,
    open_history,
    parse_notification,
    performance_metrics,
    record_alerts,
    record_retraining,
)

from .support import churn_monitor
from .test_history import notification

pytestmark = pytest.mark.slow
HOUR = 3600.0
NOW = time.time()
OLD, RECENT = NOW - 10 * HOUR, NOW - HOUR


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("history-command")
    url = f"sqlite:///{root / 'history.db'}"
    (root / "config.yaml").write_text(f"history: {{url: '{url}'}}\n")
    engine = open_history(url)
    for ts, fingerprint, status in ((OLD, "a1", "firing"), (RECENT, "b2", "resolved")):
        body = notification(status, fingerprint=fingerprint)
        record_alerts(engine, parse_notification(body), now=ts)
    record_retraining(engine, ts=OLD, trigger="ChurnModelThresholdBreach", decision="promoted")
    record_retraining(
        engine, ts=RECENT, trigger="ChurnModelDegraded", decision="failed", detail="x, y"
    )
    with engine.begin() as conn:
        for ts, score in ((OLD, 0.1), (RECENT, 0.4)):
            conn.execute(
                drift_reports.insert().values(
                    ts=ts,
                    model="churn-model",
                    version="1",
                    score=score,
                    threshold=0.15,
                    drifted=score > 0.15,
                    drifted_columns=json.dumps(["tenure"] if score > 0.15 else []),
                    n_current=500,
                    n_reference=2000,
                )
            )
    engine.dispose()
    return root


def history(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CHURN_MONITOR_CONFIG", "LOG_LEVEL")}
    return subprocess.run(
        churn_monitor("history", "--config", str(workdir / "config.yaml"), *args),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_json_keeps_stored_values_and_since_keeps_the_newer_rows(workdir: Path) -> None:
    rows = json.loads(ok(history(workdir, "--format", "json")))
    assert [r["fingerprint"] for r in rows] == ["a1", "b2"]  # alerts by default, oldest first
    assert [r["first_notified_at"] for r in rows] == [pytest.approx(OLD), pytest.approx(RECENT)]
    assert json.loads(rows[0]["labels"])["alertname"] == "ChurnModelThresholdBreach"

    recent = json.loads(ok(history(workdir, "--format", "json", "--since", "2")))
    assert [r["fingerprint"] for r in recent] == ["b2"]
    drift = json.loads(ok(history(workdir, "--type", "drift", "--format", "json", "--since", "2")))
    assert [(r["score"], r["drifted"]) for r in drift] == [(0.4, True)]


def test_csv_has_a_header_and_iso_times(workdir: Path) -> None:
    out = ok(history(workdir, "--type", "retraining", "--format", "csv"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["decision"] for r in rows] == ["promoted", "failed"]
    assert rows[1]["detail"] == "x, y"  # quoted, not split
    assert datetime.fromisoformat(rows[0]["ts"]).timestamp() == pytest.approx(OLD, abs=1)
    assert rows[0]["champion_version"] == ""

    empty = ok(history(workdir, "--type", "performance", "--format", "csv"))
    assert empty.splitlines() == ["id"]


def test_table_shows_one_line_per_row_without_raw_columns(workdir: Path) -> None:
    lines = ok(history(workdir)).splitlines()
    assert len(lines) == 3
    header = lines[0].split()
    assert {"fingerprint", "status", "alertname", "first_notified_at"} <= set(header)
    assert not {"id", "labels", "annotations"} & set(header)
    assert "a1" in lines[1] and "firing" in lines[1]
    assert "b2" in lines[2] and "resolved" in lines[2]
    assert datetime.fromtimestamp(RECENT).astimezone().isoformat(timespec="seconds") in lines[2]

    recent = ok(history(workdir, "--type", "retraining", "--since", "2")).splitlines()
    assert len(recent) == 2 and "failed" in recent[1]
    assert ok(history(workdir, "--type", "performance")).strip() == "no performance rows"


def test_bad_arguments_exit_2_with_one_line(workdir: Path) -> None:
    for args in (("--type", "deploys"), ("--since", "0"), ("--format", "xml")):
        proc = history(workdir, *args)
        assert proc.returncode == 2, args
        assert proc.stdout == ""
        assert proc.stderr.strip().splitlines()[-1].startswith("churn-monitor history: error:")


def test_performance_rows_are_listed_by_metric(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'history.db'}"
    (tmp_path / "config.yaml").write_text(f"history: {{url: '{url}'}}\n")
    engine = open_history(url)
    with engine.begin() as conn:
        conn.execute(
            performance_metrics.insert(),
            [
                {
                    "ts": RECENT,
                    "model": "churn-model",
                    "version": "1",
                    "metric": metric,
                    "realized": value,
                    "estimated": None,
                    "baseline": 0.8,
                    "minimum": 0.7,
                    "labeled_rows": 400,
                }
                for metric, value in (("accuracy", 0.81), ("roc_auc", None))
            ],
        )
    engine.dispose()
    rows = json.loads(ok(history(tmp_path, "--type", "performance", "--format", "json")))
    assert [(r["metric"], r["realized"]) for r in rows] == [("accuracy", 0.81), ("roc_auc", None)]
