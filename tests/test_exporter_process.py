"""`churn-monitor run --mode continuous` as a real process, scraped over HTTP."""

from __future__ import annotations

import math
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import load_config
from exporter.data.loader import load_customers
from exporter.stats import drift
from exporter.stats.decision import assess
from exporter.stats.multivariate import assess_multivariate, fit_multivariate

from .support import Process, churn_monitor, free_port, http_get, wait_until

pytestmark = pytest.mark.integration

#: Deadline for the exporter to get ready (it imports pandas, scipy and MLflow, then runs
#: the drift job once); generous for a busy machine.
STARTUP = 180.0
#: Deadline of the other waits: a job run, a stop.
DEADLINE = 60.0
DRIFT_FAMILIES = (
    "churn_feature_drift_ks_statistic",
    "churn_feature_drift_ks_pvalue",
    "churn_feature_drift_psi",
    "churn_feature_drift_wasserstein",
    "churn_feature_drift_jensenshannon",
    "churn_feature_drifted",
    "churn_data_drift_score",
    "churn_data_drift_threshold",
    "churn_data_drift_critical_threshold",
    "churn_window_rows",
    "churn_reference_rows",
    "churn_model_info",
    "churn_exporter_job_success",
    "churn_exporter_job_duration_seconds",
    "churn_exporter_job_last_success_timestamp_seconds",
    "churn_exporter_build_info",
)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """All samples of one scrape keyed by (name, sorted labels)."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


DRIFT_ONLY = """
performance_monitoring: {enabled: false}
optuna: {enabled: false}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh folder after `churn-monitor setup`: synthetic reference and demo window.

    No model is trained here, so only the drift job runs.
    """
    path = tmp_path_factory.mktemp("exporter")
    config = path / "configs/monitoring/monitoring_config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(DRIFT_ONLY)
    subprocess.run(
        churn_monitor("setup"), cwd=path, check=True, capture_output=True, timeout=STARTUP
    )
    return path


@pytest.fixture
def exporter(workdir: Path, tmp_path: Path):
    """A continuous exporter on a free port reading a copy of the drifting demo window."""
    current = tmp_path / "current.csv"
    shutil.copy(workdir / "data/demo/current.csv", current)
    port = free_port()
    proc = Process(
        churn_monitor(
            "run",
            "--mode",
            "continuous",
            "--port",
            str(port),
            "--interval",
            "0.01",
            "--current",
            str(current),
        ),
        tmp_path / "exporter.log",
        cwd=workdir,
    )
    try:
        yield proc, port, current
    finally:
        proc.stop()


def test_scrape_has_every_drift_family_equal_to_the_statistics(exporter, workdir: Path) -> None:
    _proc, port, current = exporter
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, STARTUP, "ready")
    samples = scrape(port)
    names = {name for name, _ in samples}
    for family in DRIFT_FAMILIES:
        assert family in names, f"{family} missing from the scrape"

    config = load_config(workdir / "configs/monitoring/monitoring_config.yaml")
    reference = load_customers(workdir / config.data.reference_path).frame
    profile = drift.build_profile(
        reference,
        config.features.numeric,
        config.features.categorical,
        psi_bins=config.data_drift_monitoring.psi_bins,
    )
    expected = assess(
        profile,
        load_customers(current).frame,
        drift_threshold=config.data_drift_monitoring.drift_threshold,
        min_window_rows=config.data_drift_monitoring.min_window_rows,
    )
    model = config.model.name
    assert expected.drifted is True  # the demo window is the `sudden` shift
    assert value(samples, "churn_data_drift_score", model=model) == pytest.approx(expected.score)
    assert value(samples, "churn_window_rows", model=model) == expected.n_current
    assert value(samples, "churn_reference_rows", model=model) == expected.n_reference
    for f in expected.features:
        labels = {"model": model, "feature": f.feature}
        for family, attr in (
            ("churn_feature_drift_ks_statistic", "ks_statistic"),
            ("churn_feature_drift_ks_pvalue", "ks_pvalue"),
            ("churn_feature_drift_psi", "psi"),
            ("churn_feature_drift_wasserstein", "wasserstein"),
            ("churn_feature_drift_jensenshannon", "jensen_shannon"),
        ):
            want = getattr(f, attr)
            got = value(samples, family, **labels)
            if want is None or math.isnan(want):
                assert got is None, (family, f.feature)
            else:
                assert got == pytest.approx(want, rel=1e-12, abs=1e-300), (family, f.feature)
        assert value(samples, "churn_feature_drifted", **labels) == float(f.drifted)
    assert value(samples, "churn_exporter_job_success", task="drift") == 1.0

    mv_config = config.data_drift_monitoring.multivariate
    joint = assess_multivariate(
        fit_multivariate(
            reference,
            config.features.numeric,
            config.features.categorical,
            variance_share=mv_config.variance_share,
            unusual_rate=mv_config.unusual_rate,
        ),
        load_customers(current).frame,
        min_window_rows=config.data_drift_monitoring.min_window_rows,
        false_alarm_rate=mv_config.false_alarm_rate,
        max_rows=mv_config.domain_classifier_max_rows,
    )
    assert joint.drifted is True  # the sudden shift moves the joint distribution too
    for family, want in (
        ("churn_multivariate_drift_reconstruction_error", joint.reconstruction_error),
        ("churn_multivariate_drift_reconstruction_error_threshold", joint.reconstruction_threshold),
        ("churn_multivariate_drift_domain_auc", joint.domain_auc),
        ("churn_multivariate_drift_domain_auc_threshold", joint.domain_auc_threshold),
        ("churn_multivariate_drifted", 1.0),
        ("churn_unusual_rows_ratio", joint.unusual_ratio),
        ("churn_unusual_rows_ratio_expected", mv_config.unusual_rate),
        ("churn_unusual_rows_ratio_threshold", joint.unusual_threshold),
    ):
        assert value(samples, family, model=model) == pytest.approx(want, rel=1e-9), family


def test_ready_only_after_the_first_snapshot(exporter) -> None:
    _proc, port, _ = exporter
    seen_ready = False

    def check() -> bool:
        nonlocal seen_ready
        status, _ = http_get(f"http://127.0.0.1:{port}/ready")
        if status == 200:
            # ready implies the drift snapshot is being served
            assert "churn_data_drift_score" in {n for n, _ in scrape(port)}
            seen_ready = True
        else:
            assert status == 503
        return seen_ready

    wait_until(check, STARTUP, "ready")


def test_promtool_check_metrics_reports_nothing(exporter, require_binary) -> None:
    promtool = require_binary("promtool")
    _, port, _ = exporter
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, STARTUP, "ready")
    _, body = http_get(f"http://127.0.0.1:{port}/metrics")
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "" and proc.stderr.strip() == "", (
        proc.stdout + proc.stderr
    )


def test_source_disappears_then_returns(exporter) -> None:
    proc, port, current = exporter
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, STARTUP, "ready")
    good = scrape(port)
    backup = current.with_suffix(".bak")
    current.rename(backup)

    def failing():
        s = scrape(port)
        return s if value(s, "churn_exporter_job_success", task="drift") == 0.0 else None

    bad = wait_until(failing, DEADLINE, "drift job failure")
    assert proc.alive()
    assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200
    for key in good:
        name = key[0]
        if name.startswith(("churn_feature_", "churn_data_drift_", "churn_window_")):
            assert bad[key] == good[key], key  # last good values kept
    last_ok = value(bad, "churn_exporter_job_last_success_timestamp_seconds", task="drift")
    wait_until(
        lambda: value(scrape(port), "churn_exporter_job_failures_total", task="drift") >= 2,
        DEADLINE,
        "a second failed run",
    )
    assert (
        value(scrape(port), "churn_exporter_job_last_success_timestamp_seconds", task="drift")
        == last_ok
    )

    backup.rename(current)
    wait_until(
        lambda: value(scrape(port), "churn_exporter_job_success", task="drift") == 1.0,
        DEADLINE,
        "recovery",
    )
    recovered = scrape(port)
    assert (
        value(recovered, "churn_exporter_job_last_success_timestamp_seconds", task="drift")
        > last_ok
    )
    # the failure was logged in one line naming the job and the missing file
    assert "ERROR exporter.monitor.jobs: job drift failed after" in proc.output()
    assert "Traceback" not in proc.output()  # at DEBUG only


def test_sigterm_stops_cleanly_with_exit_status_0(exporter) -> None:
    """SIGTERM makes the running exporter stop its scheduler and server and exit 0.
    How fast is not asserted here (timings belong in benchmarks/)."""
    proc, port, _ = exporter
    wait_until(lambda: http_get(f"http://127.0.0.1:{port}/ready")[0] == 200, STARTUP, "ready")
    proc.signal(signal.SIGTERM)
    try:
        code = proc.popen.wait(DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the exporter still ran {DEADLINE:.0f} s after SIGTERM:\n{proc.output()}")
    output = proc.output()
    assert code == 0, output
    assert "stopping: scheduler and server" in output, output
