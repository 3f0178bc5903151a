"""The HTML reports from real monitoring runs on the `sudden` scenario: a trained
champion, two passes over labelled windows (drift, performance, history), alerts in the
history. The run report and the period report (`churn-monitor report`) must show the
JSON reports' numbers, name the drifted features, and stay small and self-contained."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import contingency

from exporter.data import synthetic
from exporter.domain.metrics import METRICS
from exporter.monitor.reports import html_path, prune_reports, write_report
from exporter.monitor.wiring import build_monitor
from exporter.report.associations import associations, correlation_ratio, cramers_v
from exporter.report.render import number, percent, pvalue

from .report_fixtures import Page, Passes, monitored_passes
from .support import churn_monitor

pytestmark = pytest.mark.slow

#: Seconds a `churn-monitor report` process may take (imports pandas, MLflow, matplotlib).
DEADLINE = 180.0
MAX_BYTES = 2_000_000


@pytest.fixture(scope="module")
def passes(tmp_path_factory: pytest.TempPathFactory) -> Passes:
    return monitored_passes(tmp_path_factory.mktemp("html"))


def self_contained(html: str) -> None:
    """No script, nothing fetched (no http(s) URL in src/href), ids unique, small."""
    assert len(html.encode()) < MAX_BYTES
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html, re.IGNORECASE)
    ids = Page(html).ids
    assert len(ids) == len(set(ids)), [i for i in set(ids) if ids.count(i) > 1]


def test_each_pass_wrote_its_html_beside_its_json(passes: Passes) -> None:
    assert len(passes.drift) == 2 and len(passes.performance) == 2
    for report in passes.drift:
        assert html_path(report).exists()
    assert not list(passes.drift[0].parent.glob("*.tmp"))


def test_in_continuous_mode_a_job_writes_the_page_a_run_lacks(passes: Passes) -> None:
    monitor = build_monitor(passes.config, continuous=True)
    assert monitor.run_report is None
    (job,) = [job for job in monitor.streams if job.name == "report"]
    page = html_path(passes.drift[1])
    page.unlink()
    assert job.run() == page
    assert Page(page.read_text(encoding="utf-8")).words("drift-score") == number(
        passes.json("drift", 1)["drift_score"]
    )
    assert job.run() is None  # nothing new to report


def test_the_run_report_shows_the_drift_json(passes: Passes) -> None:
    drift = passes.json("drift", 1)
    html = passes.html(1)
    self_contained(html)
    page = Page(html)

    assert drift["dataset_drift"] is True and len(drift["drifted_columns"]) >= 3
    assert page.words("drift-score") == number(drift["drift_score"])
    assert "drift" in page.words("dataset-drift").split()
    named = page.words("drifted-features")
    listed = named.split(")", 1)[1].replace(",", " ").split()
    assert listed == drift["drifted_columns"]
    assert f"{len(drift['drifted_columns'])} of {len(drift['features'])}" in named

    for feature in drift["features"]:
        name = feature["feature"]
        words = page.words(f"feature-{name}")
        assert words.startswith(f"{name} {'drift' if feature['drifted'] else 'no drift'}")
        for key, shown in (
            ("ks_statistic", number),
            ("ks_pvalue", pvalue),
            ("psi", number),
            ("wasserstein", number),
            ("jensen_shannon", number),
        ):
            if feature[key] is not None:
                assert shown(feature[key]) in words, (name, key)
        assert f"{feature['n_current']} / {feature['n_nan']}" in words
    mv = drift["multivariate"]
    assert number(mv["domain_auc"]) in page.words("multivariate")


def test_the_run_report_shows_the_performance_json(passes: Passes) -> None:
    perf = passes.json("performance", 1)
    page = Page(passes.html(1))
    rows = {row[0]: row[1:] for row in page.rows("performance")}
    assert list(rows) == list(METRICS)
    for metric in METRICS:
        expected = [
            number(perf[column].get(metric))
            for column in ("realized", "estimated", "baseline", "minimums", "degradation")
        ]
        assert rows[metric] == expected, metric
    assert perf["realized"]["roc_auc"] is not None  # the window's labels were used
    assert page.words("revenue-at-risk").split()[3] == f"{perf['revenue_at_risk']:,.2f}"
    assert percent(perf["positive_ratio"]) in page.words("predicted-churners")
    assert number(perf["prediction_drift"]["psi"]) in page.words("prediction-drift")
    target = {row[0]: row[1:] for row in page.rows("target")}
    assert target["predicted to churn"] == [
        percent(perf["reference_positive_ratio"]),
        percent(perf["positive_ratio"]),
    ]
    window = pd.read_csv(passes.config.data.current.path)
    churned = (window["Churn"] == "Yes").mean()
    assert target["churned (labels)"][1] == f"{percent(churned)} of {len(window)} labelled"


def test_the_run_report_lists_the_alerts_firing_when_it_ran(passes: Passes) -> None:
    first, second = Page(passes.html(0)), Page(passes.html(1))
    assert first.words("alerts") == "No alert was firing."
    rows = second.rows("alerts")
    # The warning fired and resolved before the second run: only the critical fires.
    assert [row[:3] for row in rows] == [["ChurnDataDriftDetected", "critical", "DATA_DRIFT"]]
    assert rows[0][4] == "ChurnDataDriftDetected summary text"


def test_the_data_analysis_has_overview_correlations_and_changes(passes: Passes) -> None:
    page = Page(passes.html(1))
    overview = {row[0]: row for row in page.rows("overview")}
    features = (*passes.config.features.numeric, *passes.config.features.categorical)
    assert list(overview) == list(features)
    window = pd.read_csv(passes.config.data.current.path)
    assert overview["TotalCharges"][4] == str(int(window["TotalCharges"].isna().sum()))
    changes = page.rows("correlation-changes")
    assert len(changes) == 5
    deltas = [abs(float(row[3])) for row in changes]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0.05
    assert len(re.findall(r"<svg\b", passes.html(1))) == len(features) + 4


def test_report_since_renders_the_period_from_the_history(passes: Passes, tmp_path: Path) -> None:
    out = tmp_path / "period.html"
    proc = subprocess.run(
        churn_monitor("report", "--since", "24", "--out", str(out)),
        env={**os.environ, "CHURN_MONITOR_CONFIG": config_file(passes, tmp_path)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(out))
    html = out.read_text(encoding="utf-8")
    self_contained(html)
    page = Page(html)
    drifts = [passes.json("drift", i) for i in range(2)]
    assert page.words("runs") == "2"
    assert page.words("drifted-runs") == str(sum(d["dataset_drift"] for d in drifts))
    runs = page.rows("drift-runs")  # newest first
    for row, drift in zip(runs, reversed(drifts), strict=True):
        assert row[2:] == [
            str(drift["n_current"]),
            number(drift["drift_score"]),
            number(drift["drift_threshold"]),
            ", ".join(drift["drifted_columns"]),
        ]
    counts = dict(page.rows("drift-counts"))
    for feature in drifts[1]["drifted_columns"]:
        expected = sum(feature in d["drifted_columns"] for d in drifts)
        assert counts[feature] == f"{expected} of 2"
    assert sorted(row[:3] for row in page.rows("alert-counts")) == [
        ["ChurnDataDriftDetected", "critical", "1"],
        ["ChurnPredictionDrift", "warning", "1"],
    ]
    assert len(re.findall(r"<svg\b", html)) == 3  # scores, decisions, performance


def test_report_run_rewrites_the_last_runs_html(passes: Passes, tmp_path: Path) -> None:
    target = html_path(passes.drift[1])
    before = target.stat().st_mtime_ns
    proc = subprocess.run(
        churn_monitor("report", "--run"),
        env={**os.environ, "CHURN_MONITOR_CONFIG": config_file(passes, tmp_path)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(str(target))
    assert target.stat().st_mtime_ns > before
    page = Page(target.read_text(encoding="utf-8"))
    assert page.words("drift-score") == number(passes.json("drift", 1)["drift_score"])


def config_file(passes: Passes, tmp_path: Path) -> str:
    """The passes' config as a YAML file for a `churn-monitor` process."""
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(passes.config.model_dump(mode="json")))
    return str(path)


