"""Churn – Model Performance (uid ``churn-model-performance``): is the model still as
good as at training time, with labels (realized) and without (estimated)?"""

from __future__ import annotations

from typing import Any

from .common import (
    BLUE,
    GREEN,
    GREY,
    METRIC_TITLES,
    METRICS,
    NOISE_COLUMNS,
    ORANGE,
    PURPLE,
    RED,
    UID_DATA_DRIFT,
    UID_MODEL_PERFORMANCE,
    UID_SERVICE,
    cell_background,
    dashboard,
    finalize,
    fixed_colour,
    link_to,
    model_variable,
    organize,
    prop,
    query,
    reference_line,
    row,
    stat,
    steps,
    table,
    thresholds_json,
    timeseries,
    transform,
)

M = 'model="$model"'


def _metric_panel(metric: str, span: int) -> Any:
    name = METRIC_TITLES[metric]
    mm = f'{M}, metric="{metric}"'
    return (
        timeseries(
            name,
            f"{name} of the monitored model. Realized: measured on the labelled rows of the "
            "performance window (absent until performance_monitoring.min_labeled_rows labels "
            "arrived). Estimated: the label-free, confidence-based estimate, available at "
            "once. Baseline: the test-set value from training. Degradation limit: baseline "
            "minus the configured degradation_threshold; realized below it fires "
            "ChurnModelDegradation. Minimum: the configured floor; realized below it fires "
            "ChurnModelThresholdBreach (critical), estimated below it "
            "ChurnEstimatedPerformanceDrop.",
            [
                query(f"churn_model_performance{{{mm}}}", "realized", ref="A"),
                query(f"churn_model_performance_estimated{{{mm}}}", "estimated", ref="B"),
                query(f"churn_model_performance_baseline{{{mm}}}", "baseline", ref="C"),
                query(
                    f"churn_model_performance_baseline{{{mm}}}"
                    f" - on (model) group_left churn_model_degradation_threshold{{{M}}}",
                    "degradation limit",
                    ref="D",
                ),
                query(f"churn_model_performance_threshold_min{{{mm}}}", "minimum", ref="E"),
            ],
            unit="percentunit",
            max_value=1,
            span=span,
            height=8,
            legend_calcs=("lastNotNull",),
        )
        .override_by_name("realized", [fixed_colour(BLUE), prop("custom.lineWidth", 3)])
        .override_by_name(
            "estimated",
            [fixed_colour(PURPLE), prop("custom.lineStyle", {"fill": "dot", "dash": [0, 10]})],
        )
        .override_by_name("baseline", reference_line(GREEN))
        .override_by_name("degradation limit", reference_line(ORANGE))
        .override_by_name("minimum", reference_line(RED))
    )


