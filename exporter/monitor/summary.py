"""The human-readable summary `churn-monitor run` prints after one pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from exporter.domain.metrics import METRICS
from exporter.model.studies import StudyProgress
from exporter.monitor.store import SnapshotStore
from exporter.stats.multivariate import MultivariateDrift
from exporter.stats.performance import degradation
from exporter.stats.snapshots import ComparisonSnapshot, DriftSnapshot, PerformanceSnapshot


def _num(value: float | None, fmt: str = ".4f") -> str:
    return "-" if value is None else format(value, fmt)


def format_drift(snap: DriftSnapshot) -> str:
    """Per feature KS D and p, PSI, Wasserstein, JS, drifted; then the dataset verdict."""
    r = snap.result
    lines = [
        f"Data drift - model {snap.model.name} (version {snap.model.version}): "
        f"{r.n_current} current rows against {r.n_reference} reference rows",
        f"{'feature':<18} {'KS D':>8} {'KS p':>10} {'PSI':>8} {'Wass.':>8} {'JS':>8}  drifted",
    ]
    for f in r.features:
        verdict = "-" if f.drifted is None else ("YES" if f.drifted else "no")
        lines.append(
            f"{f.feature:<18} {_num(f.ks_statistic):>8} {_num(f.ks_pvalue, '.2e'):>10} "
            f"{_num(f.psi):>8} {_num(f.wasserstein):>8} {_num(f.jensen_shannon):>8}  "
            f"{verdict} ({f.method} {f.threshold:g})"
        )
    drifted = [f.feature for f in r.features if f.drifted]
    if r.decided:
        state = "DRIFT DETECTED" if r.drifted else "no dataset drift"
        lines.append(
            f"Dataset drift score {r.score:.2f} (threshold {r.threshold:.2f}): {state}; "
            f"drifted columns: [{', '.join(drifted)}]"
        )
    else:
        lines.append(f"No drift decision: {r.reason}")
    if snap.multivariate is not None:
        lines.extend(_multivariate_lines(snap.multivariate))
    return "\n".join(lines)


def _multivariate_lines(mv: MultivariateDrift) -> list[str]:
    """The two multivariate statistics with their bounds, the verdict, unusual rows."""
    if mv.drifted is None:
        verdict = f"no decision ({mv.reason})"
    else:
        verdict = "DRIFT DETECTED" if mv.drifted else "no multivariate drift"
    unusual = "-" if mv.unusual_ratio is None else f"{mv.unusual_ratio:.2%}"
    bound = "-" if mv.unusual_threshold is None else f"{mv.unusual_threshold:.2%}"
    return [
        f"Multivariate: reconstruction error {_num(mv.reconstruction_error)} "
        f"(threshold {_num(mv.reconstruction_threshold)}), domain classifier AUC "
        f"{_num(mv.domain_auc)} (threshold {_num(mv.domain_auc_threshold)}): {verdict}",
        f"Unusual rows: {unusual} (expected {mv.unusual_expected:.2%}, threshold {bound})",
    ]


def format_performance(snap: PerformanceSnapshot) -> str:
    """Realized, estimated, baseline and minimum per metric; prediction drift; business."""
    lines = [
        f"Model performance - model {snap.model.name} (version {snap.model.version}): "
        f"{snap.realized.n_rows} labelled rows, {snap.window_rows} rows in the window",
        f"{'metric':<10} {'realized':>9} {'estimated':>10} {'baseline':>9} {'minimum':>8}",
    ]
    for metric in METRICS:
        lines.append(
            f"{metric:<10} {_num(snap.realized.values.get(metric)):>9} "
            f"{_num(snap.estimated.values.get(metric)):>10} "
            f"{_num(snap.baseline.get(metric)):>9} {_num(snap.minimums.get(metric)):>8}"
        )
    for note in (snap.realized.reason, snap.estimated.reason):
        if note:
            lines.append(f"note: {note}")
    for metric, drop in degradation(snap.baseline, snap.realized.values).items():
        if drop > snap.degradation_threshold:
            lines.append(
                f"DEGRADED: {metric} {snap.baseline[metric]:.4f} -> "
                f"{snap.realized.values[metric]:.4f} (threshold {snap.degradation_threshold})"
            )
    lines.append(
        f"Prediction drift: PSI {_num(snap.prediction_psi)} "
        f"(threshold {snap.prediction_psi_threshold:g}), KS D {_num(snap.prediction_ks)}; "
        f"predicted churners {_num(snap.positive_ratio, '.1%')} "
        f"(reference {_num(snap.reference_positive_ratio, '.1%')}); "
        f"revenue at risk {snap.revenue_at_risk:,.2f} per month"
    )
    return "\n".join(lines)


def format_optuna(studies: tuple[StudyProgress, ...]) -> str:
    """One line per study: best value, trials, best parameters."""
    if not studies:
        return "Optuna: no study in the storage"
    return "\n".join(
        f"Optuna study {s.study}: best {_num(s.best_value)} after {s.n_trials} trials; "
        f"best parameters {dict(s.best_params) | dict(s.best_categorical)}"
        for s in studies
    )


def format_comparison(snap: ComparisonSnapshot) -> str:
    """Champion against challenger on the labelled rows both scored: ROC AUC with
    DeLong's p-value, accuracy with McNemar's, and the decisions' agreement."""
    if snap.challenger is None or snap.champion is None or snap.paired is None:
        return f"Champion vs challenger - model {snap.model.name}: no challenger registered"
    p = snap.paired
    lines = [
        f"Champion vs challenger - model {snap.model.name}: version "
        f"{snap.champion.model.version} against {snap.challenger.model.version} on "
        f"{p.n_paired} labelled rows both scored ({snap.shadowed_rows} shadowed rows; "
        f"the tests decide from {snap.min_paired_rows} rows at p < {snap.pvalue_threshold:g})",
        f"ROC AUC {_num(p.auc_champion)} -> {_num(p.auc_challenger)} "
        f"(difference {_num(p.auc_difference, '+.4f')}, DeLong p {_num(p.auc_pvalue, '.2e')}); "
        f"accuracy {_num(p.accuracy_champion)} -> {_num(p.accuracy_challenger)} "
        f"(McNemar p {_num(p.mcnemar_pvalue, '.2e')}); "
        f"decisions agree on {_num(snap.agreement_ratio, '.1%')} of the shadowed rows",
    ]
    if p.reason:
        lines.append(f"note: {p.reason}")
    return "\n".join(lines)


_FORMATTERS: dict[str, Callable[[Any], str]] = {
    "drift": format_drift,
    "performance": format_performance,
    "comparison": format_comparison,
    "optuna": format_optuna,
}


def format_summary(store: SnapshotStore) -> str:
    """Every job's outcome; snapshots of successful jobs in detail."""
    parts: list[str] = []
    snapshots = store.snapshots()
    for job, health in store.health().items():
        if not health.success:
            parts.append(f"Job {job} FAILED: {health.last_error}")
        else:
            parts.append(_FORMATTERS[job](snapshots[job]))
    return "\n\n".join(parts)
