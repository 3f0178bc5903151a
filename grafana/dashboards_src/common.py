"""Building blocks every churn-monitor dashboard shares.

The dashboards are written with the official ``grafana-foundation-sdk`` builders; this
module holds what they have in common: the provisioned Prometheus datasource, the
``model`` / ``feature`` / ``study`` variables, the cross-dashboard links, query and
threshold shorthands, and :func:`finalize`, which turns a builder into the plain,
deterministic JSON document that Grafana provisions (panel ids numbered in layout
order, keys sorted by the writer).

Raw dictionaries appear where the SDK types a field as ``object`` (transformation
options, field-override values, table cell options): those are Grafana's JSON as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap as hmb
from grafana_foundation_sdk.builders import prometheus as pb
from grafana_foundation_sdk.builders import stat as sb
from grafana_foundation_sdk.builders import table as tab
from grafana_foundation_sdk.builders import timeseries as tb
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import heatmap as hm
from grafana_foundation_sdk.models import prometheus as pm

#: The datasource uid pinned in grafana/provisioning/datasources/prometheus.yml.
DATASOURCE_UID = "churn-prometheus"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)

#: Every dashboard carries this tag; the dashboard links list dashboards by it.
TAG = "churn-monitor"

#: Stable uids (alerts link to all but the feature-distributions and Optuna ones: the
#: `dashboard_uid` annotation that the Alertmanager templates turn into a URL).
UID_DATA_DRIFT = "churn-data-drift"
UID_MODEL_PERFORMANCE = "churn-model-performance"
UID_MODEL_COMPARISON = "churn-model-comparison"
UID_FEATURE_DISTRIBUTIONS = "churn-feature-distributions"
UID_OPTUNA = "churn-optuna"
UID_SERVICE = "churn-service"

#: The quality metrics of docs/metrics.md (`metric` label values), in display order.
METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc")
METRIC_TITLES = {
    "accuracy": "Accuracy",
    "precision": "Precision",
    "recall": "Recall",
    "f1": "F1",
    "roc_auc": "ROC AUC",
}

#: Families that carry a `model` label and exist as soon as either the exporter's drift
#: job ran or the prediction API serves a model (no trained model needed for the first).
MODEL_SOURCES = ("churn_window_rows", "churn_model_info", "churn_api_model_info")

#: Colours (Grafana's named palette).
GREEN, ORANGE, RED, BLUE, GREY = "green", "orange", "red", "blue", "text"
PURPLE, YELLOW = "purple", "yellow"

#: Alerts this project defines (prometheus/rules/churn_alerts.yml names them Churn*).
CHURN_ALERTS = 'alertname=~"Churn.*"'


# --------------------------------------------------------------------------- queries


def query(
    expr: str,
    legend: str | None = None,
    *,
    ref: str = "A",
    instant: bool = False,
    table: bool = False,
    heatmap: bool = False,
) -> pb.Dataquery:
    """A Prometheus query against the provisioned datasource.

    ``table`` implies an instant query (one row per series, label columns); the
    default is a range query drawn over the dashboard's time range.
    """
    q = pb.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    q = q.instant() if table or instant else q.range()
    if table:
        q = q.format(pm.PromQueryFormat.TABLE)
    elif heatmap:
        q = q.format(pm.PromQueryFormat.HEATMAP)
    if legend is not None:
        q = q.legend_format(legend)
    return q


def refs(n: int) -> list[str]:
    """The first ``n`` query ref ids: A, B, C, ..."""
    return [chr(ord("A") + i) for i in range(n)]


# ------------------------------------------------------------------ field config


def steps(*pairs: tuple[float | None, str]) -> db.ThresholdsConfig:
    """Absolute thresholds; the first pair's value must be None (the base colour)."""
    if not pairs or pairs[0][0] is not None:
        raise ValueError("the first threshold step is the base: (None, colour)")
    return (
        db.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in pairs])
    )


