"""The custom Prometheus collector: turns the latest snapshots into metric families.

Nothing is computed here. Each scrape reads the store once and yields fresh families,
so a feature that disappears from the snapshot stops being exported, and a scrape never
waits for a job.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.domain.metrics import METRICS
from exporter.domain.model import ModelRef
from exporter.model.studies import StudyProgress
from exporter.monitor.exposition import Fragment
from exporter.monitor.store import JobHealth, SnapshotStore
from exporter.stats.multivariate import MultivariateDrift
from exporter.stats.snapshots import ComparisonSnapshot, DriftSnapshot, PerformanceSnapshot

_SCHEDULED = "Computed on a schedule; the last finished run is served."
_KEEPS = "A failed run keeps the last good values."


def _gauge(name: str, doc: str, labels: Iterable[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, f"{doc} {_SCHEDULED}", labels=list(labels))


def _add(family: GaugeMetricFamily, labels: list[str], value: float | None) -> None:
    """Add a sample unless the value is missing (None or NaN): absent beats fake."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return
    family.add_metric(labels, float(value))


def _per_model(model: str, rows: Iterable[tuple[str, str, float | None]]) -> Iterator[Metric]:
    """One family per (name, doc, value), labelled only ``model``."""
    for name, doc, value in rows:
        family = _gauge(name, doc, ["model"])
        _add(family, [model], value)
        yield family


def drift_families(snap: DriftSnapshot) -> Iterator[Metric]:
    """The data-drift families of the contract (docs/metrics.md)."""
    yield from univariate_drift_families(snap)
    yield from drift_multivariate_families(snap)


def drift_multivariate_families(snap: DriftSnapshot) -> Iterator[Metric]:
    """The multivariate families of a drift snapshot (none when it has no result)."""
    if snap.multivariate is not None:
        yield from multivariate_families(snap.model.name, snap.multivariate)


def univariate_drift_families(snap: DriftSnapshot) -> Iterator[Metric]:
    """The per-feature and dataset drift families (all of `drift_families` but the
    multivariate ones)."""
    model = snap.model.name
    result = snap.result
    per_feature = {
        "churn_feature_drift_ks_statistic": ("Two-sample KS statistic D.", "ks_statistic"),
        "churn_feature_drift_ks_pvalue": ("p-value of the two-sample KS test.", "ks_pvalue"),
        "churn_feature_drift_psi": ("Population stability index.", "psi"),
        "churn_feature_drift_wasserstein": (
            "Wasserstein-1 distance divided by the reference standard deviation.",
            "wasserstein",
        ),
        "churn_feature_drift_jensenshannon": (
            "Jensen-Shannon distance of category frequencies.",
            "jensen_shannon",
        ),
    }
    for name, (doc, attr) in per_feature.items():
        family = _gauge(name, doc, ["model", "feature"])
        for f in result.features:
            _add(family, [model, f.feature], getattr(f, attr))
        yield family

    drifted = _gauge(
        "churn_feature_drifted",
        "1 if the feature's configured test says drift, 0 if not; absent while undecided.",
        ["model", "feature"],
    )
    missing = _gauge(
        "churn_feature_missing_ratio",
        "Share of missing values in the current window.",
        ["model", "feature"],
    )
    bins = _gauge(
        "churn_feature_bin_ratio",
        "Share of rows per PSI bin or category, dataset is reference or current.",
        ["model", "feature", "bin", "dataset"],
    )
    for f in result.features:
        if f.drifted is not None:
            drifted.add_metric([model, f.feature], 1.0 if f.drifted else 0.0)
        total = f.n_current + f.n_nan
        _add(missing, [model, f.feature], f.n_nan / total if total else None)
        for label, ref, cur in zip(f.bins, f.reference_ratios, f.current_ratios, strict=True):
            _add(bins, [model, f.feature, label, "reference"], ref)
            _add(bins, [model, f.feature, label, "current"], cur)
    yield from (drifted, missing, bins)

    per_model: list[tuple[str, str, float | None]] = [
        (
            "churn_data_drift_score",
            "Share of decided features that drifted; absent while the window is too small.",
            result.score,
        ),
        ("churn_data_drift_threshold", "Dataset drift threshold from config.", result.threshold),
        (
            "churn_data_drift_critical_threshold",
            "Dataset drift threshold times the critical multiplier, from config.",
            snap.critical_threshold,
        ),
        (
            "churn_data_drift_min_window_rows",
            "Fewest current rows on which a drift decision is made, from config.",
            snap.min_window_rows,
        ),
        ("churn_window_rows", "Rows in the current window.", result.n_current),
        ("churn_reference_rows", "Rows in the reference.", result.n_reference),
    ]
    yield from _per_model(model, per_model)