def _summary_row(builder: Any) -> Any:
    breaches = (
        f"count(churn_model_performance{{{M}}}"
        " < on (model, metric) churn_model_performance_threshold_min) or vector(0)"
    )
    estimated_breaches = (
        f"count(churn_model_performance_estimated{{{M}}}"
        " < on (model, metric) churn_model_performance_threshold_min) or vector(0)"
    )
    info = table(
        "Monitored model version",
        "The registered model version the exporter evaluates (churn_model_info): MLflow "
        "version and run id. When it changes, baselines and thresholds start over for the "
        "new version.",
        [query(f"churn_model_info{{{M}}}", ref="A", table=True)],
        transformations=[
            organize(
                exclude=("Time", "__name__", "instance", "job", "Value"),
                order=("model", "version", "run_id"),
            )
        ],
        span=8,
        height=4,
    )
    return (
        builder.with_row(row("Summary"))
        .with_panel(info)
        .with_panel(
            stat(
                "Metrics below minimum (realized)",
                "How many of the five realized metrics are below their configured minimum now "
                "(each one is a ChurnModelThresholdBreach alert after 5 minutes). 0 is good.",
                [query(breaches, "breaches", instant=True)],
                thresholds=steps((None, GREEN), (1, RED)),
                span=4,
            )
        )
        .with_panel(
            stat(
                "Metrics below minimum (estimated)",
                "How many of the label-free estimates are below their configured minimum "
                "(ChurnEstimatedPerformanceDrop). An early warning while labels are missing.",
                [query(estimated_breaches, "breaches", instant=True)],
                thresholds=steps((None, GREEN), (1, ORANGE)),
                span=4,
            )
        )
        .with_panel(
            stat(
                "Labelled rows",
                "Predictions in the performance window whose true outcome is known (sent to "
                "/feedback). Realized metrics need performance_monitoring.min_labeled_rows of "
                "them (100 by default): fewer, and only the estimates are shown.",
                [query(f"churn_model_labeled_rows{{{M}}}", "labelled rows", instant=True)],
                unit="short",
                thresholds=steps((None, ORANGE), (100, GREEN)),
                span=4,
                graph=True,
            )
        )
        .with_panel(
            stat(
                "Revenue at risk",
                "Σ MonthlyCharges × P(churn) over the current window: the monthly revenue of "
                "the customers the model expects to leave, weighted by how sure it is. A "
                "business number, not a model-health one; a sudden jump with prediction drift "
                "may be the model, not the customers.",
                [query(f"churn_revenue_at_risk{{{M}}}", "revenue at risk", instant=True)],
                unit="currencyUSD",
                thresholds=steps((None, BLUE)),
                span=4,
                graph=True,
            )
        )
    )


def _degradation_table() -> Any:
    families = (
        ("churn_model_performance", "Realized"),
        ("churn_model_performance_estimated", "Estimated"),
        ("churn_model_performance_baseline", "Baseline"),
        ("churn_model_performance_threshold_min", "Minimum"),
        ("churn:model_performance:degradation", "Drop vs baseline"),
        ("churn:model_performance:degradation_ratio", "Drop vs baseline (relative)"),
        ("churn:model_performance_estimated:degradation", "Estimated drop vs baseline"),
        ("churn:model_performance:threshold_margin", "Margin over minimum"),
    )
    targets = [
        query(f"{family}{{{M}}}", ref=chr(ord("A") + i), table=True)
        for i, (family, _title) in enumerate(families)
    ]
    rename = {f"Value #{chr(ord('A') + i)}": title for i, (_f, title) in enumerate(families)}
    panel = table(
        "Metrics against baseline and minimum",
        "One row per metric, from the last performance run. Drop vs baseline = baseline − "
        "realized (positive is worse; above the degradation_threshold, 0.05 by default, "
        "ChurnModelDegradation fires), also relative to the baseline, and the same drop "
        "for the label-free estimate (available before labels arrive). Margin over minimum = "
        "realized − configured minimum (negative is a breach). Uses the churn:model_"
        "performance:* recording rules; realized columns stay empty until enough labels "
        "arrived.",
        targets,
        transformations=[
            transform("merge", {}),
            organize(exclude=NOISE_COLUMNS, order=["metric", *rename], rename=rename),
        ],
        span=24,
        height=7,
        unit="percentunit",
    )
    panel = panel.override_by_name(
        "Drop vs baseline",
        [
            prop("thresholds", thresholds_json((None, GREEN), (0.02, ORANGE), (0.05, RED))),
            cell_background(),
        ],
    )
    panel = panel.override_by_name(
        "Drop vs baseline (relative)",
        [
            prop("thresholds", thresholds_json((None, GREEN), (0.05, ORANGE), (0.1, RED))),
            cell_background(),
        ],
    )
    panel = panel.override_by_name(
        "Estimated drop vs baseline",
        [
            prop("thresholds", thresholds_json((None, GREEN), (0.02, ORANGE), (0.05, RED))),
            cell_background(),
        ],
    )
    panel = panel.override_by_name(
        "Margin over minimum",
        [prop("thresholds", thresholds_json((None, RED), (0, GREEN))), cell_background()],
    )
    return panel.override_by_name("metric", [prop("unit", "string"), prop("custom.width", 120)])


