"""The Grafana dashboards and provisioning files (offline, fast).

The dashboards are generated (grafana/generate.py from grafana/dashboards_src); the
checked-in JSON is what Grafana provisions, so both are checked: regenerating gives the
same files, and the files themselves follow the contract — the provisioned datasource
uid everywhere, defined variables, documented metric names, a query and a description
on every panel, the uids the Alertmanager templates link to. The provisioning YAML is
checked against Grafana's documented schema (apiVersion 1).

The helpers at the top (loading dashboards, extracting every query) are shared with the
live test, tests/test_dashboard_queries.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import in_ci
from .support import REPO

GRAFANA = REPO / "grafana"
DASHBOARDS_DIR = GRAFANA / "dashboards"
DATASOURCES_YML = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS_YML = GRAFANA / "provisioning" / "dashboards" / "churn.yml"
METRICS_DOC = REPO / "docs" / "metrics.md"
DASHBOARDS_DOC = REPO / "docs" / "dashboards.md"
RULES_DIR = REPO / "prometheus" / "rules"
ALERTS_FILE = RULES_DIR / "churn_alerts.yml"
AM_TEMPLATE = REPO / "alertmanager" / "templates" / "churn.tmpl"

DATASOURCE = {"type": "prometheus", "uid": "churn-prometheus"}
EXPECTED = {
    "churn-data-drift": "Churn – Data Drift",
    "churn-model-performance": "Churn – Model Performance",
    "churn-model-comparison": "Churn – Champion vs Challenger",
    "churn-feature-distributions": "Churn – Feature Distributions",
    "churn-optuna": "Churn – Optuna",
    "churn-service": "Churn – Service & Exporter Health",
}
TAG = "churn-monitor"
#: Panels that hold no query by design.
QUERYLESS_TYPES = {"row", "text"}
#: Grafana's global variables ($__rate_interval, ${__data.fields.x}, ...) start with __.
VARIABLE_REF = re.compile(r"\$(?:\{([A-Za-z_]\w*)(?:[.:][^}]*)?\}|([A-Za-z_]\w*))|\[\[(\w+)\]\]")


# ------------------------------------------------------------------ shared helpers


def load_dashboards() -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON of every checked-in dashboard."""
    boards = {}
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        boards[data["uid"]] = data
    return boards


