"""Churn – Data Drift (uid ``churn-data-drift``): is the current window still like the
reference the model was trained on?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline as stl
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    BLUE,
    DATASOURCE,
    GREEN,
    NOISE_COLUMNS,
    ORANGE,
    RED,
    UID_DATA_DRIFT,
    UID_FEATURE_DISTRIBUTIONS,
    UID_MODEL_PERFORMANCE,
    cell_background,
    dashboard,
    feature_variable,
    finalize,
    fixed_colour,
    legend,
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
    value_text,
    value_text_json,
)

M = 'model="$model"'
MF = 'model="$model", feature=~"$feature"'

#: Guidance colours for the per-feature statistics (the decision itself is the
#: feature's configured test, shown as "drifted").
PSI_STEPS = ((None, GREEN), (0.1, ORANGE), (0.25, RED))
DISTANCE_STEPS = ((None, GREEN), (0.1, ORANGE), (0.2, RED))
PVALUE_STEPS = ((None, RED), (0.05, GREEN))
MISSING_STEPS = ((None, GREEN), (0.01, ORANGE), (0.05, RED))
DRIFTED_TEXT = {"0": ("no", GREEN), "1": ("DRIFT", RED)}

#: Per-feature table columns: (family, column title, unit, decimals, thresholds).
FEATURE_COLUMNS: tuple[tuple[str, str, str, int, tuple[Any, ...] | None], ...] = (
    ("churn_feature_drifted", "Drifted", "none", 0, None),
    ("churn_feature_drift_psi", "PSI", "none", 3, PSI_STEPS),
    ("churn_feature_drift_ks_statistic", "KS D", "none", 3, DISTANCE_STEPS),
    ("churn_feature_drift_ks_pvalue", "KS p-value", "none", 4, PVALUE_STEPS),
    ("churn_feature_drift_wasserstein", "Wasserstein / std", "none", 3, DISTANCE_STEPS),
    ("churn_feature_drift_jensenshannon", "Jensen-Shannon", "none", 3, DISTANCE_STEPS),
    ("churn_feature_missing_ratio", "Missing", "percentunit", 1, MISSING_STEPS),
)


def _status_row(builder: Any) -> Any:
    status = (
        f"(churn_data_drift_score{{{M}}} > bool on (model) churn_data_drift_threshold)"
        f" + (churn_data_drift_score{{{M}}} > bool on (model)"
        " churn_data_drift_critical_threshold)"
    )
    return (
        builder.with_row(row("Dataset drift"))
        .with_panel(
            stat(
                "Drift status",
                "What the ChurnDataDriftDetected alert sees: OK while the dataset drift "
                "score is at or below the configured drift_threshold, WARNING above it, "
                "CRITICAL above drift_threshold × critical_multiplier. The alert fires after "
                "5 minutes in that state. No value: the current window is smaller than "
                "min_window_rows, so no decision is made.",
                [query(status, "status", instant=True)],
                mappings=value_text(
                    {"0": ("OK", GREEN), "1": ("WARNING", ORANGE), "2": ("CRITICAL", RED)}
                ),
                thresholds=steps((None, GREEN), (1, ORANGE), (2, RED)),
                no_value="no decision",
                span=4,
            )
        )
        .with_panel(
            stat(
                "Drift score and thresholds",
                "The dataset drift score is the share of decided features whose configured "
                "test says drift (0 = none, 1 = all). Beside it the two thresholds from the "
                "config (data_drift_monitoring.drift_threshold and the critical one). Worry "
                "when the score passes the warning value; act when it passes the critical one.",
                [
                    query(f"churn_data_drift_score{{{M}}}", "score", ref="A", instant=True),
                    query(
                        f"churn_data_drift_threshold{{{M}}}",
                        "warning above",
                        ref="B",
                        instant=True,
                    ),
                    query(
                        f"churn_data_drift_critical_threshold{{{M}}}",
                        "critical above",
                        ref="C",
                        instant=True,
                    ),
                ],
                unit="percentunit",
                decimals=1,
                thresholds=steps((None, BLUE)),
                span=8,
            )
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .color_mode(cm.BigValueColorMode.VALUE)
            .override_by_name("warning above", [fixed_colour(ORANGE)])
            .override_by_name("critical above", [fixed_colour(RED)])
        )
        .with_panel(
            stat(
                "Drifted features",
                "How many features the configured per-feature tests flag as drifted, out of "
                "the features with a decision (recording rules churn:feature_drifted:count "
                "and churn:feature_decided:count). One drifted feature is worth a look at its "
                "distribution; many point at an upstream data change.",
                [
                    query(
                        f"churn:feature_drifted:count{{{M}}}",
                        "drifted",
                        ref="A",
                        instant=True,
                    ),
                    query(
                        f"churn:feature_decided:count{{{M}}}",
                        "decided",
                        ref="B",
                        instant=True,
                    ),
                ],
                thresholds=steps((None, GREEN), (1, ORANGE)),
                span=6,
            )
            .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
            .override_by_name("decided", [fixed_colour(BLUE)])
        )
        .with_panel(
            stat(
                "Window large enough?",
                "Whether the current window holds at least data_drift_monitoring."
                "min_window_rows rows. Below that the exporter makes no drift decision "
                "(the score is absent and drift alerts cannot fire): check the prediction "
                "log or the current data source.",
                [
                    query(
                        f"churn_window_rows{{{M}}} < bool on (model)"
                        " churn_data_drift_min_window_rows",
                        "too small",
                        instant=True,
                    )
                ],
                mappings=value_text({"0": ("enough rows", GREEN), "1": ("too few rows", RED)}),
                thresholds=steps((None, GREEN), (1, RED)),
                span=6,
            )
        )
        .with_panel(
            timeseries(
                "Dataset drift score over time",
                "The dataset drift score (share of drifted features) after each run of the "
                "drift job, with the warning and critical thresholds from the config as "
                "dashed lines. A step above the warning line that stays there is what the "
                "ChurnDataDriftDetected alert reports.",
                [
                    query(f"churn_data_drift_score{{{M}}}", "score", ref="A"),
                    query(f"churn_data_drift_threshold{{{M}}}", "warning threshold", ref="B"),
                    query(
                        f"churn_data_drift_critical_threshold{{{M}}}",
                        "critical threshold",
                        ref="C",
                    ),
                ],
                unit="percentunit",
                min_value=0,
                max_value=1,
                span=16,
                height=9,
            )
            .override_by_name("warning threshold", reference_line(ORANGE))
            .override_by_name("critical threshold", reference_line(RED))
        )
        .with_panel(
            timeseries(
                "Window and reference sizes",
                "Rows the statistics were computed on: the current window, the reference "
                "snapshot, and the configured minimum window (dashed). Small windows make "
                "every test noisy; a window below the minimum gets no decision at all.",
                [
                    query(f"churn_window_rows{{{M}}}", "current window", ref="A"),
                    query(f"churn_reference_rows{{{M}}}", "reference", ref="B"),
                    query(
                        f"churn_data_drift_min_window_rows{{{M}}}",
                        "minimum window",
                        ref="C",
                    ),
                ],
                unit="short",
                min_value=0,
                span=8,
                height=9,
            ).override_by_name("minimum window", reference_line(RED))
        )
    )


#: The multivariate decision as text (absent while undecided: the stat's no-value text).
MULTIVARIATE_TEXT = {"0": ("no drift", GREEN), "1": ("drifted", RED)}


def _multivariate_row(builder: Any) -> Any:
    """The whole-row view: reconstruction error, domain classifier, unusual rows
    (exporter/stats/multivariate; the ChurnMultivariateDrift and ChurnUnusualInputs
    alerts)."""
    return (
        builder.with_row(row("Multivariate drift and unusual inputs"))
        .with_panel(
            stat(
                "Multivariate drift decision",
                "What the ChurnMultivariateDrift alert sees (churn_multivariate_drifted): "
                "drifted when the window's mean reconstruction error or the domain "
                "classifier's AUC is above its threshold, no drift when neither is. The "
                "alert fires after 5 minutes in the drifted state. Undecided: the current "
                "window is smaller than min_window_rows.",
                [query(f"churn_multivariate_drifted{{{M}}}", "decision", instant=True)],
                mappings=value_text(MULTIVARIATE_TEXT),
                thresholds=steps((None, GREEN), (1, RED)),
                no_value="undecided",
                span=4,
                height=8,
            )
        )
        .with_panel(
            timeseries(
                "Reconstruction error and threshold",
                "Mean PCA reconstruction error of the window's rows after each drift run: "
                "how far the rows lie from the principal subspace of the reference, in "
                "encoded units (reference standard deviations, 0/1 per category). It grows "
                "when the features stop relating as in the reference, even if each one "
                "alone looks as usual. Above the threshold (dashed; computed from the "
                "reference at the window's size) the window counts as drifted.",
                [
                    query(
                        f"churn_multivariate_drift_reconstruction_error{{{M}}}",
                        "mean error",
                        ref="A",
                    ),
                    query(
                        f"churn_multivariate_drift_reconstruction_error_threshold{{{M}}}",
                        "threshold",
                        ref="B",
                    ),
                ],
                min_value=0,
                decimals=3,
                span=10,
                height=8,
            ).override_by_name("threshold", reference_line(RED))
        )
        .with_panel(
            timeseries(
                "Domain classifier AUC and threshold",
                "Held-out ROC AUC of a classifier trained to tell the window's rows from "
                "the reference's: 0.5 when it cannot (the two look alike), 1 when it tells "
                "every window row apart. Above the threshold (dashed; what a no-drift "
                "window of the same size reaches at most, bar the false-alarm rate) the "
                "window counts as drifted. No value while either side has fewer than 4 rows.",
                [
                    query(f"churn_multivariate_drift_domain_auc{{{M}}}", "domain AUC", ref="A"),
                    query(
                        f"churn_multivariate_drift_domain_auc_threshold{{{M}}}",
                        "threshold",
                        ref="B",
                    ),
                ],
                max_value=1,
                decimals=3,
                span=10,
                height=8,
            ).override_by_name("threshold", reference_line(RED))
        )
        .with_panel(
            timeseries(
                "Unusual rows: share, expected and threshold",
                "Share of the window's rows whose reconstruction error is above the per-row "
                "cut-off set on the reference, beside the share expected of reference-like "
                "rows (multivariate.unusual_rate) and the threshold for a window of this "
                "size (dashed). Above the threshold for 5 minutes, ChurnUnusualInputs "
                "fires: look at the prediction log's most unusual rows (anomaly_score).",
                [
                    query(f"churn_unusual_rows_ratio{{{M}}}", "unusual share", ref="A"),
                    query(f"churn_unusual_rows_ratio_expected{{{M}}}", "expected", ref="B"),
                    query(f"churn_unusual_rows_ratio_threshold{{{M}}}", "threshold", ref="C"),
                ],
                unit="percentunit",
                min_value=0,
                decimals=1,
                span=24,
                height=8,
            )
            .override_by_name("expected", reference_line(BLUE))
            .override_by_name("threshold", reference_line(RED))
        )
    )


def _feature_table() -> Any:
    targets = [
        query(f"{family}{{{M}}}", ref=chr(ord("A") + i), table=True)
        for i, (family, *_rest) in enumerate(FEATURE_COLUMNS)
    ]
    rename = {
        f"Value #{chr(ord('A') + i)}": title for i, (_f, title, *_r) in enumerate(FEATURE_COLUMNS)
    }
    order = ["feature", *rename]
    panel = table(
        "Per-feature drift statistics",
        "Every feature of the model, current window against reference, from the last drift "
        "run. Drifted is the decision of the feature's configured test (what the "
        "ChurnFeatureDrift alert uses); the other columns are the statistics behind it: "
        "PSI (above 0.1 moderate, above 0.25 large shift), the two-sample KS statistic D "
        "and its p-value (numeric features; p below 0.05 means the distributions differ), "
        "the Wasserstein-1 distance in reference standard deviations (numeric) and the "
        "Jensen-Shannon distance of category shares (categorical). Colours are rules of "
        "thumb, not the configured tests. Click a feature to open its distribution.",
        targets,
        transformations=[
            transform("merge", {}),
            organize(exclude=NOISE_COLUMNS, order=order, rename=rename),
        ],
        span=24,
        height=12,
        sort_by=("PSI", True),
    )
    panel = panel.override_by_name(
        "feature",
        [
            prop(
                "links",
                [
                    {
                        "title": "Distribution of ${__data.fields.feature}",
                        "url": f"/d/{UID_FEATURE_DISTRIBUTIONS}?var-model=${{model}}"
                        "&var-feature=${__data.fields.feature}&${__url_time_range}",
                    }
                ],
            ),
            prop("custom.width", 200),
        ],
    )
    for _family, title, unit, decimals, colour_steps in FEATURE_COLUMNS:
        properties = [prop("unit", unit), prop("decimals", decimals), cell_background()]
        if colour_steps is None:
            properties.append(prop("mappings", value_text_json(DRIFTED_TEXT)))
            properties.append(prop("thresholds", thresholds_json((None, GREEN), (1, RED))))
        else:
            properties.append(prop("thresholds", thresholds_json(*colour_steps)))
        panel = panel.override_by_name(title, properties)
    return panel


def _feature_series(
    title: str,
    family: str,
    description: str,
    *,
    unit: str = "none",
    colour_steps: tuple[Any, ...] = (),
) -> Any:
    panel = timeseries(
        title,
        description,
        [query(f"{family}{{{MF}}}", "{{feature}}")],
        unit=unit,
        min_value=0,
        thresholds=steps(*colour_steps) if colour_steps else None,
        show_thresholds=bool(colour_steps),
        span=12,
        height=8,
    )
    return panel


def _feature_rows(builder: Any) -> Any:
    decisions = (
        stl.Panel()
        .title("Drift decision per feature")
        .description(
            "The configured test's decision for each selected feature after every drift "
            "run: green no drift, red drift, empty while undecided (window below "
            "min_window_rows). A feature that turns red and stays red is a lasting shift."
        )
        .datasource(DATASOURCE)
        .with_target(query(f"churn_feature_drifted{{{MF}}}", "{{feature}}"))
        .mappings(value_text(DRIFTED_TEXT))
        .thresholds(steps((None, GREEN), (1, RED)))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .legend(legend())
        .span(24)
        .height(10)
    )
    return (
        builder.with_row(row("Per-feature statistics"))
        .with_panel(_feature_table())
        .with_panel(decisions)
        .with_panel(
            _feature_series(
                "PSI per feature",
                "churn_feature_drift_psi",
                "Population stability index of each selected feature (numeric: reference-"
                "quantile bins; categorical: categories plus an unseen bin). Rule of thumb: "
                "below 0.1 stable, 0.1 to 0.25 a moderate shift, above 0.25 a large shift "
                "(dashed lines).",
                colour_steps=PSI_STEPS,
            )
        )
        .with_panel(
            _feature_series(
                "KS statistic D per feature",
                "churn_feature_drift_ks_statistic",
                "Two-sample Kolmogorov-Smirnov statistic D (numeric features): the largest "
                "gap between the reference and current cumulative distributions, 0 to 1. "
                "Large windows make small D significant; read it with the p-value.",
                colour_steps=DISTANCE_STEPS,
            )
        )
        .with_panel(
            _feature_series(
                "KS p-value per feature",
                "churn_feature_drift_ks_pvalue",
                "p-value of the two-sample KS test (numeric features). Below 0.05 (dashed "
                "line) the current values are unlikely to come from the reference "
                "distribution; with thousands of rows even harmless shifts go below it, so "
                "confirm with PSI or the distribution itself.",
                colour_steps=PVALUE_STEPS,
            )
        )
        .with_panel(
            _feature_series(
                "Wasserstein distance per feature",
                "churn_feature_drift_wasserstein",
                "Wasserstein-1 (earth mover's) distance between reference and current, "
                "divided by the reference standard deviation (numeric features): 0.1 means "
                "the mass moved a tenth of a standard deviation on average. Worry above 0.2.",
                colour_steps=DISTANCE_STEPS,
            )
        )
        .with_panel(
            _feature_series(
                "Jensen-Shannon distance per feature",
                "churn_feature_drift_jensenshannon",
                "Jensen-Shannon distance (base 2, 0 to 1) between the category shares of "
                "reference and current (categorical features). Above 0.1 the category mix "
                "changed visibly; above 0.2 substantially.",
                colour_steps=DISTANCE_STEPS,
            )
        )
        .with_panel(
            _feature_series(
                "Missing values per feature",
                "churn_feature_missing_ratio",
                "Share of missing or blank values in the current window. A jump usually "
                "means a broken upstream field rather than a change in customers.",
                unit="percentunit",
                colour_steps=MISSING_STEPS,
            )
        )
    )


def _alerts_row(builder: Any) -> Any:
    alerts = table(
        "Firing drift alerts",
        "Drift alerts Prometheus is firing now for this model (ChurnDataDriftDetected at "
        "warning or critical severity, ChurnFeatureDrift per feature, "
        "ChurnMultivariateDrift, ChurnUnusualInputs), from the ALERTS series. Empty is "
        "good. Pending alerts (condition true for less than 5 minutes) are not listed; the "
        "service dashboard shows them.",
        [
            query(
                'ALERTS{alertname=~"ChurnDataDrift.*|ChurnFeatureDrift|ChurnMultivariateDrift'
                '|ChurnUnusualInputs", '
                f'alertstate="firing", {M}}}',
                ref="A",
                table=True,
            )
        ],
        transformations=[
            organize(
                exclude=("Time", "__name__", "alertstate", "instance", "job", "Value"),
                order=("alertname", "severity", "alert_type", "model", "feature"),
            )
        ],
        span=24,
        height=6,
        sort_by=("severity", False),
    ).no_value("No drift alert is firing")
    return builder.with_row(row("Alerts")).with_panel(alerts)


def build() -> dict[str, Any]:
    builder = (
        dashboard(
            UID_DATA_DRIFT,
            "Churn – Data Drift",
            "Data drift of the churn model's inputs: the dataset drift score against its "
            "thresholds, multivariate drift and unusual rows, per-feature statistics and "
            "decisions, window sizes and the drift alerts. Values change once per drift-job "
            "run (every 30 minutes by default).",
        )
        .with_variable(model_variable())
        .with_variable(feature_variable(multi=True))
        .link(
            link_to(
                UID_FEATURE_DISTRIBUTIONS,
                "Feature distributions",
                "Reference against current share per bin for one feature",
            )
        )
        .link(
            link_to(
                UID_MODEL_PERFORMANCE,
                "Model performance",
                "Did the drift hurt the model?",
            )
        )
    )
    builder = _status_row(builder)
    builder = _multivariate_row(builder)
    builder = _feature_rows(builder)
    builder = _alerts_row(builder)
    return finalize(builder)
