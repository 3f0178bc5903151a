"""Churn – Champion vs Challenger (uid ``churn-model-comparison``): is the challenger
(the version at ``model.challenger_alias``, shadow-scored by the API on every request)
better than the champion on the same customers?

The exporter's comparison job (``task="comparison"``) measures both models on the rows
both scored: per role (``role="champion"`` / ``"challenger"``) the realized and estimated
metrics and the prediction drift, and the paired tests (DeLong on ROC AUC, McNemar on
accuracy) with the agreement of their decisions. The API's score histograms show both
score distributions as they are served and shadowed. ChurnChallengerOutperforms links
here.
"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.models import common as cm

from .common import (
    BLUE,
    GREEN,
    GREY,
    METRIC_TITLES,
    METRICS,
    NOISE_COLUMNS,
    ORANGE,
    RED,
    UID_MODEL_COMPARISON,
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
    score_heatmap,
    stat,
    steps,
    table,
    thresholds_json,
    timeseries,
    transform,
    value_text,
)

M = 'model="$model"'
#: The two roles in the order every panel shows them, and their colours.
ROLES = ("champion", "challenger")
ROLE_COLOURS = {"champion": BLUE, "challenger": ORANGE}

#: The verdict stat's values: the ChurnChallengerOutperforms condition now, both ways.
VERDICT = {
    "1": ("CHALLENGER BETTER", GREEN),
    "-1": ("CHAMPION BETTER", BLUE),
    "0": ("NO SIGNIFICANT DIFFERENCE", GREY),
    "2": ("TOO FEW PAIRED ROWS", ORANGE),
}
VERDICT_EXPR = (
    f"(sgn(churn_comparison_auc_difference{{{M}}})"
    f" * on (model) (churn_comparison_auc_difference_pvalue{{{M}}}"
    f" < bool on (model) churn_comparison_pvalue_threshold{{{M}}})"
    f" and on (model) (churn_comparison_paired_rows{{{M}}}"
    f" >= on (model) churn_comparison_min_paired_rows{{{M}}}))"
    f" or on (model) (0 * churn_comparison_paired_rows{{{M}}} + 2)"
)
DOTTED = prop("custom.lineStyle", {"fill": "dot", "dash": [0, 10]})


def _role_overrides(panel: Any, *, estimated: bool = False) -> Any:
    """Champion blue, challenger orange; their estimates dotted in the same colour."""
    for role in ROLES:
        panel = panel.override_by_name(role, [fixed_colour(ROLE_COLOURS[role])])
        if estimated:
            panel = panel.override_by_name(
                f"{role} (estimated)", [fixed_colour(ROLE_COLOURS[role]), DOTTED]
            )
    return panel


# ------------------------------------------------------------------------ summary


def _versions_table() -> Any:
    """Which version holds which alias, as the exporter compares them and as the API
    serves and shadows them (one row per source; they should agree)."""
    sources = (
        (
            f'label_replace(churn_comparison_model_info{{{M}}}, "source", '
            '"exporter (comparison)", "", "")'
        ),
        (
            f'label_replace(label_replace(churn_api_model_info{{{M}}}, "role", "champion", '
            '"", ""), "source", "API (served)", "", "")'
        ),
        (
            f'label_replace(label_replace(churn_api_shadow_model_info{{{M}}}, "role", '
            '"challenger", "", ""), "source", "API (shadow)", "", "")'
        ),
    )
    targets = [query(expr, ref=chr(ord("A") + i), table=True) for i, expr in enumerate(sources)]
    values = [f"Value #{chr(ord('A') + i)}" for i in range(len(sources))]
    return table(
        "Versions by alias",
        "Which registered version holds which alias: as the exporter's last comparison saw "
        "them (churn_comparison_model_info), as the API serves the champion "
        "(churn_api_model_info) and as it shadow-scores the challenger "
        "(churn_api_shadow_model_info). The rows of one role should name the same version; "
        "after an alias moves, the API follows within api.model_poll_seconds and the "
        "exporter at its next comparison run (which then starts over on the new pair).",
        targets,
        transformations=[
            transform("merge", {}),
            organize(
                exclude=(*NOISE_COLUMNS, *values),
                order=("role", "version", "source"),
                rename={"role": "Role (alias)", "version": "Version", "source": "Seen by"},
            ),
        ],
        span=8,
        height=6,
        sort_by=("Role (alias)", False),
    ).no_value("No challenger: nothing to compare")


def _summary_row(builder: Any) -> Any:
    return (
        builder.with_row(row("Summary"))
        .with_panel(_versions_table())
        .with_panel(
            stat(
                "Verdict (ROC AUC)",
                "The ChurnChallengerOutperforms condition, evaluated now and both ways: "
                "CHALLENGER BETTER (higher ROC AUC, DeLong p below the configured "
                "model_comparison.pvalue, at least model_comparison.min_paired_rows paired "
                "rows; the alert fires after 5 minutes of it), CHAMPION BETTER (the same "
                "with a lower AUC), NO SIGNIFICANT DIFFERENCE, or TOO FEW PAIRED ROWS to "
                "decide (also while the AUC is undefined: fewer than "
                "performance_monitoring.min_labeled_rows labels or one class only).",
                [query(VERDICT_EXPR, "verdict", instant=True)],
                mappings=value_text(VERDICT),
                thresholds=steps((None, GREY)),
                span=4,
                height=6,
                no_value="No challenger",
            )
        )
        .with_panel(
            stat(
                "ROC AUC difference",
                "Challenger minus champion ROC AUC on the paired labelled rows (the same "
                "customers scored by both) at the last comparison run. Positive: the "
                "challenger ranks churners better. Read it with the DeLong p-value: a small "
                "difference on few rows is noise.",
                [query(f"churn_comparison_auc_difference{{{M}}}", "AUC difference", instant=True)],
                decimals=3,
                thresholds=steps((None, ORANGE), (0, GREEN)),
                span=3,
                height=6,
                graph=True,
            )
        )
        .with_panel(
            stat(
                "DeLong p-value",
                "Two-sided p-value of DeLong's test that both ROC AUCs are equal on the paired "
                "rows (1 when both models score the rows identically). Below the configured "
                "model_comparison.pvalue (the dashed line in the p-value panel) the "
                "difference counts; the colour marks the conventional 0.05 (rule of thumb).",
                [query(f"churn_comparison_auc_difference_pvalue{{{M}}}", "p-value", instant=True)],
                unit="sci",
                thresholds=steps((None, GREEN), (0.05, GREY)),
                span=3,
                height=6,
            )
        )
        .with_panel(
            stat(
                "Paired rows vs required",
                "Labelled customers scored by both models (churn_comparison_paired_rows) as a "
                "share of model_comparison.min_paired_rows: below 100 % the tests ran on "
                "fewer rows than the configured minimum and the alert cannot fire. Labels "
                "arrive through /feedback.",
                [
                    query(
                        f"churn_comparison_paired_rows{{{M}}}"
                        f" / on (model) churn_comparison_min_paired_rows{{{M}}}",
                        "paired / required",
                        instant=True,
                    )
                ],
                unit="percentunit",
                thresholds=steps((None, ORANGE), (1, GREEN)),
                span=3,
                height=6,
                graph=True,
            )
        )
        .with_panel(
            stat(
                "Decision agreement",
                "Share of the window's shadowed customers on which both models make the same "
                "churn decision, each at its own threshold (churn_comparison_agreement_ratio). "
                "It is how much a promotion would change: below 90 % (rule of thumb) more than "
                "one customer in ten would be treated differently.",
                [query(f"churn_comparison_agreement_ratio{{{M}}}", "agreement", instant=True)],
                unit="percentunit",
                thresholds=steps((None, ORANGE), (0.9, GREEN)),
                span=3,
                height=6,
                graph=True,
            )
        )
    )


# ------------------------------------------------------------------- paired tests


def _pvalue_panel(title: str, family: str, description: str, *, span: int) -> Any:
    return (
        timeseries(
            title,
            description,
            [
                query(f"{family}{{{M}}}", "p-value", ref="A"),
                query(f"churn_comparison_pvalue_threshold{{{M}}}", "threshold", ref="B"),
            ],
            unit="none",
            max_value=1,
            span=span,
        )
        .scale_distribution(cb.ScaleDistributionConfig().type(cm.ScaleDistribution.LOG).log(10))
        .override_by_name("threshold", reference_line(RED))
    )


def _paired_rows(builder: Any) -> Any:
    return (
        builder.with_row(row("ROC AUC: DeLong's paired test"))
        .with_panel(
            timeseries(
                "ROC AUC difference (challenger − champion)",
                "Challenger minus champion ROC AUC on the same labelled customers, after each "
                "comparison run (dashed: 0). Above the line the challenger ranks churners "
                "better; it is the value ChurnChallengerOutperforms reports.",
                [query(f"churn_comparison_auc_difference{{{M}}}", "AUC difference")],
                thresholds=steps((None, ORANGE), (0, GREEN)),
                show_thresholds=True,
                decimals=3,
                span=8,
            )
        )
        .with_panel(
            _pvalue_panel(
                "DeLong p-value and threshold",
                "churn_comparison_auc_difference_pvalue",
                "DeLong's two-sided p-value for the AUC difference (log scale) and the "
                "configured model_comparison.pvalue (dashed). Below the line, with a positive "
                "difference and enough paired rows, the challenger is better "
                "(ChurnChallengerOutperforms). More paired rows make a real difference's "
                "p-value fall.",
                span=8,
            )
        )
        .with_panel(
            timeseries(
                "Paired and shadowed rows",
                "Paired: labelled customers scored by both models in "
                "model_comparison.label_window_hours (the tests' sample), with the configured "
                "model_comparison.min_paired_rows (dashed). Shadowed: customers of the current "
                "window scored by both (the agreement and the estimates use them). Both start "
                "over when either alias moves.",
                [
                    query(f"churn_comparison_paired_rows{{{M}}}", "paired", ref="A"),
                    query(f"churn_comparison_shadowed_rows{{{M}}}", "shadowed", ref="B"),
                    query(f"churn_comparison_min_paired_rows{{{M}}}", "required", ref="C"),
                ],
                unit="short",
                min_value=0,
                span=8,
            )
            .override_by_name("paired", [fixed_colour(BLUE)])
            .override_by_name("shadowed", [fixed_colour(GREY)])
            .override_by_name("required", reference_line(ORANGE))
        )
        .with_row(row("Accuracy: McNemar's test"))
        .with_panel(
            timeseries(
                "Accuracy difference (challenger − champion)",
                "Challenger minus champion accuracy on the paired labelled rows, each model at "
                "its own decision threshold (dashed: 0). Unlike the AUC, it depends on the "
                "thresholds: a challenger with a better ranking but a poorly chosen threshold "
                "can lose here.",
                [query(f"churn_comparison_accuracy_difference{{{M}}}", "accuracy difference")],
                unit="percentunit",
                thresholds=steps((None, ORANGE), (0, GREEN)),
                show_thresholds=True,
                span=12,
            )
        )
        .with_panel(
            _pvalue_panel(
                "McNemar p-value",
                "churn_comparison_accuracy_difference_pvalue",
                "McNemar's test on the customers the two models classify differently (exact "
                "binomial below 25 discordant pairs), log scale, with "
                "model_comparison.pvalue (dashed) for reference. Informational: the alert "
                "and the promotion use the ROC AUC.",
                span=12,
            )
        )
    )


# ---------------------------------------------------------------- both models


def _metric_panel(metric: str, span: int) -> Any:
    name = METRIC_TITLES[metric]
    targets = []
    for i, (family, suffix) in enumerate(
        (
            ("churn_comparison_performance", ""),
            ("churn_comparison_performance_estimated", " (estimated)"),
        )
    ):
        for j, role in enumerate(ROLES):
            targets.append(
                query(
                    f'{family}{{{M}, metric="{metric}", role="{role}"}}',
                    f"{role}{suffix}",
                    ref=chr(ord("A") + 2 * i + j),
                )
            )
    panel = timeseries(
        name,
        f"{name} of both models on the same customers, after each comparison run. Solid: "
        "realized on the paired labelled rows (absent below "
        "performance_monitoring.min_labeled_rows). Dotted: the label-free estimate on the "
        "window's shadowed rows, each model calibrated on its own reference. These are "
        "paired-row values, so the champion's differ from the model-performance dashboard, "
        "which uses every labelled row.",
        targets,
        unit="percentunit",
        max_value=1,
        span=span,
        height=8,
    )
    return _role_overrides(panel, estimated=True)


def _side_by_side_table() -> Any:
    def by_metric(family: str, role: str) -> str:
        return f'max by (metric) ({family}{{{M}, role="{role}"}})'

    realized = "churn_comparison_performance"
    estimated = "churn_comparison_performance_estimated"
    columns = (
        (by_metric(realized, "champion"), "Champion"),
        (by_metric(realized, "challenger"), "Challenger"),
        (
            f"{by_metric(realized, 'challenger')} - {by_metric(realized, 'champion')}",
            "Challenger − champion",
        ),
        (by_metric(estimated, "champion"), "Champion (estimated)"),
        (by_metric(estimated, "challenger"), "Challenger (estimated)"),
    )
    targets = [
        query(expr, ref=chr(ord("A") + i), table=True) for i, (expr, _t) in enumerate(columns)
    ]
    rename = {f"Value #{chr(ord('A') + i)}": title for i, (_e, title) in enumerate(columns)}
    return (
        table(
            "Metrics side by side",
            "One row per metric from the last comparison run: both models realized on the "
            "paired labelled rows, the difference (positive: the challenger is better), and "
            "both label-free estimates on the window's shadowed rows. The difference is "
            "coloured by sign only; whether it is significant is the paired tests' question.",
            targets,
            transformations=[
                transform("merge", {}),
                organize(exclude=NOISE_COLUMNS, order=["metric", *rename], rename=rename),
            ],
            span=24,
            height=7,
            unit="percentunit",
        )
        .override_by_name(
            "Challenger − champion",
            [prop("thresholds", thresholds_json((None, ORANGE), (0, GREEN))), cell_background()],
        )
        .override_by_name("metric", [prop("unit", "string"), prop("custom.width", 120)])
    )


def _models_rows(builder: Any) -> Any:
    builder = builder.with_row(row("Both models on the same customers"))
    headline = ("roc_auc", "f1")
    for metric in (*headline, *(m for m in METRICS if m not in headline)):
        builder = builder.with_panel(_metric_panel(metric, 12 if metric in headline else 8))
    psi = [
        query(
            f'churn_comparison_prediction_drift_psi{{{M}, role="{role}"}}',
            role,
            ref=chr(ord("A") + i),
        )
        for i, role in enumerate(ROLES)
    ]
    psi.append(query(f"churn_prediction_drift_psi_threshold{{{M}}}", "threshold", ref="C"))
    return (
        builder.with_panel(_side_by_side_table())
        .with_panel(
            _role_overrides(
                timeseries(
                    "Prediction drift (PSI) per model",
                    "Population stability index of each model's scores on the window's "
                    "shadowed customers against its own reference scores, with the configured "
                    "performance_monitoring.prediction_drift_psi_threshold (dashed). A "
                    "challenger drifting far more than the champion sees these customers as "
                    "unlike its training data.",
                    psi,
                    min_value=0,
                    span=12,
                ).override_by_name("threshold", reference_line(RED))
            )
        )
        .with_panel(
            timeseries(
                "Decision agreement over time",
                "Share of the window's shadowed customers on which both models make the same "
                "decision, after each comparison run (dashed: 90 %, a rule of thumb). A drop "
                "means the models disagree on more customers; the accuracy panels say which "
                "one is right more often.",
                [query(f"churn_comparison_agreement_ratio{{{M}}}", "agreement")],
                unit="percentunit",
                max_value=1,
                thresholds=steps((None, ORANGE), (0.9, GREEN)),
                show_thresholds=True,
                span=12,
            )
        )
    )


# ------------------------------------------------------------- score distributions


def _score_heatmap(title: str, family: str, description: str, scheme: str) -> Any:
    return score_heatmap(title, description, family, M, scheme=scheme, colour=BLUE)


def _scores_row(builder: Any) -> Any:
    quantiles = [
        query(
            f"histogram_quantile({q}, sum by (le) (rate({family}_bucket{{{M}}}"
            "[$__rate_interval])))",
            f"{role} {label}",
            ref=chr(ord("A") + i),
        )
        for i, (role, family, q, label) in enumerate(
            (
                ("champion", "churn_api_prediction_score", "0.5", "median"),
                ("challenger", "churn_api_shadow_score", "0.5", "median"),
                ("champion", "churn_api_prediction_score", "0.9", "p90"),
                ("challenger", "churn_api_shadow_score", "0.9", "p90"),
            )
        )
    ]
    quantile_panel = timeseries(
        "Score quantiles: champion vs challenger",
        "Median and 90th percentile of the churn probabilities each model gave the API's "
        "customers (histograms churn_api_prediction_score and churn_api_shadow_score, same "
        "buckets; interpolated within a bucket). Different quantiles with a similar ranking "
        "mean different calibration: compare decisions, not raw scores.",
        quantiles,
        unit="percentunit",
        min_value=0,
        max_value=1,
        span=12,
    )
    for role in ROLES:
        colour = ROLE_COLOURS[role]
        quantile_panel = quantile_panel.override_by_name(
            f"{role} median", [fixed_colour(colour)]
        ).override_by_name(f"{role} p90", [fixed_colour(colour), DOTTED])
    return (
        builder.with_row(row("Score distributions (prediction API)"))
        .with_panel(
            _score_heatmap(
                "Champion score distribution",
                "churn_api_prediction_score",
                "Churn probabilities the champion served, predictions per score bucket over "
                "time (histogram churn_api_prediction_score). Compare with the challenger's "
                "beside it: the same customers, scored in the shadow.",
                "Blues",
            )
        )
        .with_panel(
            _score_heatmap(
                "Challenger score distribution",
                "churn_api_shadow_score",
                "Churn probabilities the challenger gave the same logged predictions in the "
                "shadow, never served (histogram churn_api_shadow_score, the champion's "
                "buckets). Empty while there is no challenger or shadow scoring is off "
                "(api.shadow_scoring).",
                "Oranges",
            )
        )
        .with_panel(quantile_panel)
        .with_panel(
            timeseries(
                "Shadow-scoring failures",
                "Failures of the challenger's shadow scoring by stage "
                "(churn_api_shadow_failures_total): load (a version at the alias failed to "
                "load), score (it raised), log (the prediction log refused the scores), "
                "overload (rows dropped from a full queue). Rows that fail are not paired, so "
                "failures shrink the comparison's sample; they never touch served answers.",
                [
                    query(
                        "sum by (stage) (increase(churn_api_shadow_failures_total"
                        f"{{{M}}}[$__rate_interval]))",
                        "{{stage}}",
                    )
                ],
                unit="short",
                min_value=0,
                thresholds=steps((None, GREEN), (1, RED)),
                span=12,
            )
        )
    )


def build() -> dict[str, Any]:
    builder = (
        dashboard(
            UID_MODEL_COMPARISON,
            "Churn – Champion vs Challenger",
            "The champion against the challenger (model.challenger_alias), which the API "
            "shadow-scores on every request: which version holds which alias, both models' "
            "metrics on the same customers, DeLong's test on the ROC AUC difference and "
            "McNemar's on accuracy against the configured p-value, their decision agreement "
            "and both score distributions. Exporter values change once per comparison-job "
            "run; empty without a challenger.",
        )
        .with_variable(model_variable())
        .link(
            link_to(
                UID_MODEL_PERFORMANCE,
                "Model performance",
                "The champion on every labelled row, against its baseline",
            )
        )
        .link(link_to(UID_SERVICE, "Service health", "API and exporter health, alerts"))
    )
    builder = _summary_row(builder)
    builder = _paired_rows(builder)
    builder = _models_rows(builder)
    builder = _scores_row(builder)
    return finalize(builder)