def thresholds_json(*pairs: tuple[float | None, str]) -> dict[str, Any]:
    """The same thresholds as plain JSON, for field overrides."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in pairs]}


def value_text(mapping: Mapping[str, tuple[str, str]]) -> list[dm.ValueMap]:
    """Value mappings ``{"1": ("DRIFT", "red")}``: the value shown as text in a colour."""
    options = {
        key: dm.ValueMappingResult(text=text, color=color, index=i)
        for i, (key, (text, color)) in enumerate(mapping.items())
    }
    return [dm.ValueMap(options=options)]


def value_text_json(mapping: Mapping[str, tuple[str, str]]) -> list[dict[str, Any]]:
    """:func:`value_text` as plain JSON, for field overrides."""
    return [
        {
            "type": "value",
            "options": {
                key: {"text": text, "color": color, "index": i}
                for i, (key, (text, color)) in enumerate(mapping.items())
            },
        }
    ]


def prop(prop_id: str, value: Any) -> dm.DynamicConfigValue:
    """One field-override property (Grafana's ``{"id": ..., "value": ...}``)."""
    return dm.DynamicConfigValue(id_val=prop_id, value=value)


def fixed_colour(colour: str) -> dm.DynamicConfigValue:
    return prop("color", {"mode": "fixed", "fixedColor": colour})


#: Override properties of a reference line (a threshold or baseline series).
def reference_line(colour: str) -> list[dm.DynamicConfigValue]:
    return [
        fixed_colour(colour),
        prop("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
        prop("custom.fillOpacity", 0),
        prop("custom.lineWidth", 2),
    ]


def cell_background() -> dm.DynamicConfigValue:
    """Table cells coloured by the field's thresholds or value mappings."""
    return prop("custom.cellOptions", {"type": "color-background", "mode": "basic"})


def legend(table: bool = False, calcs: Sequence[str] = ()) -> cb.VizLegendOptions:
    mode = cm.LegendDisplayMode.TABLE if table else cm.LegendDisplayMode.LIST
    return (
        cb.VizLegendOptions()
        .display_mode(mode)
        .placement(cm.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(list(calcs))
    )


def tooltip() -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING)


def last_value() -> cb.ReduceDataOptions:
    return cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("")


def threshold_lines() -> cb.GraphThresholdsStyleConfig:
    """Draw the field thresholds as dashed lines across a time series."""
    return cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.DASHED)


# -------------------------------------------------------------------- transforms


def transform(transform_id: str, options: Mapping[str, Any]) -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val=transform_id, options=dict(options))


def organize(
    *,
    exclude: Iterable[str] = (),
    order: Sequence[str] = (),
    rename: Mapping[str, str] | None = None,
) -> dm.DataTransformerConfig:
    """Grafana's "Organize fields": hide, reorder and rename table columns."""
    return transform(
        "organize",
        {
            "excludeByName": {name: True for name in exclude},
            "indexByName": {name: i for i, name in enumerate(order)},
            "renameByName": dict(rename or {}),
        },
    )


#: Label columns of an instant table query that say nothing to a reader.
NOISE_COLUMNS = ("Time", "__name__", "instance", "job", "model")


# -------------------------------------------------------------------- variables


def model_variable() -> db.QueryVariable:
    """``model``: every model name the exporter or the API reports.

    The union of three families keeps the variable filled before a model is trained
    (the drift job exports ``churn_window_rows``) and when only the API runs.
    """
    selector = "|".join(MODEL_SOURCES)
    return (
        db.QueryVariable("model")
        .label("Model")
        .description("Registered model name (MLflow); every panel is filtered by it.")
        .datasource(DATASOURCE)
        .query(f'label_values({{__name__=~"{selector}"}}, model)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .include_all(False)
        .multi(False)
    )


def feature_variable(*, multi: bool) -> db.QueryVariable:
    """``feature``: the features the drift job reports for ``$model``."""
    variable = (
        db.QueryVariable("feature")
        .label("Feature")
        .description("Input feature of the model (docs/metrics.md, label `feature`).")
        .datasource(DATASOURCE)
        .query('label_values(churn_feature_drift_psi{model="$model"}, feature)')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_CASE_INSENSITIVE_ASC)
        .multi(multi)
        .include_all(multi)
    )
    if multi:
        variable = variable.all_value(".+")
    return variable


