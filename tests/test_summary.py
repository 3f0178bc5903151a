"""The text summary `churn-monitor run` prints (exporter/monitor/summary.py)."""

from __future__ import annotations

from typing import Any

from exporter.domain.model import ModelRef
from exporter.model.studies import StudyProgress
from exporter.monitor.store import SnapshotStore
from exporter.monitor.summary import (
    format_comparison,
    format_drift,
    format_optuna,
    format_performance,
    format_summary,
)
from exporter.stats.decision import DatasetDrift, FeatureDrift
from exporter.stats.paired.comparison import PairedComparison
from exporter.stats.performance import MetricSet
from exporter.stats.snapshots import (
    ComparisonSnapshot,
    DriftSnapshot,
    PerformanceSnapshot,
    RoleQuality,
)

MODEL = ModelRef("churn-model", "3", "abc123")


def feature(name: str, **fields: Any) -> FeatureDrift:
    """A feature result with every statistic missing unless given."""
    defaults: dict[str, Any] = {
        "kind": "numeric",
        "n_current": 500,
        "n_nan": 0,
        "ks_statistic": None,
        "ks_pvalue": None,
        "psi": None,
        "wasserstein": None,
        "jensen_shannon": None,
        "method": "ks",
        "threshold": 0.001,
        "statistic": None,
        "drifted": None,
        "reason": None,
        "bins": (),
        "reference_ratios": (),
        "current_ratios": (),
    }
    return FeatureDrift(feature=name, **(defaults | fields))


def drift_snapshot(result: DatasetDrift) -> DriftSnapshot:
    return DriftSnapshot(
        model=MODEL, result=result, critical_threshold=0.5, min_window_rows=300, taken_at=0.0
    )


TENURE = feature(
    "tenure",
    ks_statistic=0.25,
    ks_pvalue=1.5e-20,
    psi=0.31234,
    wasserstein=0.4,
    statistic=1.5e-20,
    drifted=True,
)
CONTRACT = feature(
    "Contract",
    kind="categorical",
    psi=0.01,
    jensen_shannon=0.05,
    method="jensenshannon",
    threshold=0.1,
    statistic=0.05,
    drifted=False,
)
DECIDED = DatasetDrift(
    features=(TENURE, CONTRACT),
    score=0.5,
    threshold=0.3,
    drifted=True,
    n_current=500,
    n_reference=5000,
    decided=True,
    reason=None,
)


def test_drift_summary_has_a_row_per_feature_and_the_dataset_verdict() -> None:
    lines = format_drift(drift_snapshot(DECIDED)).splitlines()
    assert lines[0] == (
        "Data drift - model churn-model (version 3): 500 current rows against 5000 reference rows"
    )
    assert lines[1].split() == ["feature", "KS", "D", "KS", "p", "PSI", "Wass.", "JS", "drifted"]
    assert lines[2].split() == [
        "tenure",
        "0.2500",
        "1.50e-20",
        "0.3123",
        "0.4000",
        "-",
        "YES",
        "(ks",
        "0.001)",
    ]
    assert lines[3].split() == [
        "Contract",
        "-",
        "-",
        "0.0100",
        "-",
        "0.0500",
        "no",
        "(jensenshannon",
        "0.1)",
    ]
    assert lines[4] == (
        "Dataset drift score 0.50 (threshold 0.30): DRIFT DETECTED; drifted columns: [tenure]"
    )
    assert len(lines) == 5


def test_drift_summary_without_drift_lists_no_column() -> None:
    quiet = DatasetDrift(
        features=(CONTRACT,),
        score=0.0,
        threshold=0.3,
        drifted=False,
        n_current=500,
        n_reference=5000,
        decided=True,
        reason=None,
    )
    last = format_drift(drift_snapshot(quiet)).splitlines()[-1]
    assert last == (
        "Dataset drift score 0.00 (threshold 0.30): no dataset drift; drifted columns: []"
    )


