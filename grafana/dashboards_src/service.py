"""Churn – Service & Exporter Health (uid ``churn-service``): the prediction API, the
monitoring exporter's scheduled jobs, and the alerts Prometheus holds."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import bargauge as bgb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import statetimeline as stl
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from .common import (
    BLUE,
    CHURN_ALERTS,
    DATASOURCE,
    GREEN,
    ORANGE,
    RED,
    UID_DATA_DRIFT,
    UID_MODEL_PERFORMANCE,
    UID_OPTUNA,
    UID_SERVICE,
    cell_background,
    dashboard,
    finalize,
    last_value,
    legend,
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
    timeseries,
    tooltip,
    value_text,
    value_text_json,
)

M = 'model="$model"'
UP_TEXT = {"0": ("DOWN", RED), "1": ("UP", GREEN)}
#: The ChurnMonitoringStale alert fires when a job missed this many intervals.
STALE_INTERVALS = 3


def _score_heatmap() -> Any:
    return score_heatmap(
        "Churn score distribution",
        "How the churn probabilities the API served are distributed over time "
        "(histogram churn_api_prediction_score, predictions per score bucket). A band "
        "that moves up or down is prediction drift as the API sees it, long before the "
        "exporter's next performance run.",
        "churn_api_prediction_score",
        M,
        scheme="Oranges",
        colour=ORANGE,
        fill="dark-orange",
    )


def _api_rows(builder: Any) -> Any:
    latency = [
        query(f"churn_api:request_duration_seconds:{q}_5m", f"{q} {{{{route}}}}", ref=ref)
        for q, ref in (("p50", "A"), ("p95", "B"), ("p99", "C"))
    ]
    score_heatmap = _score_heatmap()
    return (
        builder.with_row(row("Prediction API"))
        .with_panel(
            stat(
                "API up",
                'Whether Prometheus can scrape the prediction API (up{job="churn-api"}). '
                "DOWN: clients get errors and no predictions are logged for the exporter.",
                [query('up{job="churn-api"}', "{{instance}}", instant=True)],
                mappings=value_text(UP_TEXT),
                thresholds=steps((None, RED), (1, GREEN)),
                span=4,
            )
        )
        .with_panel(
            stat(
                "Request rate",
                "HTTP requests per second over the last 5 minutes, all routes "
                "(churn_api:requests:rate5m). Zero while clients are active means they fail "
                "before reaching the API.",
                [query("sum(churn_api:requests:rate5m)", "requests/s", instant=True)],
                unit="reqps",
                decimals=2,
                thresholds=steps((None, BLUE)),
                span=5,
                graph=True,
            )
        )
        .with_panel(
            stat(
                "Error ratio (5xx)",
                "Share of requests answered with a 5xx status over the last 5 minutes "
                "(churn_api:request_error_ratio:rate5m; empty without traffic). Above 1 % "
                "something is wrong; above 5 % clients are noticeably failing.",
                [query("churn_api:request_error_ratio:rate5m", "5xx ratio", instant=True)],
                unit="percentunit",
                decimals=2,
                thresholds=steps((None, GREEN), (0.01, ORANGE), (0.05, RED)),
                span=5,
                graph=True,
            )
        )
        .with_panel(
            stat(
                "p95 latency",
                "95th percentile of request latency over the last 5 minutes, slowest route "
                "(churn_api:request_duration_seconds:p95_5m). Above 250 ms a single "
                "prediction is slow; above 1 s clients may time out.",
                [query("max(churn_api:request_duration_seconds:p95_5m)", "p95", instant=True)],
                unit="s",
                thresholds=steps((None, GREEN), (0.25, ORANGE), (1, RED)),
                span=5,
                graph=True,
            )
        )
        .with_panel(
            table(
                "Served model version",
                "The model version the API serves (churn_api_model_info). It should match the "
                "version the exporter monitors (model-performance dashboard); after a "
                "promotion the API picks the new champion within model_poll_seconds.",
                [query(f"churn_api_model_info{{{M}}}", ref="A", table=True)],
                transformations=[
                    organize(
                        exclude=("Time", "__name__", "instance", "job", "Value"),
                        order=("model", "version"),
                    )
                ],
                span=5,
                height=4,
            )
        )
        .with_panel(
            timeseries(
                "Request rate by route and status",
                "Requests per second by route and HTTP status over 5-minute windows "
                "(churn_api:requests:rate5m). 4xx are client mistakes (bad payloads, "
                "oversized batches); 5xx are ours.",
                [
                    query(
                        "sum by (route, status) (churn_api:requests:rate5m)",
                        "{{route}} {{status}}",
                    )
                ],
                unit="reqps",
                min_value=0,
                span=12,
            )
        )
        .with_panel(
            timeseries(
                "5xx error ratio over time",
                "Share of 5xx responses over 5-minute windows, with 1 % and 5 % marked "
                "(dashed). Gaps mean no traffic.",
                [query("churn_api:request_error_ratio:rate5m", "5xx ratio")],
                unit="percentunit",
                min_value=0,
                thresholds=steps((None, GREEN), (0.01, ORANGE), (0.05, RED)),
                show_thresholds=True,
                span=12,
            )
        )
        .with_panel(
            timeseries(
                "Request latency percentiles",
                "p50, p95 and p99 request latency by route over 5-minute windows (recording "
                "rules churn_api:request_duration_seconds:*). p99 far above p95 means a few "
                "very slow requests (large batches, a cold model).",
                latency,
                unit="s",
                min_value=0,
                thresholds=steps((None, GREEN), (0.25, ORANGE), (1, RED)),
                span=12,
            )
        )
        .with_panel(
            timeseries(
                "Inference latency",
                "Time the model itself takes per call, without HTTP and validation: p95 over "
                "5 minutes (churn_api:inference_duration_seconds:p95_5m) and the mean. A rise "
                "without more traffic points at the model (a bigger new version) or the host.",
                [
                    query(f"churn_api:inference_duration_seconds:p95_5m{{{M}}}", "p95", ref="A"),
                    query(
                        f"sum(rate(churn_api_inference_duration_seconds_sum{{{M}}}"
                        "[$__rate_interval])) / sum(rate("
                        f"churn_api_inference_duration_seconds_count{{{M}}}[$__rate_interval]))",
                        "mean",
                        ref="B",
                    ),
                ],
                unit="s",
                min_value=0,
                span=12,
            )
        )
        .with_panel(score_heatmap)
        .with_panel(
            timeseries(
                "Predictions by predicted label",
                "Predictions served per second by predicted label (0 stays, 1 churns), "
                "stacked (churn_api:predictions:rate5m). The ratio between the bands is the "
                "served churn ratio; no bands at all while the API is up is what "
                "ChurnNoPredictions fires on after an hour.",
                [
                    query(
                        f"churn_api:predictions:rate5m{{{M}}}",
                        "predicted {{predicted}}",
                    )
                ],
                unit="reqps",
                min_value=0,
                stacked=True,
                span=12,
                height=9,
            )
            .override_by_name(
                "predicted 0", [prop("color", {"mode": "fixed", "fixedColor": GREEN})]
            )
            .override_by_name("predicted 1", [prop("color", {"mode": "fixed", "fixedColor": RED})])
        )
        .with_panel(
            timeseries(
                "Served churn ratio and score quantiles",
                "Share of predictions served as churn over the last hour "
                "(churn_api:prediction_positive_ratio:rate1h) and the median and 90th "
                "percentile churn score. Compare with the reference ratio on the "
                "model-performance dashboard.",
                [
                    query(
                        f"churn_api:prediction_positive_ratio:rate1h{{{M}}}",
                        "served churn ratio (1h)",
                        ref="A",
                    ),
                    query(
                        "histogram_quantile(0.5, sum by (le) (rate("
                        f"churn_api_prediction_score_bucket{{{M}}}[$__rate_interval])))",
                        "median score",
                        ref="B",
                    ),
                    query(
                        "histogram_quantile(0.9, sum by (le) (rate("
                        f"churn_api_prediction_score_bucket{{{M}}}[$__rate_interval])))",
                        "p90 score",
                        ref="C",
                    ),
                ],
                unit="percentunit",
                min_value=0,
                max_value=1,
                span=24,
            )
        )
    )


def _exporter_rows(builder: Any) -> Any:
    staleness = (
        "(time() - churn_exporter_job_last_success_timestamp_seconds)"
        " / on (task, instance) churn_exporter_job_interval_seconds"
    )
    stale_gauge = (
        bgb.Panel()
        .title("Time since last success, in intervals")
        .description(
            "For each scheduled job, the time since its last successful run divided by its "
            "configured interval. Below 1 the job is on schedule; at "
            f"{STALE_INTERVALS} ChurnMonitoringStale fires (after 5 minutes) and the "
            "exported values are stale."
        )
        .datasource(DATASOURCE)
        .with_target(query(staleness, "{{task}}", instant=True))
        .unit("suffix:× interval")
        .decimals(2)
        .min(0)
        .max(STALE_INTERVALS + 1)
        .thresholds(steps((None, GREEN), (1.5, ORANGE), (STALE_INTERVALS, RED)))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(last_value())
        .show_unfilled(True)
        .span(10)
        .height(6)
    )
    failures_gauge = (
        bgb.Panel()
        .title("Failed runs in the time range")
        .description(
            "Failed runs of each job over the dashboard's time range "
            "(churn_exporter_job_failures_total). A failed run keeps the last good values "
            "exported; ChurnMonitoringJobFailing fires while the last run failed."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                "sum by (task) (increase(churn_exporter_job_failures_total[$__range]))",
                "{{task}}",
                instant=True,
            )
        )
        .unit("short")
        .decimals(0)
        .min(0)
        .thresholds(steps((None, GREEN), (1, ORANGE), (5, RED)))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .reduce_options(last_value())
        .show_unfilled(True)
        .span(10)
        .height(6)
    )
    outcomes = (
        stl.Panel()
        .title("Job outcome")
        .description(
            "Outcome of each scheduled job's last run over time (churn_exporter_job_success): "
            "green succeeded, red raised. A red stretch is what ChurnMonitoringJobFailing "
            "reports; the exporter log has the traceback."
        )
        .datasource(DATASOURCE)
        .with_target(query("churn_exporter_job_success", "{{task}}"))
        .mappings(value_text({"0": ("failed", RED), "1": ("ok", GREEN)}))
        .thresholds(steps((None, RED), (1, GREEN)))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .legend(legend())
        .tooltip(tooltip())
        .span(24)
        .height(6)
    )
    return (
        builder.with_row(row("Monitoring exporter"))
        .with_panel(
            stat(
                "Exporter up",
                'Whether Prometheus can scrape the exporter (up{job="churn-exporter"}). '
                "DOWN for 2 minutes fires ChurnExporterDown: no drift or performance value "
                "is updated and their alerts cannot fire.",
                [query('up{job="churn-exporter"}', "{{instance}}", instant=True)],
                mappings=value_text(UP_TEXT),
                thresholds=steps((None, RED), (1, GREEN)),
                span=4,
                height=6,
            )
        )
        .with_panel(stale_gauge)
        .with_panel(failures_gauge)
        .with_panel(outcomes)
        .with_panel(
            timeseries(
                "Job duration",
                "How long each job's last run took (churn_exporter_job_duration_seconds). A "
                "run longer than its interval delays the next one (runs never overlap).",
                [query("churn_exporter_job_duration_seconds", "{{task}}")],
                unit="s",
                min_value=0,
                span=12,
            )
        )
        .with_panel(
            timeseries(
                "Time since last success",
                "Seconds since each job last succeeded, with its stale limit (dashed, "
                f"{STALE_INTERVALS} × the configured interval, from "
                "churn_exporter_job_interval_seconds). The saw-tooth resets at every "
                "successful run; a line that keeps climbing past its limit is a stuck or "
                "failing job.",
                [
                    query(
                        "time() - churn_exporter_job_last_success_timestamp_seconds",
                        "{{task}}",
                        ref="A",
                    ),
                    query(
                        f"{STALE_INTERVALS} * churn_exporter_job_interval_seconds",
                        "{{task}} stale limit",
                        ref="B",
                    ),
                ],
                unit="s",
                min_value=0,
                span=12,
            ).override_by_regexp(".* stale limit", reference_line(RED))
        )
        .with_panel(
            table(
                "Scrape targets",
                "Every target Prometheus scrapes (exporter, API, Prometheus, Alertmanager) "
                "and whether the last scrape worked.",
                [query("up", ref="A", table=True)],
                transformations=[
                    organize(
                        exclude=("Time", "__name__"),
                        order=("job", "instance", "Value"),
                        rename={"Value": "up"},
                    )
                ],
                span=12,
                height=6,
                sort_by=("job", False),
            ).override_by_name(
                "up",
                [
                    prop("mappings", value_text_json(UP_TEXT)),
                    cell_background(),
                    prop(
                        "thresholds",
                        {
                            "mode": "absolute",
                            "steps": [{"color": RED, "value": None}, {"color": GREEN, "value": 1}],
                        },
                    ),
                ],
            )
        )
        .with_panel(
            table(
                "Exporter build",
                "Version of churn-monitor and of Python the exporter runs "
                "(churn_exporter_build_info).",
                [query("churn_exporter_build_info", ref="A", table=True)],
                transformations=[
                    organize(
                        exclude=("Time", "__name__", "job", "Value"),
                        order=("instance", "version", "python_version"),
                    )
                ],
                span=12,
                height=6,
            )
        )
    )


def _alert_rows(builder: Any) -> Any:
    firing = f'ALERTS{{alertstate="firing", {CHURN_ALERTS}}}'
    history = (
        stl.Panel()
        .title("Alert history")
        .description(
            "When each churn alert was firing over the time range (from Prometheus' ALERTS "
            "series), by alert name, severity and model: the last alerts at a glance. "
            "Notifications went out through Alertmanager for each of these stretches."
        )
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"max by (alertname, severity, model) ({firing})",
                "{{alertname}} {{severity}} {{model}}",
            )
        )
        .mappings(value_text({"1": ("firing", RED)}))
        .thresholds(steps((None, RED)))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .legend(legend())
        .tooltip(tooltip())
        .span(24)
        .height(8)
    )
    active = table(
        "Active alerts",
        "Churn alerts Prometheus holds now, from the ALERTS series: firing (sent to "
        "Alertmanager) and pending (condition true, waiting out the rule's for: duration). "
        "Empty is good. Each alert links to its runbook section in docs/runbook.md.",
        [query(f"ALERTS{{{CHURN_ALERTS}}}", ref="A", table=True)],
        transformations=[
            organize(
                exclude=("Time", "__name__", "Value"),
                order=(
                    "alertstate",
                    "alertname",
                    "severity",
                    "alert_type",
                    "model",
                    "feature",
                    "metric",
                    "task",
                    "job",
                    "instance",
                ),
                rename={"alertstate": "state"},
            )
        ],
        span=24,
        height=8,
        sort_by=("state", False),
    ).no_value("No churn alert is firing or pending")
    active = active.override_by_name(
        "state",
        [
            prop(
                "mappings",
                value_text_json({"firing": ("firing", RED), "pending": ("pending", ORANGE)}),
            ),
            cell_background(),
        ],
    ).override_by_name(
        "alertname",
        [
            prop(
                "links",
                [
                    {
                        "title": "Runbook for ${__data.fields.alertname}",
                        "url": "https://github.com/churn-monitor/churn-monitor/blob/main/docs/"
                        "runbook.md#${__data.fields.alertname}",
                        "targetBlank": True,
                    }
                ],
            )
        ],
    )
    return (
        builder.with_row(row("Alerts"))
        .with_panel(
            stat(
                "Firing alerts",
                "Churn alerts firing now (sent to Alertmanager for routing: email for "
                "critical and warning, Slack, the webhook for info).",
                [query(f"count({firing}) or vector(0)", "firing", instant=True)],
                thresholds=steps((None, GREEN), (1, RED)),
                span=8,
            )
        )
        .with_panel(
            stat(
                "Pending alerts",
                "Churn alerts whose condition is true but has not lasted the rule's for: "
                "duration yet. They fire unless the condition clears.",
                [
                    query(
                        f'count(ALERTS{{alertstate="pending", {CHURN_ALERTS}}}) or vector(0)',
                        "pending",
                        instant=True,
                    )
                ],
                thresholds=steps((None, GREEN), (1, ORANGE)),
                span=8,
            )
        )
        .with_panel(
            stat(
                "Rule evaluation failures",
                "Failed rule evaluations in Prometheus over the time range "
                "(prometheus_rule_evaluation_failures_total). Anything above 0 means some "
                "alert or recording rule is not being evaluated: check the Prometheus log.",
                [
                    query(
                        "sum(increase(prometheus_rule_evaluation_failures_total[$__range]))",
                        "failures",
                        instant=True,
                    )
                ],
                thresholds=steps((None, GREEN), (1, RED)),
                decimals=0,
                span=8,
            )
        )
        .with_panel(active)
        .with_panel(history)
    )


def build() -> dict[str, Any]:
    builder = (
        dashboard(
            UID_SERVICE,
            "Churn – Service & Exporter Health",
            "Health of the churn prediction API (traffic, errors, latency, served scores), "
            "of the monitoring exporter's scheduled jobs, and the alerts Prometheus holds.",
            time_from="now-6h",
            refresh="30s",
        )
        .with_variable(model_variable())
        .link(link_to(UID_DATA_DRIFT, "Data drift", "Input drift of the model"))
        .link(link_to(UID_MODEL_PERFORMANCE, "Model performance", "Quality of the model"))
        .link(link_to(UID_OPTUNA, "Optuna", "The tuning study"))
    )
    builder = _alert_rows(builder)
    builder = _api_rows(builder)
    builder = _exporter_rows(builder)
    return finalize(builder)