def study_variable() -> db.QueryVariable:
    return (
        db.QueryVariable("study")
        .label("Study")
        .description("Optuna study name (configs: optuna.study_name).")
        .datasource(DATASOURCE)
        .query("label_values(churn_optuna_best_value, study)")
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .include_all(False)
        .multi(False)
    )


# ------------------------------------------------------------------ dashboards


def dashboard(
    uid: str, title: str, description: str, *, time_from: str = "now-24h", refresh: str = "1m"
) -> db.Dashboard:
    """A dashboard with the shared settings, tag, links and alert annotations."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags([TAG])
        .timezone("browser")
        .time(time_from, "now")
        .refresh(refresh)
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .link(
            db.DashboardLink("Churn dashboards")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
            .tooltip("The other churn-monitor dashboards (keeps model and time range)")
            .icon("external link")
        )
        .annotation(
            db.AnnotationQuery()
            .name("Churn alerts")
            .datasource(DATASOURCE)
            .enable(True)
            .hide(False)
            .icon_color("red")
            .expr(f'ALERTS{{alertstate="firing", {CHURN_ALERTS}}}')
        )
    )


def link_to(uid: str, title: str, tooltip_text: str) -> db.DashboardLink:
    """A link to one dashboard by uid (keeps variables and time range)."""
    return (
        db.DashboardLink(title)
        .type(dm.DashboardLinkType.LINK)
        .url(f"/d/{uid}")
        .include_vars(True)
        .keep_time(True)
        .tooltip(tooltip_text)
        .icon("dashboard")
        .as_dropdown(False)
        .target_blank(False)
    )


#: Extra keys of the Prometheus alert annotation that the SDK does not model.
_ANNOTATION_EXTRAS = {
    "titleFormat": "{{alertname}} ({{severity}})",
    "textFormat": "{{model}} {{feature}} {{metric}} {{task}}",
    "tagKeys": "alert_type,severity",
    "step": "60s",
    "useValueForTime": False,
}


GRID_WIDTH = 24


def _layout(panels: list[dict[str, Any]]) -> None:
    """Flow the panels left to right on Grafana's 24-column grid, in list order.

    A panel that does not fit on the current line starts the next one (the SDK's own
    placement lets a panel overflow the line); a row always starts a new line.
    """
    x = y = line_height = 0
    for panel in panels:
        pos = panel.setdefault("gridPos", {})
        w, h = int(pos.get("w", GRID_WIDTH)), int(pos.get("h", 8))
        if panel.get("type") == "row" or x + w > GRID_WIDTH:
            y += line_height
            x = line_height = 0
        if panel.get("type") == "row":
            panel["gridPos"] = {"x": 0, "y": y, "w": GRID_WIDTH, "h": 1}
            y += 1
            continue
        panel["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x += w
        line_height = max(line_height, h)


def finalize(builder: db.Dashboard) -> dict[str, Any]:
    """Build the dashboard and return it as plain JSON data, ready to write.

    Panels (rows included) are numbered 1, 2, ... in layout order, so ids are stable
    while the layout is; the builder's own default id (0) is never kept.
    """
    data: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    _layout(data.get("panels", []))
    panel_id = 0
    for panel in data.get("panels", []):
        panel_id += 1
        panel["id"] = panel_id
        for child in panel.get("panels", []):
            panel_id += 1
            child["id"] = panel_id
    for annotation in data.get("annotations", {}).get("list", []):
        if annotation.get("expr"):
            for key, value in _ANNOTATION_EXTRAS.items():
                annotation.setdefault(key, value)
    data["id"] = None
    data.setdefault("version", 1)
    return data


def render(data: Mapping[str, Any]) -> str:
    """The file text of a dashboard: sorted keys, two-space indent, final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


# ----------------------------------------------------------------- panel shapes