def test_drift_summary_of_an_undecided_window_says_why() -> None:
    reason = "the window has 20 rows, fewer than min_window_rows=300"
    undecided = DatasetDrift(
        features=(feature("tenure", ks_statistic=0.3, reason=reason),),
        score=None,
        threshold=0.3,
        drifted=None,
        n_current=20,
        n_reference=5000,
        decided=False,
        reason=reason,
    )
    lines = format_drift(drift_snapshot(undecided)).splitlines()
    assert lines[2].split()[:7] == ["tenure", "0.3000", "-", "-", "-", "-", "-"]
    assert lines[-1] == f"No drift decision: {reason}"


def performance_snapshot(**fields: Any) -> PerformanceSnapshot:
    defaults: dict[str, Any] = {
        "model": MODEL,
        "realized": MetricSet({"accuracy": 0.7, "recall": 0.52, "roc_auc": 0.8}, 400),
        "estimated": MetricSet({"accuracy": 0.78, "roc_auc": 0.83}, 2000),
        "baseline": {"accuracy": 0.8, "precision": 0.6, "recall": 0.55, "roc_auc": 0.84},
        "minimums": {
            "accuracy": 0.75,
            "precision": 0.5,
            "recall": 0.4,
            "f1": 0.45,
            "roc_auc": 0.7,
        },
        "degradation_threshold": 0.05,
        "window_rows": 2000,
        "prediction_psi": 0.12,
        "prediction_ks": 0.08,
        "prediction_psi_threshold": 0.2,
        "positive_ratio": 0.3,
        "reference_positive_ratio": 0.265,
        "revenue_at_risk": 12345.678,
        "taken_at": 0.0,
    }
    return PerformanceSnapshot(**(defaults | fields))


def test_performance_summary_has_a_row_per_metric_in_contract_order() -> None:
    lines = format_performance(performance_snapshot()).splitlines()
    assert lines[0] == (
        "Model performance - model churn-model (version 3): "
        "400 labelled rows, 2000 rows in the window"
    )
    assert lines[1].split() == ["metric", "realized", "estimated", "baseline", "minimum"]
    rows = [line.split() for line in lines[2:7]]
    assert rows == [
        ["accuracy", "0.7000", "0.7800", "0.8000", "0.7500"],
        ["precision", "-", "-", "0.6000", "0.5000"],
        ["recall", "0.5200", "-", "0.5500", "0.4000"],
        ["f1", "-", "-", "-", "0.4500"],
        ["roc_auc", "0.8000", "0.8300", "0.8400", "0.7000"],
    ]


def test_performance_summary_flags_only_drops_above_the_threshold() -> None:
    lines = format_performance(performance_snapshot()).splitlines()
    # accuracy fell 0.10 (> 0.05): degraded; recall (0.03) and roc_auc (0.04) are not
    assert [line for line in lines if line.startswith("DEGRADED")] == [
        "DEGRADED: accuracy 0.8000 -> 0.7000 (threshold 0.05)"
    ]
    assert lines[-1] == (
        "Prediction drift: PSI 0.1200 (threshold 0.2), KS D 0.0800; predicted churners "
        "30.0% (reference 26.5%); revenue at risk 12,345.68 per month"
    )


def test_performance_summary_shows_why_values_are_missing() -> None:
    snap = performance_snapshot(
        realized=MetricSet({}, 3, "3 labelled rows, fewer than min_labeled_rows=50"),
        estimated=MetricSet({}, 3, "the window has 3 rows, fewer than 300"),
        prediction_psi=None,
        prediction_ks=None,
        positive_ratio=None,
    )
    lines = format_performance(snap).splitlines()
    assert "note: 3 labelled rows, fewer than min_labeled_rows=50" in lines
    assert "note: the window has 3 rows, fewer than 300" in lines
    assert not any(line.startswith("DEGRADED") for line in lines)
    assert lines[-1].startswith(
        "Prediction drift: PSI - (threshold 0.2), KS D -; predicted churners - "
    )