def multivariate_families(model: str, mv: MultivariateDrift) -> Iterator[Metric]:
    """Multivariate drift and unusual-row families (exporter.stats.multivariate)."""
    drifted = None if mv.drifted is None else float(mv.drifted)
    per_model: list[tuple[str, str, float | None]] = [
        (
            "churn_multivariate_drift_reconstruction_error",
            "Mean PCA reconstruction error of the window's rows (encoded units).",
            mv.reconstruction_error,
        ),
        (
            "churn_multivariate_drift_reconstruction_error_threshold",
            "Reconstruction error above which the window drifted, from the reference.",
            mv.reconstruction_threshold,
        ),
        (
            "churn_multivariate_drift_domain_auc",
            "Held-out ROC AUC of a classifier telling window rows from reference rows.",
            mv.domain_auc,
        ),
        (
            "churn_multivariate_drift_domain_auc_threshold",
            "Domain classifier AUC above which the window drifted (no-drift bound).",
            mv.domain_auc_threshold,
        ),
        (
            "churn_multivariate_drifted",
            "1 if either multivariate method says drift, 0 if not; absent while undecided.",
            drifted,
        ),
        (
            "churn_unusual_rows_ratio",
            "Share of window rows unlike the reference (error above the per-row cut-off).",
            mv.unusual_ratio,
        ),
        (
            "churn_unusual_rows_ratio_expected",
            "Share of reference-like rows called unusual, from config.",
            mv.unusual_expected,
        ),
        (
            "churn_unusual_rows_ratio_threshold",
            "Unusual-row share above which the window has too many unusual rows.",
            mv.unusual_threshold,
        ),
    ]
    yield from _per_model(model, per_model)


def performance_families(snap: PerformanceSnapshot) -> Iterator[Metric]:
    """Model quality, prediction drift and business families of the contract."""
    model = snap.model.name
    per_metric = (
        ("churn_model_performance", "Realized metric on labelled rows.", snap.realized.values),
        (
            "churn_model_performance_estimated",
            "Metric estimated without labels (confidence-based, calibrated on the reference).",
            snap.estimated.values,
        ),
        (
            "churn_model_performance_baseline",
            "The model's test-set metric from training.",
            snap.baseline,
        ),
        (
            "churn_model_performance_threshold_min",
            "Minimum acceptable metric, from config.",
            snap.minimums,
        ),
    )
    for name, doc, values in per_metric:
        family = _gauge(name, doc, ["model", "metric"])
        for metric in METRICS:
            _add(family, [model, metric], values.get(metric))
        yield family

    per_model: list[tuple[str, str, float | None]] = [
        (
            "churn_model_degradation_threshold",
            "Baseline minus realized metric above which the model counts as degraded.",
            snap.degradation_threshold,
        ),
        (
            "churn_model_labeled_rows",
            "Labelled rows in the performance window.",
            snap.realized.n_rows,
        ),
        (
            "churn_prediction_drift_psi",
            "PSI of the model's scores, current window against reference.",
            snap.prediction_psi,
        ),
        (
            "churn_prediction_drift_ks_statistic",
            "KS statistic of the model's scores, current window against reference.",
            snap.prediction_ks,
        ),
        (
            "churn_prediction_drift_psi_threshold",
            "Prediction drift PSI threshold, from config.",
            snap.prediction_psi_threshold,
        ),
        (
            "churn_prediction_positive_ratio",
            "Share of predicted churners in the current window.",
            snap.positive_ratio,
        ),
        (
            "churn_prediction_reference_positive_ratio",
            "Share of predicted churners in the reference.",
            snap.reference_positive_ratio,
        ),
        (
            "churn_revenue_at_risk",
            "Sum of MonthlyCharges times churn probability over the window, per month.",
            snap.revenue_at_risk,
        ),
    ]
    yield from _per_model(model, per_model)