def iter_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows and the panels of collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def variables(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return list(dashboard.get("templating", {}).get("list", []))


@dataclass(frozen=True)
class Query:
    """One PromQL query of a dashboard, where it sits, and how Grafana runs it."""

    uid: str
    where: str  # "panel title [refId]", "variable name" or "annotation name"
    expr: str
    kind: str  # "range", "instant" or "variable"

    @property
    def key(self) -> str:
        return f"{self.uid}: {self.where}"


def variable_query(variable: dict[str, Any]) -> str:
    query = variable.get("query", "")
    if isinstance(query, dict):
        query = query.get("query", "")
    return str(query)


def iter_queries(dashboard: dict[str, Any]) -> Iterator[Query]:
    """Every query: panel targets, query variables, annotations."""
    uid = dashboard["uid"]
    for variable in variables(dashboard):
        if variable.get("type") == "query":
            yield Query(uid, f"variable {variable['name']}", variable_query(variable), "variable")
    for annotation in dashboard.get("annotations", {}).get("list", []):
        expr = annotation.get("expr") or (annotation.get("target") or {}).get("expr")
        if expr:
            yield Query(uid, f"annotation {annotation['name']}", expr, "range")
    for panel in iter_panels(dashboard):
        for target in panel.get("targets", []):
            kind = "instant" if target.get("instant") and not target.get("range") else "range"
            yield Query(uid, f"{panel['title']} [{target['refId']}]", target["expr"], kind)


def all_queries() -> list[Query]:
    return [q for board in load_dashboards().values() for q in iter_queries(board)]


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def used_variables(dashboard: dict[str, Any]) -> set[str]:
    """Names of the template variables referred to anywhere but the variable list."""
    body = {k: v for k, v in dashboard.items() if k != "templating"}
    texts = [*_strings(body), *(variable_query(v) for v in variables(dashboard))]
    names = set()
    for text in texts:
        for match in VARIABLE_REF.finditer(text):
            name = next(g for g in match.groups() if g)
            if not name.startswith("__"):
                names.add(name)
    return names


_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_NAME_MATCHER = re.compile(r'__name__\s*=~?\s*"([^"]*)"')
_CHURN_NAME = re.compile(r"(?<![\w:])churn[\w:]*")


def metric_names(expr: str) -> set[str]:
    """The churn_* / churn:* / churn_api:* series names an expression selects."""
    names = set()
    for alternatives in _NAME_MATCHER.findall(expr):
        names.update(n for n in alternatives.split("|") if n.startswith("churn"))
    names.update(_CHURN_NAME.findall(_STRING_LITERAL.sub('""', expr)))
    return names


def documented_names() -> set[str]:
    """Families in docs/metrics.md plus the recording rules in prometheus/rules."""
    names = set(re.findall(r"`(churn[a-z0-9_:]*)`", METRICS_DOC.read_text(encoding="utf-8")))
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            names.update(rule["record"] for rule in group["rules"] if "record" in rule)
    return names


HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def undocumented(names: set[str], documented: set[str]) -> set[str]:
    missing = set()
    for name in names:
        if name in documented:
            continue
        base = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is None or base not in documented:
            missing.add(name)
    return missing


BOARDS = load_dashboards()


@pytest.fixture(params=sorted(BOARDS), ids=str)
def board(request: pytest.FixtureRequest) -> dict[str, Any]:
    return BOARDS[request.param]


# ----------------------------------------------------------------- generation


def _generator() -> Any:
    try:
        import grafana_foundation_sdk  # noqa: F401
    except ImportError:
        message = "grafana-foundation-sdk is not installed (a dev dependency)"
        if in_ci():
            pytest.fail(f"{message}; CI is set, so this is an error", pytrace=False)
        pytest.skip(message)
    from grafana import generate

    return generate


def test_checked_in_dashboards_are_what_the_generator_writes() -> None:
    generate = _generator()
    files = generate.generate()
    assert sorted(files) == sorted(f"{uid}.json" for uid in EXPECTED)
    stale = generate.stale_files(files)
    assert not stale, f"regenerate with `python -m grafana.generate`; out of date: {stale}"


def test_generation_is_deterministic(tmp_path: Path) -> None:
    generate = _generator()
    first, second = generate.generate(), generate.generate()
    assert first == second
    generate.write(first, tmp_path)
    (tmp_path / "stray.json").write_text("{}", encoding="utf-8")
    assert generate.stale_files(first, tmp_path) == ["stray.json"]
    generate.write(first, tmp_path)
    assert generate.stale_files(first, tmp_path) == []


def test_generator_check_mode_exit_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate = _generator()
    monkeypatch.setattr(generate, "DASHBOARDS_DIR", tmp_path)
    assert generate.main(["--check"]) == 1
    generate.write(generate.generate(), tmp_path)
    assert generate.main(["--check"]) == 0


# ----------------------------------------------------------------- dashboards


def test_every_dashboard_exists_with_a_stable_uid_and_title() -> None:
    assert {uid: b["title"] for uid, b in BOARDS.items()} == EXPECTED
    for path in DASHBOARDS_DIR.glob("*.json"):
        assert path.stem == json.loads(path.read_text(encoding="utf-8"))["uid"]


def test_dashboard_settings(board: dict[str, Any]) -> None:
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert board["id"] is None, "a provisioned dashboard must not pin a database id"
    assert TAG in board["tags"]
    assert board["description"]
    assert board["time"]["to"] == "now"


def test_panel_ids_and_titles_are_unique(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in iter_panels(board)]
    assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
    assert all(isinstance(i, int) and i > 0 for i in ids)
    titles = [p["title"] for p in iter_panels(board) if p["type"] != "row"]
    assert len(titles) == len(set(titles)), "panel titles name the queries in the live test"


def test_panels_fit_the_grid_without_overlapping(board: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in board["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["w"] > 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                other = cells.setdefault((x, y), panel["title"])
                assert other == panel["title"], f"{panel['title']!r} overlaps {other!r}"


def test_every_datasource_reference_is_the_provisioned_prometheus(board: dict[str, Any]) -> None:
    def walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "datasource":
                    yield path, value
                yield from walk(value, f"{path}.{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                yield from walk(value, f"{path}[{i}]")

    refs = list(walk(board, board["uid"]))
    wrong = [(path, ref) for path, ref in refs if ref != DATASOURCE]
    assert not wrong, wrong
    # ... and none is left implicit (the default datasource) where a query runs.
    for panel in iter_panels(board):
        if panel["type"] in QUERYLESS_TYPES:
            continue
        assert panel.get("datasource") == DATASOURCE, panel["title"]
        for target in panel["targets"]:
            assert target.get("datasource") == DATASOURCE, (panel["title"], target["refId"])
    for variable in variables(board):
        if variable["type"] == "query":
            assert variable.get("datasource") == DATASOURCE, variable["name"]
    for annotation in board.get("annotations", {}).get("list", []):
        assert annotation.get("datasource") == DATASOURCE, annotation["name"]


def test_every_variable_used_is_defined_and_every_defined_one_is_used(
    board: dict[str, Any],
) -> None:
    defined = [v["name"] for v in variables(board)]
    assert len(defined) == len(set(defined))
    used = used_variables(board)
    assert used <= set(defined), f"undefined variables: {sorted(used - set(defined))}"
    assert set(defined) <= used, f"unused variables: {sorted(set(defined) - used)}"


def test_variables_come_before_the_variables_they_depend_on(board: dict[str, Any]) -> None:
    seen: set[str] = set()
    for variable in variables(board):
        for match in VARIABLE_REF.finditer(variable_query(variable)):
            name = next(g for g in match.groups() if g)
            assert name in seen, f"{variable['name']} uses ${name} defined after it"
        seen.add(variable["name"])


def test_every_panel_has_a_query_and_a_description(board: dict[str, Any]) -> None:
    for panel in iter_panels(board):
        if panel["type"] in QUERYLESS_TYPES:
            continue
        targets = panel.get("targets") or []
        assert targets and all(t.get("expr", "").strip() for t in targets), panel["title"]
        ref_ids = [t["refId"] for t in targets]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        assert len(panel.get("description", "")) >= 60, f"{panel['title']}: say what it means"


def test_every_panel_sets_units_and_thresholds_or_mappings(board: dict[str, Any]) -> None:
    for panel in iter_panels(board):
        if panel["type"] in QUERYLESS_TYPES:
            continue
        defaults = panel.get("fieldConfig", {}).get("defaults", {})
        assert defaults.get("unit") or defaults.get("mappings"), f"{panel['title']}: no unit"
        steps = defaults.get("thresholds", {}).get("steps", [])
        assert steps and steps[0]["value"] is None, f"{panel['title']}: no thresholds"


def test_tables_with_several_queries_merge_them(board: dict[str, Any]) -> None:
    for panel in iter_panels(board):
        if panel["type"] == "table" and len(panel["targets"]) > 1:
            ids = [t["id"] for t in panel.get("transformations", [])]
            assert ids[:1] == ["merge"], panel["title"]
            assert all(t.get("format") == "table" and t.get("instant") for t in panel["targets"])


def test_the_feature_bar_chart_pivots_reference_and_current_over_bins() -> None:
    board = BOARDS["churn-feature-distributions"]
    charts = [p for p in iter_panels(board) if p["type"] == "barchart"]
    assert len(charts) == 1
    chart = charts[0]
    (target,) = chart["targets"]
    assert "churn_feature_bin_ratio" in target["expr"]
    assert target["format"] == "table" and target["instant"]
    matrix = chart["transformations"][0]
    assert matrix["id"] == "groupingToMatrix"
    assert matrix["options"]["columnField"] == "dataset"
    assert matrix["options"]["rowField"] == "bin"
    assert chart["options"]["xField"] == "bin"


def _doc_section(title: str) -> str:
    """The text of the docs/metrics.md section whose heading starts with ``title``."""
    text = METRICS_DOC.read_text(encoding="utf-8")
    match = re.search(rf"^## {re.escape(title)}.*?(?=^## |\Z)", text, re.M | re.S)
    assert match, f"docs/metrics.md has no section {title!r}"
    return match.group(0)


def test_the_comparison_dashboard_shows_every_comparison_family_for_both_roles() -> None:
    board = BOARDS["churn-model-comparison"]
    queries = list(iter_queries(board))
    used = {name for q in queries for name in metric_names(q.expr)}
    families = set(
        re.findall(r"^\| `(churn_comparison_\w+)`", _doc_section("Exporter: champion"), re.M)
    )
    assert len(families) >= 13, families
    assert families <= used, f"comparison families no panel shows: {sorted(families - used)}"
    # Both score distributions (served and shadow) and both versions the API holds.
    for name in (
        "churn_api_prediction_score_bucket",
        "churn_api_shadow_score_bucket",
        "churn_api_model_info",
        "churn_api_shadow_model_info",
    ):
        assert name in used, name
    # The per-role families are drawn per role, each role in its own query.
    per_role = ("churn_comparison_performance", "churn_comparison_prediction_drift_psi")
    for role in ("champion", "challenger"):
        assert any(
            f'role="{role}"' in q.expr and any(f in q.expr for f in per_role) for q in queries
        ), role
    for panel in iter_panels(board):
        exprs = [t["expr"] for t in panel.get("targets", [])]
        if any("churn_comparison_performance" in e for e in exprs) and panel["type"] != "table":
            assert all(any(f'role="{r}"' in e for e in exprs) for r in ("champion", "challenger"))
    # The verdict uses the alert's own series, thresholds included, never a number of its own.
    (verdict,) = [p for p in iter_panels(board) if p["title"].startswith("Verdict")]
    (target,) = verdict["targets"]
    for name in (
        "churn_comparison_auc_difference",
        "churn_comparison_auc_difference_pvalue",
        "churn_comparison_pvalue_threshold",
        "churn_comparison_paired_rows",
        "churn_comparison_min_paired_rows",
    ):
        assert name in metric_names(target["expr"]), name


def test_every_metric_name_in_a_query_is_documented_or_recorded() -> None:
    documented = documented_names()
    problems = {}
    for query in all_queries():
        missing = undocumented(metric_names(query.expr), documented)
        if missing:
            problems[query.key] = sorted(missing)
    assert not problems, f"not in docs/metrics.md nor a recording rule: {problems}"


def test_metric_name_extraction() -> None:
    expr = (
        'sum(rate(churn_api_requests_total{job="churn-api", route=~"churn_x"}[5m]))'
        " / churn_api:request_error_ratio:rate5m + churn:feature_drifted:count"
        ' + label_values({__name__=~"churn_window_rows|up"}, model)'
    )
    assert metric_names(expr) == {
        "churn_api_requests_total",
        "churn_api:request_error_ratio:rate5m",
        "churn:feature_drifted:count",
        "churn_window_rows",
    }
    assert (
        undocumented({"churn_api_prediction_score_bucket"}, {"churn_api_prediction_score"}) == set()
    )
    assert undocumented({"churn_nope_bucket"}, {"churn_api_prediction_score"}) == {
        "churn_nope_bucket"
    }


def test_recording_rules_are_reused() -> None:
    """The dashboards read the recording rules instead of repeating their expressions."""
    used = {name for q in all_queries() for name in metric_names(q.expr)}
    recorded = {n for n in documented_names() if ":" in n}
    assert recorded <= used, f"recording rules no dashboard shows: {sorted(recorded - used)}"


def test_dashboards_link_to_each_other(board: dict[str, Any]) -> None:
    tag_links = [link for link in board["links"] if link["type"] == "dashboards"]
    assert tag_links and all(TAG in link["tags"] and link["includeVars"] for link in tag_links)
    urls = [link["url"] for link in board["links"] if link["type"] == "link"]
    for panel in iter_panels(board):
        for override in panel.get("fieldConfig", {}).get("overrides", []):
            for prop in override["properties"]:
                if prop["id"] == "links":
                    urls.extend(link["url"] for link in prop["value"])
    for url in urls:
        match = re.match(r"^/d/([\w-]+)", url)
        if match:
            assert match.group(1) in BOARDS, f"{board['uid']} links to unknown {url}"


def test_alertmanager_dashboard_links_resolve_to_dashboards_with_a_model_variable() -> None:
    uids = set()
    for group in yaml.safe_load(ALERTS_FILE.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                uids.add(rule["annotations"]["dashboard_uid"])
    template = AM_TEMPLATE.read_text(encoding="utf-8")
    uids.update(re.findall(r'or \.Annotations\.dashboard_uid "([^"]+)"', template))
    assert "/d/" in template and "var-model=" in template
    assert uids >= {
        "churn-data-drift",
        "churn-model-performance",
        "churn-model-comparison",
        "churn-service",
    }
    for uid in sorted(uids):
        assert uid in BOARDS, f"the alert templates link to {uid}, which no dashboard has"
        assert "model" in {v["name"] for v in variables(BOARDS[uid])}, uid


def test_model_and_feature_variables() -> None:
    for uid, board in BOARDS.items():
        names = {v["name"]: v for v in variables(board)}
        assert "model" in names, uid
        assert names["model"]["query"].startswith("label_values("), uid
        if "feature" in names:
            assert 'model="$model"' in names["feature"]["query"], uid
    assert "feature" in {v["name"] for v in variables(BOARDS["churn-data-drift"])}
    assert "feature" in {v["name"] for v in variables(BOARDS["churn-feature-distributions"])}
    assert "study" in {v["name"] for v in variables(BOARDS["churn-optuna"])}


def test_docs_describe_every_dashboard() -> None:
    text = DASHBOARDS_DOC.read_text(encoding="utf-8")
    for uid, title in EXPECTED.items():
        assert f"/d/{uid}" in text and f"grafana/dashboards/{uid}.json" in text, uid
        assert title in text, title
    assert "python -m grafana.generate" in text


# ----------------------------------------------------------------- provisioning

# Keys of Grafana's provisioning files (administration/provisioning documentation),
# with their types; the first set of each pair is required.
DATASOURCE_REQUIRED = {"name": str, "type": str}
DATASOURCE_OPTIONAL = {
    "uid": str,
    "access": str,
    "orgId": int,
    "url": str,
    "user": str,
    "database": str,
    "basicAuth": bool,
    "basicAuthUser": str,
    "withCredentials": bool,
    "isDefault": bool,
    "jsonData": dict,
    "secureJsonData": dict,
    "version": int,
    "editable": bool,
}
PROVIDER_REQUIRED = {"name": str, "options": dict}
PROVIDER_OPTIONAL = {
    "orgId": int,
    "folder": str,
    "folderUid": str,
    "type": str,
    "disableDeletion": bool,
    "updateIntervalSeconds": int,
    "allowUiUpdates": bool,
}
PROVIDER_OPTIONS = {"path": str, "foldersFromFilesStructure": bool}


def _check_keys(
    item: dict[str, Any], required: dict[str, type], optional: dict[str, type], what: str
) -> None:
    for key in required:
        assert key in item, f"{what}: missing required {key}"
    for key, value in item.items():
        kind = required.get(key) or optional.get(key)
        assert kind is not None, f"{what}: {key} is not a documented field"
        # bool is an int in Python: an int field must not hold true/false.
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), (
            f"{what}: {key} should be {kind.__name__}, got {value!r}"
        )


def test_datasource_provisioning_follows_the_documented_schema() -> None:
    doc = yaml.safe_load(DATASOURCES_YML.read_text(encoding="utf-8"))
    assert set(doc) <= {"apiVersion", "datasources", "deleteDatasources", "prune"}
    assert doc["apiVersion"] == 1
    sources = doc["datasources"]
    assert isinstance(sources, list) and sources
    for source in sources:
        _check_keys(source, DATASOURCE_REQUIRED, DATASOURCE_OPTIONAL, source.get("name", "?"))
        assert source.get("access", "proxy") in {"proxy", "direct"}
    assert sum(bool(s.get("isDefault")) for s in sources) == 1, "exactly one default"
    (prometheus,) = [s for s in sources if s["type"] == "prometheus"]
    assert prometheus["uid"] == DATASOURCE["uid"]
    assert prometheus["url"] == "http://prometheus:9090"
    assert prometheus["isDefault"] is True
    assert prometheus["access"] == "proxy"


def test_dashboard_provisioning_follows_the_documented_schema() -> None:
    doc = yaml.safe_load(PROVIDERS_YML.read_text(encoding="utf-8"))
    assert set(doc) == {"apiVersion", "providers"}
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    _check_keys(provider, PROVIDER_REQUIRED, PROVIDER_OPTIONAL, provider.get("name", "?"))
    _check_keys(provider["options"], {"path": str}, PROVIDER_OPTIONS, "options")
    assert provider["type"] == "file"
    assert provider["folder"] == "Churn Monitor"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["updateIntervalSeconds"] > 0


def test_schema_checker_rejects_mistakes() -> None:
    with pytest.raises(AssertionError, match="missing required"):
        _check_keys({}, PROVIDER_REQUIRED, PROVIDER_OPTIONAL, "p")
    with pytest.raises(AssertionError, match="not a documented field"):
        _check_keys({"name": "p", "options": {}, "paht": "x"}, PROVIDER_REQUIRED, {}, "p")
    with pytest.raises(AssertionError, match="should be int"):
        _check_keys(
            {"name": "p", "options": {}, "orgId": True}, PROVIDER_REQUIRED, PROVIDER_OPTIONAL, "p"
        )
