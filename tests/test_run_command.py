"""`churn-monitor run` (one pass) as a real process: its summary and its exit status.

A batch pipeline runs ``churn-monitor run --current FILE --fail-on-drift`` and stops on
exit status 1. The windows are small synthetic files: one from the reference's own
distribution and one after the `sudden` shift. Only the drift job runs (no model).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from exporter.data import synthetic

from .support import churn_monitor

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: Deadline of one pass (the process imports pandas, scipy and MLflow first).
DEADLINE = 180.0

CONFIG = """
data:
  reference_path: reference.csv
performance_monitoring: {enabled: false}
optuna: {enabled: false}
history: {enabled: false}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the config, a reference and two 600-row windows."""
    path = tmp_path_factory.mktemp("run")
    (path / "config.yaml").write_text(CONFIG)
    synthetic.generate_customers(3000, seed=0).to_csv(path / "reference.csv", index=False)
    for name, scenario in (("steady", "none"), ("drifted", "sudden")):
        window = synthetic.generate_customers(600, seed=2, scenario=scenario, id_offset=10**6)
        window.to_csv(path / f"{name}.csv", index=False)
    return path


def run(workdir: Path, current: str, *flags: str) -> subprocess.CompletedProcess[str]:
    args = churn_monitor("run", "--config", "config.yaml", "--current", current, *flags)
    return subprocess.run(args, cwd=workdir, capture_output=True, text=True, timeout=DEADLINE)


def test_fail_on_drift_exits_1_on_a_drifted_window(workdir: Path) -> None:
    proc = run(workdir, "drifted.csv", "--fail-on-drift")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "DRIFT DETECTED" in proc.stdout
    assert "Data drift - model churn-model" in proc.stdout


def test_a_drifted_window_without_the_flag_exits_0(workdir: Path) -> None:
    proc = run(workdir, "drifted.csv")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DRIFT DETECTED" in proc.stdout


def test_fail_on_drift_exits_0_on_a_steady_window(workdir: Path) -> None:
    proc = run(workdir, "steady.csv", "--fail-on-drift")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = proc.stdout.splitlines()
    verdict = next(line for line in summary if line.startswith("Dataset drift score"))
    assert verdict.endswith("no dataset drift; drifted columns: []"), verdict
    reports = sorted((workdir / "reports" / "drift_reports").glob("drift_report_*.json"))
    assert reports, "the pass wrote no drift report"
    assert any(json.loads(p.read_text())["dataset_drift"] is False for p in reports)


def test_a_failed_job_exits_1_with_its_error_in_the_summary(workdir: Path) -> None:
    (workdir / "broken.parquet").write_bytes(b"not parquet")
    proc = run(workdir, "broken.parquet", "--fail-on-drift")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Job drift FAILED: " in proc.stdout
    assert "broken.parquet" in proc.stdout
    assert "Traceback" not in proc.stderr  # one line per failed job; tracebacks need --verbose


def test_a_missing_current_file_is_one_line_and_runs_nothing(workdir: Path) -> None:
    proc = run(workdir, "missing.csv")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "churn-monitor run: --current missing.csv: no such file "
        "(give a CSV or Parquet file, or a glob of them)"
    ]