def comparison_families(snap: ComparisonSnapshot) -> Iterator[Metric]:
    """Champion and challenger on the same customers: per role (label ``role``), the
    paired tests and the agreement. Without a challenger only the thresholds remain."""
    model = snap.model.name
    roles = [q for q in (snap.champion, snap.challenger) if q is not None]
    info = _gauge(
        "churn_comparison_model_info",
        "1 for the model version holding each role (registry alias) in the comparison.",
        ["model", "role", "version"],
    )
    realized = _gauge(
        "churn_comparison_performance",
        "Realized metric of each model on the labelled customers both models scored.",
        ["model", "role", "metric"],
    )
    estimated = _gauge(
        "churn_comparison_performance_estimated",
        "Label-free estimate of each model's metric on the customers both scored.",
        ["model", "role", "metric"],
    )
    psi = _gauge(
        "churn_comparison_prediction_drift_psi",
        "PSI of each model's scores on the customers both scored, against its reference.",
        ["model", "role"],
    )
    for q in roles:
        info.add_metric([model, q.role, q.model.version], 1.0)
        for metric in METRICS:
            _add(realized, [model, q.role, metric], q.realized.values.get(metric))
            _add(estimated, [model, q.role, metric], q.estimated.values.get(metric))
        _add(psi, [model, q.role], q.prediction_psi)
    yield from (info, realized, estimated, psi)

    paired = snap.paired
    per_model: list[tuple[str, str, float | None]] = [
        (
            "churn_comparison_paired_rows",
            "Labelled customers scored by both models (the paired tests' sample).",
            None if paired is None else paired.n_paired,
        ),
        (
            "churn_comparison_auc_difference",
            "Challenger minus champion ROC AUC on the paired rows.",
            None if paired is None else paired.auc_difference,
        ),
        (
            "churn_comparison_auc_difference_pvalue",
            "Two-sided p-value of DeLong's test that both ROC AUCs are equal.",
            None if paired is None else paired.auc_pvalue,
        ),
        (
            "churn_comparison_accuracy_difference",
            "Challenger minus champion accuracy on the paired rows.",
            None if paired is None else paired.accuracy_difference,
        ),
        (
            "churn_comparison_accuracy_difference_pvalue",
            "p-value of McNemar's test that both accuracies are equal.",
            None if paired is None else paired.mcnemar_pvalue,
        ),
        (
            "churn_comparison_agreement_ratio",
            "Share of the window's customers on which both models' decisions agree.",
            snap.agreement_ratio,
        ),
        (
            "churn_comparison_shadowed_rows",
            "Customers of the window scored by both models.",
            snap.shadowed_rows if snap.challenger is not None else None,
        ),
        (
            "churn_comparison_pvalue_threshold",
            "DeLong p-value below which a higher challenger ROC AUC counts, from config.",
            snap.pvalue_threshold,
        ),
        (
            "churn_comparison_min_paired_rows",
            "Paired labelled rows needed before the challenger can count as better.",
            snap.min_paired_rows,
        ),
    ]
    yield from _per_model(model, per_model)


def optuna_families(studies: tuple[StudyProgress, ...]) -> Iterator[Metric]:
    """Study progress: best value, trials by state, numeric best parameters, last trial."""
    best = _gauge("churn_optuna_best_value", "Best objective value of the study.", ["study"])
    trials = _gauge("churn_optuna_trials", "Trials of the study by state.", ["study", "state"])
    params = _gauge(
        "churn_optuna_best_param",
        "Numeric hyperparameters of the study's best trial.",
        ["study", "param"],
    )
    last = _gauge(
        "churn_optuna_last_trial_timestamp_seconds",
        "Unix time at which the study's newest finished trial completed.",
        ["study"],
    )
    for study in studies:
        _add(best, [study.study], study.best_value)
        for state, count in study.trials.items():
            trials.add_metric([study.study, state], count)
        for param, val in sorted(study.best_params.items()):
            _add(params, [study.study, param], val)
        _add(last, [study.study], study.last_trial_timestamp)
    yield from (best, trials, params, last)


def model_families(model: ModelRef) -> Iterator[Metric]:
    """`churn_model_info`: which model version is being monitored."""
    info = GaugeMetricFamily(
        "churn_model_info",
        "1 for the model version being monitored.",
        labels=["model", "version", "run_id"],
    )
    info.add_metric([model.name, model.version, model.run_id], 1.0)
    yield info


