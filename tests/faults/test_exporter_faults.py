"""Faults of the exporter itself, with real processes: SIGKILL mid-job, bad input files.

- SIGKILL during a drift run, held at a known point (tests/faults/hold: the process
  computing the run, the exporter's monitoring worker, stops itself inside the rename
  of its second report), of the exporter's whole process group (server and worker):
  the restarted exporter is ready again, exports
  ``churn_exporter_job_success{task="drift"} 1``, no report on disk is half written, and
  leftover ``.drift_report_*.tmp`` files are removed by the next successful run.
- A Parquet reference cut in half, a CSV reference with garbage bytes, and a current
  window whose schema changed (a column renamed, another removed): the drift job
  fails with a message naming the file and the problem (landing page and log),
  ``churn_exporter_job_success{task="drift"}`` is 0, the exporter keeps serving its last
  good values, and ``ChurnMonitoringJobFailing`` fires with ``task="drift"`` in a real
  Prometheus evaluating the repository's rules (``for:`` capped at 2 s).

Every wait is a poll with a deadline; every process is stopped by pid.
"""

from __future__ import annotations

import html
import json
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.data.synthetic import generate_customers

from ..alerting_fixtures import ExporterProcess, Prometheus, wait_for
from ..support import http_get

REFERENCE_ROWS = 5000
WINDOW_ROWS = 2000
STARTUP = 180.0
#: Failure, alert and recovery deadlines; a healthy run needs a fraction of each.
DEADLINE = 60.0
JOB_FAILING = "ChurnMonitoringJobFailing"


# --------------------------------------------------------------------------- helpers


def write_config(workdir: Path, *, model: str, reference: Path) -> Path:
    """A drift-only exporter config with every path inside `workdir`."""
    raw = {
        "model": {"name": model, "tracking_uri": f"sqlite:///{workdir}/no-registry.db"},
        "data": {"reference_path": str(reference)},
        "performance_monitoring": {"enabled": False},
        "optuna": {"enabled": False},
        "reports": {"dir": str(workdir / "reports")},
        "history": {"url": f"sqlite:///{workdir}/history.db"},
    }
    parse_config(raw)  # a typo fails here, not in the exporter process
    path = workdir / f"{model}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def replace_file(path: Path, data: bytes) -> None:
    """Swap a file's content in one rename (the exporter never reads half a write)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    os.replace(partial, path)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """All samples of one scrape of the exporter, keyed by (name, sorted labels)."""
    status, body = http_get(f"{url}/metrics", timeout=30)
    assert status == 200, f"/metrics answered {status}"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def sample(url: str, name: str, **labels: str) -> float | None:
    return scrape(url).get((name, tuple(sorted(labels.items()))))


def job_success(url: str) -> float | None:
    return sample(url, "churn_exporter_job_success", task="drift")


def landing_page(url: str) -> str:
    status, body = http_get(f"{url}/", timeout=30)
    assert status == 200, f"the landing page answered {status}"
    return html.unescape(body)


def parse_reports(folder: Path) -> list[dict[str, Any]]:
    """Every drift report in `folder`, parsed; fails naming a report that does not parse."""
    parsed = []
    for path in sorted(folder.glob("drift_report_*.json")):
        try:
            parsed.append(json.loads(path.read_text()))
        except ValueError as err:
            raise AssertionError(f"{path.name} is not valid JSON (half written?): {err}") from None
    return parsed


def leftover_temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".drift_report_*.tmp"))


# --------------------------------------------------------------------------- SIGKILL

#: tests/faults/hold/sitecustomize.py: put first on PYTHONPATH, it stops the exporter
#: (SIGSTOP) inside the rename of a drift report, after the temp file is complete.
HOLD_DIR = Path(__file__).parent / "hold"


def process_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat (``T`` when stopped), None once gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2 :].split()[0]


def stopped_in_group(pgid: int) -> int | None:
    """The pid of a stopped (``T``) process of process group `pgid`, if any: the
    exporter runs its jobs in a worker process of its group."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] == "T":
            return int(entry.name)
    return None


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_during_a_drift_run_leaves_no_half_report_and_recovers(
    tmp_path: Path, reliability: Any
) -> None:
    reference = tmp_path / "reference.csv"
    generate_customers(REFERENCE_ROWS, seed=0).to_csv(reference, index=False)
    current = tmp_path / "current.csv"
    generate_customers(WINDOW_ROWS, seed=7, scenario="sudden", id_offset=10**6).to_csv(
        current, index=False
    )
    config = write_config(tmp_path, model="churn-sigkill", reference=reference)
    folder = tmp_path / "reports" / "drift_reports"
    history = tmp_path / "history.db"
    exporter = ExporterProcess(tmp_path, name="exporter-sigkill")
    interval = "0.05"
    # The first drift report goes through; the second run stops inside its rename.
    hold = {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOLD_DIR), os.environ.get("PYTHONPATH")])),
        "CHURN_TEST_HOLD_REPLACE": "drift_report_*.json",
        "CHURN_TEST_HOLD_AFTER": "1",
    }

    def logs() -> str:
        return exporter.output()[-4000:]

    try:
        exporter.start(config, current, interval=interval, env=hold, wait_ready=False)
        pid = exporter.process.pid  # its own session and process group (tests/support.py)
        held = wait_for(lambda: stopped_in_group(pid), STARTUP, "the exporter held mid-run", logs)

        # -- SIGKILL of the exporter (server and worker) in the middle of the second run:
        # its report is written, not renamed
        os.killpg(pid, signal.SIGKILL)
        exporter.process.popen.wait(10)
        assert exporter.process.stop() == -9
        wait_for(lambda: process_state(held) in (None, "Z"), DEADLINE, "the worker gone", logs)
        reports_after_kill = parse_reports(folder)
        assert len(reports_after_kill) == 1, "the first run's report is in place"
        left_by_kill = leftover_temps(folder)
        assert len(left_by_kill) == 1, f"the held run's temp file: {left_by_kill}"
        # What a writer killed between mkstemp and the end of its write leaves: a
        # partial report under the temp name.
        planted = folder / ".drift_report_killedmidwrite.tmp"
        planted.write_text('{\n  "critical_threshold": 0.3,\n  "dataset_drift": tr')

        # -- restart on the same port: ready, job healthy, temp files pruned
        exporter.start(config, current, interval=interval, timeout=STARTUP)
        wait_for(lambda: job_success(exporter.url) == 1.0, DEADLINE, "drift success 1", logs)
        wait_for(lambda: not leftover_temps(folder), DEADLINE, "the temp files pruned", logs)
        reports_final = parse_reports(folder)
        assert len(reports_final) > len(reports_after_kill)
        assert all(r["kind"] == "drift" and r["n_current"] == WINDOW_ROWS for r in reports_final)
        with sqlite3.connect(history) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            history_rows = db.execute("SELECT count(*) FROM drift_reports").fetchone()[0]
        assert history_rows >= len(reports_after_kill)
    finally:
        exporter.stop()

    reliability.record(
        "exporter SIGKILLed during a drift run",
        "fault",
        "restarts cleanly: /ready 200, churn_exporter_job_success{task=drift} 1, no half-"
        "written report, leftover .drift_report_*.tmp removed by the next successful run",
        "SIGKILL while the second drift run is held (SIGSTOP) inside the rename of its "
        f"report; report(s) on disk: {len(reports_after_kill)}, all valid JSON; temp files "
        f"left by the kill: {len(left_by_kill)}, plus 1 planted partial write; the "
        f"restarted exporter was ready with job_success 1, every temp file pruned by its "
        f"first run, {len(reports_final)} reports all valid, history SQLite integrity_check ok",
    )