def test_optuna_summary() -> None:
    assert format_optuna(()) == "Optuna: no study in the storage"
    study = StudyProgress(
        study="churn-tuning",
        direction="MAXIMIZE",
        best_value=0.84567,
        trials={"COMPLETE": 8, "PRUNED": 2, "FAIL": 0},
        best_params={"C": 0.5},
        best_categorical={"model": "logreg"},
    )
    assert format_optuna((study,)) == (
        "Optuna study churn-tuning: best 0.8457 after 10 trials; "
        "best parameters {'C': 0.5, 'model': 'logreg'}"
    )


def test_summary_reports_every_job_in_order_and_a_failure_by_its_error() -> None:
    store = SnapshotStore()
    store.register("drift", 60.0)
    store.register("performance", 60.0)
    store.register("optuna", 60.0)
    store.publish("drift", drift_snapshot(DECIDED))
    store.record("drift", ok=True, duration=0.1, at=1.0, error=None)
    store.record("performance", ok=False, duration=0.1, at=1.0, error="no champion")
    store.publish("optuna", ())
    store.record("optuna", ok=True, duration=0.1, at=1.0, error=None)

    parts = format_summary(store).split("\n\n")
    assert parts == [
        format_drift(drift_snapshot(DECIDED)),
        "Job performance FAILED: no champion",
        "Optuna: no study in the storage",
    ]


def comparison_snapshot(paired: PairedComparison | None) -> ComparisonSnapshot:
    def role(name: str, version: str) -> RoleQuality:
        ref = ModelRef("churn-model", version, f"run-{version}")
        return RoleQuality(name, ref, 0.5, MetricSet({}, 0), MetricSet({}, 0), None)

    return ComparisonSnapshot(
        model=MODEL,
        champion=role("champion", "3") if paired else None,
        challenger=role("challenger", "4") if paired else None,
        paired=paired,
        agreement_ratio=0.875 if paired else None,
        shadowed_rows=1200,
        pvalue_threshold=0.01,
        min_paired_rows=500,
        taken_at=0.0,
    )


def test_comparison_summary() -> None:
    assert format_comparison(comparison_snapshot(None)) == (
        "Champion vs challenger - model churn-model: no challenger registered"
    )
    paired = PairedComparison(
        n_paired=640,
        auc_champion=0.79712,
        auc_challenger=0.83751,
        auc_difference=0.04039,
        auc_difference_variance=1e-4,
        auc_pvalue=3.1e-9,
        accuracy_champion=0.75,
        accuracy_challenger=0.78,
        accuracy_difference=0.03,
        mcnemar_pvalue=None,
        agreement_ratio=0.875,
        reason="McNemar: no discordant pairs",
    )
    assert format_comparison(comparison_snapshot(paired)).splitlines() == [
        "Champion vs challenger - model churn-model: version 3 against 4 on 640 labelled "
        "rows both scored (1200 shadowed rows; the tests decide from 500 rows at p < 0.01)",
        "ROC AUC 0.7971 -> 0.8375 (difference +0.0404, DeLong p 3.10e-09); accuracy "
        "0.7500 -> 0.7800 (McNemar p -); decisions agree on 87.5% of the shadowed rows",
        "note: McNemar: no discordant pairs",
    ]


def test_summary_has_a_section_for_every_job_the_pass_runs() -> None:
    store = SnapshotStore()
    for job in ("drift", "performance", "comparison", "optuna"):
        store.register(job, 60.0)
        store.record(job, ok=True, duration=0.1, at=1.0, error=None)
    store.publish("drift", drift_snapshot(DECIDED))
    store.publish("comparison", comparison_snapshot(None))
    store.publish("optuna", ())
    store.record("performance", ok=False, duration=0.1, at=1.0, error="no champion")
    assert format_summary(store).split("\n\n")[2] == format_comparison(comparison_snapshot(None))