@pytest.mark.parametrize(
    ("args", "config", "code", "message"),
    [
        (("report",), {}, 2, "one of the arguments --run --since is required"),
        (("report", "--since", "0"), {}, 2, "--since: must be greater than 0"),
        (("report", "--since", "5"), {"history": {"enabled": False}}, 2, "history.enabled"),
        (("report", "--run"), {}, 1, "no drift report in"),
    ],
)
def test_report_errors(
    tmp_path: Path, args: tuple[str, ...], config: dict, code: int, message: str
) -> None:
    import yaml

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.run(
        churn_monitor(*args, "--config", "config.yaml"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert proc.returncode == code, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not list(tmp_path.glob("reports/*.html"))


# --------------------------------------------------------------------------- pieces


def test_retention_prunes_the_html_with_its_json(tmp_path: Path) -> None:
    now = time.time()
    old = write_report(tmp_path, "drift", {"n": 1}, now - 40 * 86400)
    html_path(old).write_text("<html></html>")
    for path in (old, html_path(old)):
        os.utime(path, (now - 40 * 86400, now - 40 * 86400))
    fresh = write_report(tmp_path, "drift", {"n": 2}, now)
    html_path(fresh).write_text("<html></html>")
    # An HTML temp file may be a page being written by the report job right now: kept
    # until it is as old as the retention.
    writing = fresh.parent / ".html-drift_report_b.tmp"
    writing.write_text("<html")
    crashed = fresh.parent / ".html-drift_report_a.tmp"
    crashed.write_text("<html")
    os.utime(crashed, (now - 40 * 86400, now - 40 * 86400))
    removed = prune_reports(tmp_path, "drift", retention_days=30, now=now)
    assert sorted(removed) == sorted([old, html_path(old), crashed])
    assert fresh.exists() and html_path(fresh).exists() and writing.exists()


def test_associations_against_scipy_and_hand_computed_values() -> None:
    frame = synthetic.generate_customers(1500, seed=11)
    matrix = associations(frame, ["tenure", "TotalCharges"], ["Contract", "PaymentMethod"])
    at = {f: i for i, f in enumerate(matrix.features)}
    both = frame[["tenure", "TotalCharges"]].dropna()
    r = np.corrcoef(both["tenure"], both["TotalCharges"])[0, 1]
    assert matrix.values[at["tenure"], at["TotalCharges"]] == pytest.approx(abs(r))
    table = pd.crosstab(frame["Contract"], frame["PaymentMethod"]).to_numpy()
    expected_v = contingency.association(table, method="cramer", correction=False)
    assert matrix.values[at["Contract"], at["PaymentMethod"]] == pytest.approx(expected_v)
    assert np.allclose(matrix.values, matrix.values.T) and np.all(np.diag(matrix.values) == 1)
    # eta by hand: groups {a: 1, 3}, {b: 5}; mean 3; between 2*(2-3)^2 + (5-3)^2 = 6;
    # total (1-3)^2 + 0 + (5-3)^2 = 8; eta = sqrt(6/8).
    groups = np.array(["a", "a", "b"])
    assert correlation_ratio(groups, np.array([1.0, 3.0, 5.0])) == pytest.approx(np.sqrt(0.75))
    assert np.isnan(correlation_ratio(np.array(["a", "a"]), np.array([1.0, 2.0])))
    assert np.isnan(cramers_v(np.array(["x", "x", "x"]), np.array(["p", "q", "p"])))
