"""Churn – Feature Distributions (uid ``churn-feature-distributions``): for one feature,
the reference and current share of rows per PSI bin or category, side by side."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import barchart as bcb
from grafana_foundation_sdk.models import common as cm

from .common import (
    BLUE,
    DATASOURCE,
    GREEN,
    ORANGE,
    RED,
    UID_DATA_DRIFT,
    UID_FEATURE_DISTRIBUTIONS,
    dashboard,
    feature_variable,
    finalize,
    fixed_colour,
    legend,
    link_to,
    model_variable,
    organize,
    query,
    row,
    stat,
    steps,
    table,
    timeseries,
    tooltip,
    transform,
    value_text,
)

MF = 'model="$model", feature="$feature"'
BINS = f"churn_feature_bin_ratio{{{MF}}}"

#: Reference and current become two columns over the bin axis: one row per bin.
BIN_MATRIX = (
    transform(
        "groupingToMatrix",
        {"columnField": "dataset", "rowField": "bin", "valueField": "Value", "emptyValue": "null"},
    ),
    organize(order=("bin\\dataset", "reference", "current"), rename={"bin\\dataset": "bin"}),
)


def _barchart() -> Any:
    return (
        bcb.Panel()
        .title("Share of rows per bin: reference vs current")
        .description(
            "For the selected feature, the share of rows in each PSI bin (numeric: "
            "reference-quantile bins, so the reference bars are about equal; categorical: "
            "each category plus an unseen bin) for the reference snapshot and the current "
            "window, from the last drift run. Bars that differ a lot are where the PSI "
            "comes from; current rows in the unseen bin are categories the model never saw."
        )
        .datasource(DATASOURCE)
        .with_target(query(BINS, ref="A", table=True))
        .transformations(list(BIN_MATRIX))
        .x_field("bin")
        .orientation(cm.VizOrientation.VERTICAL)
        .show_value(cm.VisibilityMode.AUTO)
        .stacking(cm.StackingMode.NONE)
        .group_width(0.7)
        .bar_width(0.9)
        .x_tick_label_rotation(-30)
        .x_tick_label_max_length(24)
        .fill_opacity(80)
        .thresholds(steps((None, BLUE)))
        .unit("percentunit")
        .decimals(1)
        .min(0)
        .legend(legend())
        .tooltip(tooltip())
        .override_by_name("reference", [fixed_colour(BLUE)])
        .override_by_name("current", [fixed_colour(ORANGE)])
        .span(24)
        .height(11)
    )


def _bin_table() -> Any:
    return table(
        "Bins: reference, current and difference",
        "The bar chart as numbers: share of rows per bin in the reference and the current "
        "window, and current − reference (positive: the bin gained rows). Each bin adds "
        "(current − reference) × ln(current / reference) to the PSI, so large differences "
        "in small bins weigh most.",
        [query(BINS, ref="A", table=True)],
        transformations=[
            *BIN_MATRIX,
            transform(
                "calculateField",
                {
                    "alias": "current − reference",
                    "mode": "binary",
                    "binary": {"left": "current", "operator": "-", "right": "reference"},
                    "replaceFields": False,
                },
            ),
        ],
        unit="percentunit",
        span=12,
        height=10,
    ).decimals(2)


def _stats() -> list[Any]:
    def one(
        title: str,
        family: str,
        description: str,
        colour_steps: Any,
        *,
        unit: str = "none",
        decimals: int = 3,
    ) -> Any:
        return stat(
            title,
            description,
            [query(f"{family}{{{MF}}}", title, instant=True)],
            unit=unit,
            thresholds=steps(*colour_steps),
            decimals=decimals,
            span=4,
            height=4,
            no_value="n/a",
        )

    distance = ((None, GREEN), (0.1, ORANGE), (0.2, RED))
    return [
        stat(
            "Drift decision",
            "The decision of this feature's configured drift test in the last run. Empty "
            "while undecided (window below min_window_rows).",
            [query(f"churn_feature_drifted{{{MF}}}", "drifted", instant=True)],
            mappings=value_text({"0": ("no drift", GREEN), "1": ("DRIFT", RED)}),
            thresholds=steps((None, GREEN), (1, RED)),
            span=4,
            height=4,
            no_value="undecided",
        ),
        one(
            "PSI",
            "churn_feature_drift_psi",
            "Population stability index over the bins above. Below 0.1 stable, 0.1 to "
            "0.25 moderate, above 0.25 a large shift.",
            ((None, GREEN), (0.1, ORANGE), (0.25, RED)),
        ),
        one(
            "KS p-value",
            "churn_feature_drift_ks_pvalue",
            "p-value of the two-sample KS test (numeric features only; n/a for categorical). "
            "Below 0.05 the distributions differ.",
            ((None, RED), (0.05, GREEN)),
            decimals=4,
        ),
        one(
            "Wasserstein / std",
            "churn_feature_drift_wasserstein",
            "Wasserstein-1 distance in reference standard deviations (numeric features "
            "only). Above 0.2 the values moved substantially.",
            distance,
        ),
        one(
            "Jensen-Shannon",
            "churn_feature_drift_jensenshannon",
            "Jensen-Shannon distance of category shares (categorical features only). Above "
            "0.2 the category mix changed substantially.",
            distance,
        ),
        one(
            "Missing values",
            "churn_feature_missing_ratio",
            "Share of missing or blank values of this feature in the current window. A jump "
            "points at a broken upstream field.",
            ((None, GREEN), (0.01, ORANGE), (0.05, RED)),
            unit="percentunit",
            decimals=1,
        ),
    ]


def build() -> dict[str, Any]:
    builder = (
        dashboard(
            UID_FEATURE_DISTRIBUTIONS,
            "Churn – Feature Distributions",
            "Reference against current distribution of one input feature, bin by bin, with "
            "the feature's drift statistics. Pick the feature at the top, or click a feature "
            "in the data-drift dashboard's table.",
        )
        .with_variable(model_variable())
        .with_variable(feature_variable(multi=False))
        .link(link_to(UID_DATA_DRIFT, "Data drift", "Every feature's drift statistics"))
    )
    builder = builder.with_row(row("Distribution of $feature"))
    for panel in _stats():
        builder = builder.with_panel(panel)
    builder = builder.with_panel(_barchart())
    builder = builder.with_panel(_bin_table())
    builder = builder.with_panel(
        timeseries(
            "PSI of $feature over time",
            "The feature's PSI after each drift run (dashed: 0.1 and 0.25). A single spike "
            "is often a small window; a plateau is a real shift.",
            [query(f"churn_feature_drift_psi{{{MF}}}", "PSI")],
            min_value=0,
            thresholds=steps((None, GREEN), (0.1, ORANGE), (0.25, RED)),
            show_thresholds=True,
            span=12,
            height=10,
            legend_calcs=(),
        )
    )
    return finalize(builder)