def health_families(health: Mapping[str, JobHealth]) -> Iterator[Metric]:
    """The `churn_exporter_job_*` families, one sample per registered job.

    The job is named by the label `task`: `job` is Prometheus' own target label.
    """
    task = ["task"]
    success = GaugeMetricFamily(
        "churn_exporter_job_success",
        f"1 if the job's last run succeeded, 0 if it failed. {_KEEPS}",
        labels=task,
    )
    duration = GaugeMetricFamily(
        "churn_exporter_job_duration_seconds",
        "Duration of the job's last run in seconds.",
        labels=task,
    )
    last = GaugeMetricFamily(
        "churn_exporter_job_last_success_timestamp_seconds",
        "Unix time at which the job last succeeded.",
        labels=task,
    )
    interval = GaugeMetricFamily(
        "churn_exporter_job_interval_seconds",
        "Configured schedule of the job in seconds.",
        labels=task,
    )
    runs = CounterMetricFamily(
        "churn_exporter_job_runs", "Runs of the job since start.", labels=task
    )
    failures = CounterMetricFamily(
        "churn_exporter_job_failures", "Failed runs of the job since start.", labels=task
    )
    for name, h in sorted(health.items()):
        if h.success is not None:
            success.add_metric([name], 1.0 if h.success else 0.0)
        _add(duration, [name], h.duration_seconds)
        _add(last, [name], h.last_success)
        interval.add_metric([name], h.interval_seconds)
        runs.add_metric([name], h.runs)
        failures.add_metric([name], h.failures)
    yield from (success, duration, last, interval, runs, failures)


#: The statuses of a refused push (`POST /ingest`), exported from 0 on: bad body, wrong
#: method, duplicate id, no length, too large, bad rows, log unavailable. (A 401 comes
#: from the web config's auth in front of every path, and is not counted.)
INGEST_REFUSED_STATUSES: tuple[str, ...] = ("400", "405", "409", "411", "413", "422", "503")


def ingest_families(rows: int, refused: Mapping[str, int]) -> Iterator[Metric]:
    """The push endpoint's counters (docs/ingest.md): rows appended to the prediction
    log, and refused requests by HTTP status."""
    ingested = CounterMetricFamily(
        "churn_exporter_ingested_rows",
        "Prediction rows appended to the log through POST /ingest since start.",
    )
    ingested.add_metric([], rows)
    refusals = CounterMetricFamily(
        "churn_exporter_ingest_refused",
        "Requests to POST /ingest refused since start (nothing logged), by HTTP status.",
        labels=["status"],
    )
    for status, count in sorted(refused.items()):
        refusals.add_metric([status], count)
    yield from (ingested, refusals)


#: Job name -> the function that turns its snapshot into families.
FamilyBuilder = Callable[[Any], Iterator[Metric]]
BUILDERS: dict[str, FamilyBuilder] = {
    "drift": drift_families,
    "performance": performance_families,
    "comparison": comparison_families,
    "optuna": optuna_families,
}
#: The builders with streaming on: the streaming job's snapshot (`stream`) gives the
#: per-feature and dataset drift families, refreshed every few seconds; the full drift
#: run (`drift`) only the multivariate ones, which it alone computes. Same names.
STREAMING_BUILDERS: dict[str, FamilyBuilder] = {
    **BUILDERS,
    "drift": drift_multivariate_families,
    "stream": univariate_drift_families,
}


class SnapshotCollector(Collector):
    """Yields the families of every published snapshot plus job health and build info."""

    def __init__(
        self,
        store: SnapshotStore,
        model: Callable[[], ModelRef | None] = lambda: None,
        builders: Mapping[str, FamilyBuilder] | None = None,
    ):
        self.store = store
        self.model = model
        self.builders = dict(BUILDERS if builders is None else builders)

    def collect(self) -> Iterator[Metric]:
        build = GaugeMetricFamily(
            "churn_exporter_build_info",
            "Build information of the churn-monitor exporter; always 1.",
            labels=["version", "python_version"],
        )
        build.add_metric([__version__, platform.python_version()], 1.0)
        yield build
        yield from health_families(self.store.health())
        model = self.model()
        if model is not None:
            yield from model_families(model)
        for job, snapshot in sorted(self.store.snapshots().items()):
            builder = self.builders.get(job)
            # a Fragment came rendered from the worker: the exposition joins it as is
            if builder is not None and not isinstance(snapshot, Fragment):
                yield from builder(snapshot)