# --------------------------------------------------------------------------- bad input


@pytest.mark.integration
@pytest.mark.slow
def test_corrupt_reference_and_changed_schema_fail_the_job_and_fire_the_alert(
    require_binary: Callable[[str], str], tmp_path: Path, reliability: Any
) -> None:
    prometheus_binary = require_binary("prometheus")
    good = generate_customers(REFERENCE_ROWS, seed=0)
    window = generate_customers(WINDOW_ROWS, seed=2, id_offset=10**6)
    current = tmp_path / "current.csv"
    replace_file(current, csv_bytes(window))
    parquet = tmp_path / "reference.parquet"
    good.to_parquet(parquet, index=False)
    parquet_bytes = parquet.read_bytes()
    # A CSV reference with garbage: valid rows, then bytes of a corrupted block.
    garbage_csv = tmp_path / "reference.csv"
    garbage_csv.write_bytes(csv_bytes(good.head(100)) + b"\xff\xfe\x00garbage\x00" * 40)

    exporter = ExporterProcess(tmp_path, name="exporter-bad-input")
    prom = Prometheus(
        prometheus_binary, tmp_path / "prometheus", exporter=exporter.target, alertmanager=None
    )

    def logs() -> str:
        parts = [f"--- {prom.process.log_path.name}\n{prom.process.output()[-2000:]}"]
        if exporter.starts:
            parts.append(f"--- {exporter.process.log_path.name}\n{exporter.output()[-3000:]}")
        return "\n".join(parts)

    def job_failing_alert() -> dict[str, Any] | None:
        found = [
            a
            for a in prom.alerts()
            if a["labels"].get("alertname") == JOB_FAILING and a["state"] == "firing"
        ]
        return found[0] if found else None

    def no_job_failing_alert() -> bool:
        return not any(a["labels"].get("alertname") == JOB_FAILING for a in prom.alerts())

    def fails_and_fires(problem: str, fault_at: float) -> tuple[str, float, float]:
        """Wait for the failed run and the firing alert; return the error and timings."""
        wait_for(lambda: job_success(exporter.url) == 0.0, DEADLINE, "drift success 0", logs)
        failed_after = time.monotonic() - fault_at
        page = landing_page(exporter.url)
        assert problem in page, f"the landing page does not show {problem!r}:\n{page}"
        assert problem in exporter.output(), "the log does not show the error"
        alert = wait_for(job_failing_alert, DEADLINE, f"{JOB_FAILING} firing", logs)
        fired_after = time.monotonic() - fault_at
        assert alert["labels"]["task"] == "drift", alert["labels"]
        assert alert["labels"]["severity"] == "warning"
        assert alert["annotations"]["summary"] == "Monitoring job drift is failing"
        # the exporter keeps serving
        assert http_get(f"{exporter.url}/healthz", timeout=30)[0] == 200
        assert prom.query('up{job="churn-exporter"} == 1'), "Prometheus cannot scrape it"
        error = next(line for line in page.split("<td>") if problem in line)
        return error.split("</td>")[0], failed_after, fired_after

    def recovers() -> None:
        wait_for(lambda: job_success(exporter.url) == 1.0, DEADLINE, "drift success 1", logs)
        wait_for(no_job_failing_alert, DEADLINE, f"{JOB_FAILING} resolved", logs)

    try:
        # -- 1. a CSV reference with garbage, from the first run on
        csv_config = write_config(tmp_path, model="churn-garbage-csv", reference=garbage_csv)
        started = time.monotonic()
        exporter.start(csv_config, current, timeout=STARTUP)
        csv_error, csv_failed, csv_fired = fails_and_fires(
            f"{garbage_csv}: cannot read: CSV parse error", started
        )
        assert sample(exporter.url, "churn_data_drift_score", model="churn-garbage-csv") is None
        exporter.stop()

        # -- 2. a Parquet reference cut in half under a running exporter
        model = "churn-bad-input"
        parquet_config = write_config(tmp_path, model=model, reference=parquet)
        exporter.start(parquet_config, current, timeout=STARTUP)
        recovers()
        score = sample(exporter.url, "churn_data_drift_score", model=model)
        assert score is not None
        cut = time.monotonic()
        replace_file(parquet, parquet_bytes[: len(parquet_bytes) // 2])
        parquet_error, parquet_failed, parquet_fired = fails_and_fires(
            f"{parquet}: cannot read: Could not open Parquet input source", cut
        )
        assert "Parquet magic bytes not found in footer" in parquet_error
        # the last good values stay exported
        assert sample(exporter.url, "churn_data_drift_score", model=model) == score
        replace_file(parquet, parquet_bytes)
        recovers()

        # -- 3. the current window's schema changes: a column renamed, another removed
        changed = window.rename(columns={"tenure": "tenure_months"}).drop(columns=["Contract"])
        swapped = time.monotonic()
        replace_file(current, csv_bytes(changed))
        schema_error, schema_failed, schema_fired = fails_and_fires(
            f"{current}: missing required column(s): tenure, Contract", swapped
        )
        assert sample(exporter.url, "churn_data_drift_score", model=model) == score
        replace_file(current, csv_bytes(window))
        recovers()
    finally:
        exporter.stop()
        prom.stop()

    expectation = (
        "the drift job fails with a message naming the file and the problem, "
        "churn_exporter_job_success{task=drift} 0, the exporter keeps serving, "
        f"{JOB_FAILING}{{task=drift}} fires in Prometheus"
    )
    for case, error, failed, fired, after, kept in (
        (
            "CSV reference with garbage bytes",
            csv_error,
            csv_failed,
            csv_fired,
            "the exporter started",
            "; no drift values exported (none was ever computed)",
        ),
        (
            "Parquet reference cut in half",
            parquet_error,
            parquet_failed,
            parquet_fired,
            "the file was cut",
            "; last good drift values still exported; recovered (success 1, alert gone) "
            "once the file was restored",
        ),
        (
            "current window schema changed (tenure renamed, Contract removed)",
            schema_error,
            schema_failed,
            schema_fired,
            "the file was replaced",
            "; last good drift values still exported; recovered once the schema was restored",
        ),
    ):
        shown = error.replace(f"{tmp_path}{os.sep}", "")
        reliability.record(
            case,
            "bad input",
            expectation,
            f"job_success 0 {failed:.1f} s after {after}, last error {shown[:200]!r} on the "
            f"landing page and in the log; {JOB_FAILING}{{task=drift}} firing in Prometheus "
            f"{fired:.1f} s after it (for: capped at 2 s); /healthz 200, scrapes kept "
            f"working{kept}",
        )