def _prediction_row(builder: Any) -> Any:
    return (
        builder.with_row(row("Predictions"))
        .with_panel(
            timeseries(
                "Prediction drift (PSI)",
                "Population stability index of the model's churn-score distribution, current "
                "window against the reference scores, with the configured "
                "prediction_drift_psi_threshold (dashed). Above it ChurnPredictionDrift "
                "fires: the model sees different customers or behaves differently, often "
                "before labels can show a drop.",
                [
                    query(f"churn_prediction_drift_psi{{{M}}}", "PSI", ref="A"),
                    query(f"churn_prediction_drift_psi_threshold{{{M}}}", "threshold", ref="B"),
                ],
                min_value=0,
                span=8,
            ).override_by_name("threshold", reference_line(RED))
        )
        .with_panel(
            timeseries(
                "Prediction drift (KS)",
                "Two-sample Kolmogorov-Smirnov statistic D of the churn scores, current window "
                "against reference (0 identical, 1 disjoint). Informational: no alert uses "
                "it; read it with the PSI. Above 0.1 the score distribution moved visibly.",
                [query(f"churn_prediction_drift_ks_statistic{{{M}}}", "KS D")],
                min_value=0,
                max_value=1,
                thresholds=steps((None, GREEN), (0.1, ORANGE), (0.2, RED)),
                show_thresholds=True,
                span=8,
            )
        )
        .with_panel(
            timeseries(
                "Predicted churn ratio",
                "Share of customers predicted to churn: in the exporter's current window, on "
                "the reference, and among predictions the API served in the last hour "
                "(recording rule churn_api:prediction_positive_ratio:rate1h). A current ratio "
                "far from the reference means either churn really changed or the model drifted.",
                [
                    query(f"churn_prediction_positive_ratio{{{M}}}", "current window", ref="A"),
                    query(
                        f"churn_prediction_reference_positive_ratio{{{M}}}",
                        "reference",
                        ref="B",
                    ),
                    query(
                        f"churn_api:prediction_positive_ratio:rate1h{{{M}}}",
                        "served (API, 1h)",
                        ref="C",
                    ),
                ],
                unit="percentunit",
                min_value=0,
                max_value=1,
                span=8,
            ).override_by_name("reference", reference_line(GREY))
        )
        .with_panel(
            timeseries(
                "Revenue at risk over time",
                "Σ MonthlyCharges × P(churn) over the current window after each performance "
                "run, in currency units per month.",
                [query(f"churn_revenue_at_risk{{{M}}}", "revenue at risk")],
                unit="currencyUSD",
                min_value=0,
                span=12,
            )
        )
        .with_panel(
            timeseries(
                "Labelled rows over time",
                "Labelled rows in the performance window (dashed: the default "
                "min_labeled_rows, 100). Realized metrics appear once the line is above it.",
                [query(f"churn_model_labeled_rows{{{M}}}", "labelled rows")],
                unit="short",
                min_value=0,
                thresholds=steps((None, ORANGE), (100, GREEN)),
                show_thresholds=True,
                span=12,
            )
        )
    )


def build() -> dict[str, Any]:
    builder = (
        dashboard(
            UID_MODEL_PERFORMANCE,
            "Churn – Model Performance",
            "Quality of the monitored churn model: realized metrics on labelled rows, the "
            "label-free estimates, the training baseline and the configured minimums, "
            "prediction drift, the predicted churn ratio and the revenue at risk. Values "
            "change once per performance-job run.",
        )
        .with_variable(model_variable())
        .link(link_to(UID_DATA_DRIFT, "Data drift", "Did the inputs change?"))
        .link(link_to(UID_SERVICE, "Service health", "API and exporter health, alerts"))
    )
    builder = _summary_row(builder)
    builder = builder.with_row(row("Metrics: realized, estimated, baseline, minimum"))
    # The headline metrics first and wider, the other three on the next line.
    headline = ("roc_auc", "f1")
    for metric in (*headline, *(m for m in METRICS if m not in headline)):
        builder = builder.with_panel(_metric_panel(metric, 12 if metric in headline else 8))
    builder = builder.with_panel(_degradation_table())
    builder = _prediction_row(builder)
    return finalize(builder)