def stat(
    title: str,
    description: str,
    targets: Sequence[pb.Dataquery],
    *,
    unit: str = "none",
    thresholds: db.ThresholdsConfig | None = None,
    mappings: list[dm.ValueMap] | None = None,
    decimals: float | None = None,
    span: int = 4,
    height: int = 4,
    graph: bool = False,
    no_value: str | None = None,
) -> Any:
    """A single-value panel coloured by its thresholds (or value mappings)."""
    panel = (
        sb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .thresholds(thresholds or steps((None, BLUE)))
        .color_scheme(db.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .reduce_options(last_value())
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .graph_mode(cm.BigValueGraphMode.AREA if graph else cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.AUTO)
        .justify_mode(cm.BigValueJustifyMode.AUTO)
        .orientation(cm.VizOrientation.AUTO)
        .span(span)
        .height(height)
    )
    if mappings:
        panel = panel.mappings(mappings)
    if decimals is not None:
        panel = panel.decimals(decimals)
    if no_value is not None:
        panel = panel.no_value(no_value)
    return panel


def timeseries(
    title: str,
    description: str,
    targets: Sequence[pb.Dataquery],
    *,
    unit: str = "none",
    thresholds: db.ThresholdsConfig | None = None,
    show_thresholds: bool = False,
    min_value: float | None = None,
    max_value: float | None = None,
    span: int = 12,
    height: int = 8,
    stacked: bool = False,
    bars: bool = False,
    legend_calcs: Sequence[str] = ("lastNotNull",),
    decimals: float | None = None,
) -> Any:
    """A time series; thresholds, when shown, are drawn as dashed lines."""
    panel = (
        tb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .line_width(2)
        .fill_opacity(10 if not bars else 80)
        .show_points(cm.VisibilityMode.NEVER)
        .span_nulls(True)
        .legend(legend(table=bool(legend_calcs), calcs=legend_calcs))
        .tooltip(tooltip())
        .thresholds(thresholds or steps((None, GREEN)))
        .thresholds_style(
            threshold_lines()
            if show_thresholds
            else cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.OFF)
        )
        .span(span)
        .height(height)
    )
    if bars:
        panel = panel.draw_style(cm.GraphDrawStyle.BARS)
    if stacked:
        panel = panel.stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL))
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def table(
    title: str,
    description: str,
    targets: Sequence[pb.Dataquery],
    *,
    transformations: Sequence[dm.DataTransformerConfig] = (),
    span: int = 24,
    height: int = 8,
    unit: str = "none",
    sort_by: tuple[str, bool] | None = None,
) -> Any:
    """A table of instant query results (use ``query(..., table=True)``)."""
    panel = (
        tab.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(list(targets))
        .unit(unit)
        .transformations(list(transformations))
        .show_header(True)
        .cell_height(cm.TableCellHeight.SM)
        .filterable(False)
        .thresholds(steps((None, GREEN)))
        .span(span)
        .height(height)
    )
    if sort_by is not None:
        name, desc = sort_by
        panel = panel.sort_by([cb.TableSortByFieldState().display_name(name).desc(desc)])
    return panel


def row(title: str) -> db.Row:
    return db.Row(title)


def score_heatmap(
    title: str,
    description: str,
    family: str,
    selector: str,
    *,
    scheme: str,
    colour: str,
    fill: str | None = None,
) -> hmb.Panel:
    """A full-width heatmap of a score histogram `family` (buckets of churn probability,
    predictions per bucket over time), filtered by `selector`."""
    colours = (
        hmb.HeatmapColorOptions()
        .mode(hm.HeatmapColorMode.SCHEME)
        .scheme(scheme)
        .scale(hm.HeatmapColorScale.EXPONENTIAL)
        .exponent(0.5)
        .steps(64)
        .reverse(False)
    )
    if fill is not None:
        colours = colours.fill(fill)
    return (
        hmb.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(
            query(
                f"sum by (le) (increase({family}_bucket{{{selector}}}[$__rate_interval]))",
                "{{le}}",
                heatmap=True,
            )
        )
        .calculate(False)
        .y_axis(hmb.YAxisConfig().unit("percentunit").axis_placement(cm.AxisPlacement.LEFT))
        .color(colours)
        .thresholds(steps((None, colour)))
        .cell_gap(1)
        .show_value(cm.VisibilityMode.NEVER)
        .mode(cm.TooltipDisplayMode.SINGLE)
        .unit("short")
        .span(12)
        .height(9)
    )
