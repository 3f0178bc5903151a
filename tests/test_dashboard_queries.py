"""Every dashboard query, run by a real Prometheus against the real stack.

The stack is the one the dashboards are drawn for, every part a real process on a
free 127.0.0.1 port, stopped by pid:

* a champion trained into a real MLflow store, with its Optuna study
  (``mlflow_store`` of tests/api_fixtures.py), copied into the test's tmp dir, where the
  champion's version is registered again at the challenger alias (with the champion's
  reference as the challenger's): two versions, one at each alias;
* the prediction API (``churn-monitor api``) serving the champion, shadow-scoring every
  prediction with the challenger, and logging both scores and the feedback to a SQLite
  prediction log in the test's tmp dir;
* the simulator (``churn-monitor simulate --scenario sudden``) sending a few hundred
  drifted customers, their true outcome posted as feedback half a second later;
* the exporter (``churn-monitor run --mode continuous``) with its drift, performance,
  comparison (champion against challenger) and Optuna jobs every 1.2 s on that log (the
  minimum window and labelled rows lowered to what the simulator sends);
* Prometheus 2.x scraping the exporter and the API every second, configured from
  prometheus/prometheus.yml by ``exporter.ops.promconfig`` with the repo's recording and
  alert rules, every ``for:`` capped to 1 s (``promconfig_helpers.write_short_rules``), so the
  drift alerts fire and ``ALERTS`` has series.

Then the test does what Grafana would do with each dashboard: resolve the template
variables with their own queries (``label_values``), substitute them and Grafana's
interval variables, and run every panel, variable and annotation query through the
Prometheus HTTP API. Each must be valid PromQL and return at least one series. Queries
over ``rate(...[$__rate_interval])`` need two scrapes of a counter, the alerts need the
rules evaluated: the test polls until everything has data, with a deadline.

It also checks that every ``churn_*`` name a dashboard or a rule uses exists in a real
scrape of the exporter or the API, and that every recording rule (``churn:*``,
``churn_api:*``) has a series in Prometheus.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.api_fixtures")

import yaml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from exporter.config import parse_config  # noqa: E402
from exporter.data import predlog  # noqa: E402
from exporter.model.registry import baseline_path  # noqa: E402
from exporter.model.roles import challenger_config  # noqa: E402
from exporter.ops import promconfig  # noqa: E402

from .api_fixtures import TrainedStore  # noqa: E402
from .promconfig_helpers import write_short_rules  # noqa: E402
from .support import (  # noqa: E402
    Process,
    churn_monitor,
    copy_store,
    free_port,
    http_get,
    wait_until,
)
from .test_dashboards import (  # noqa: E402
    RULES_DIR,
    VARIABLE_REF,
    Query,
    all_queries,
    iter_queries,
    load_dashboards,
    metric_names,
    variables,
)

pytest_plugins = ["tests.api_fixtures"]

#: What Grafana puts in for its own interval variables (the dashboards' time ranges are
#: hours; the test's data is seconds old, so the windows are short).
GRAFANA_GLOBALS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
}
RANGE_SECONDS = 300
STEP = "15s"
#: Stand-in for a variable that resolved to nothing (its queries then return nothing).
NO_VALUE = "no-value"
MAX_COMBINATIONS = 64

#: The exporter's schedule in minutes (1.2 s), and the cap on every rule's `for:`.
JOB_INTERVAL_MINUTES = "0.02"
MAX_FOR = "1s"
#: Traffic: RATE customers a second for DURATION seconds (300 rows), labels after
#: LABEL_DELAY seconds. The window and labelled-row minimums are below that.
RATE = "30"
DURATION = "10"
LABEL_DELAY = "0.5"
MIN_WINDOW_ROWS = 150
MIN_LABELED_ROWS = 100
#: Deadlines (generous: the machine may be busy). The API and the exporter start (each
#: imports MLflow); the simulator starts, sends for DURATION seconds and posts the last
#: labels; then every query has data once the exporter's jobs ran on the whole log,
#: Prometheus scraped it twice and the shortened alerts fired.
STARTUP = 180.0
SIMULATOR_DEADLINE = 180.0
DATA_DEADLINE = 180.0


# --------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """A scrape target of the test's Prometheus: ``job`` is the scrape job of
    prometheus/prometheus.yml it fills (``promconfig.JOB_EXPORTER`` or
    ``promconfig.JOB_API``)."""

    job: str
    target: str

    @property
    def metrics_url(self) -> str:
        return f"http://{self.target}/metrics"


def _rebased(node: Any, old: str, new: str) -> Any:
    """``node`` (a config mapping) with every string's ``old`` prefix made ``new``."""
    if isinstance(node, dict):
        return {key: _rebased(value, old, new) for key, value in node.items()}
    if isinstance(node, str):
        return node.replace(old, new)
    return node


def with_challenger(store: TrainedStore, target: Path) -> TrainedStore:
    """A copy of ``store`` in ``target`` whose champion version is registered again at
    the challenger alias, the champion's reference and baseline copied as the
    challenger's: the API shadow-scores it and the exporter compares the two, so every
    comparison family has both roles (the copies score alike: which one wins is not
    what this test is about). ``store`` itself, shared by other tests, is untouched."""
    from mlflow import MlflowClient

    root = copy_store(store.root, target)
    raw = _rebased(store.config_raw, str(store.root), str(root))
    config = parse_config(raw)
    challenger = challenger_config(config)
    assert challenger is not None
    uri = config.model.tracking_uri
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias(store.model_name, config.model.registry_alias)
    source = client.get_model_version_download_uri(store.model_name, champion.version)
    copy = client.create_model_version(store.model_name, source, run_id=champion.run_id)
    wait_until(
        lambda: client.get_model_version(store.model_name, copy.version).status == "READY",
        STARTUP,
        "the challenger's model version to be READY",
    )
    client.set_registered_model_alias(
        store.model_name, challenger.model.registry_alias, copy.version
    )
    reference = Path(config.data.reference_path)
    challenger_reference = Path(challenger.data.reference_path)
    challenger_reference.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(reference, challenger_reference)
    shutil.copyfile(baseline_path(reference), baseline_path(challenger_reference))
    return TrainedStore(root, raw, store.model_name, store.version, store.run_id)


def stack_config(tmp_path: Path, store: TrainedStore) -> Path:
    """The one config of the API, the simulator and the exporter: the trained store,
    a prediction log, reports and history in ``tmp_path``, small minimums."""
    raw = {
        **store.config_raw,
        "data": {
            **store.config_raw["data"],
            "current": {"kind": "sql", "url": f"sqlite:///{tmp_path / 'predictions.db'}"},
        },
        "data_drift_monitoring": {"min_window_rows": MIN_WINDOW_ROWS},
        "performance_monitoring": {"min_labeled_rows": MIN_LABELED_ROWS},
        "reports": {"dir": str(tmp_path / "reports")},
        "history": {"url": f"sqlite:///{tmp_path / 'history.db'}"},
        "api": {"model_poll_seconds": 1},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    # The log's tables exist before the exporter's first run (the API creates them too).
    engine = predlog.make_engine(raw["data"]["current"]["url"])
    try:
        predlog.create_tables(engine)
    finally:
        engine.dispose()
    return path


def scrape(url: str) -> str:
    status, body = http_get(url)
    assert status == 200, f"GET {url}: HTTP {status}"
    return body


@dataclass(frozen=True)
class Stack:
    """The scrape targets, and the simulator sending them traffic."""

    sources: list[Source]
    simulator: Process


@pytest.fixture
def stack(tmp_path: Path, mlflow_store: TrainedStore) -> Iterator[Stack]:
    """The API serving the champion and shadow-scoring the challenger with simulated
    drifting traffic, and the exporter monitoring its prediction log; yields once both
    serve /metrics (the simulator may still be sending)."""
    config = stack_config(tmp_path, with_challenger(mlflow_store, tmp_path / "store"))
    api_port, exporter_port = free_port(), free_port()
    api_target, exporter_target = f"127.0.0.1:{api_port}", f"127.0.0.1:{exporter_port}"
    processes: list[Process] = []
    try:
        # Both start at once (each imports MLflow for a few seconds).
        api = Process(
            churn_monitor(
                "api", "--config", str(config), "--host", "127.0.0.1", "--port", str(api_port)
            ),
            tmp_path / "api.log",
            cwd=tmp_path,
        )
        processes.append(api)
        exporter = Process(
            churn_monitor(
                "run",
                "--mode",
                "continuous",
                "--config",
                str(config),
                "--host",
                "127.0.0.1",
                "--port",
                str(exporter_port),
                "--interval",
                JOB_INTERVAL_MINUTES,
            ),
            tmp_path / "exporter.log",
            cwd=tmp_path,
        )
        processes.append(exporter)

        def serving(process: Process, name: str, url: str, needle: str) -> bool:
            assert process.alive(), f"the {name} exited:\n{process.output()}"
            return needle in scrape(url)

        # Readiness by /metrics, not /health: polling /health while the model loads
        # would count 503s, and an error ratio with data only because of them. The
        # challenger loads after the champion, off the request path: traffic starts once
        # it shadows, so every simulated customer is scored by both.
        wait_until(
            lambda: serving(api, "API", f"http://{api_target}/metrics", "churn_api_model_info{"),
            STARTUP,
            f"the API to serve the champion (log: {api.log_path})",
        )
        wait_until(
            lambda: serving(
                api, "API", f"http://{api_target}/metrics", "churn_api_shadow_model_info{"
            ),
            STARTUP,
            f"the API to shadow-score with the challenger (log: {api.log_path})",
        )
        simulator = Process(
            churn_monitor(
                "simulate",
                "--config",
                str(config),
                "--api",
                f"http://{api_target}",
                "--rate",
                RATE,
                "--duration",
                DURATION,
                "--scenario",
                "sudden",
                "--label-delay",
                LABEL_DELAY,
            ),
            tmp_path / "simulate.log",
            cwd=tmp_path,
        )
        processes.append(simulator)
        wait_until(
            lambda: serving(
                exporter, "exporter", f"http://{exporter_target}/metrics", "churn_exporter_"
            ),
            STARTUP,
            f"the exporter to serve /metrics (log: {exporter.log_path})",
        )
        yield Stack(
            [
                Source(promconfig.JOB_EXPORTER, exporter_target),
                Source(promconfig.JOB_API, api_target),
            ],
            simulator,
        )
    finally:
        for process in reversed(processes):
            process.stop()


@pytest.fixture
def sources(stack: Stack) -> list[Source]:
    return stack.sources


@dataclass
class PrometheusServer:
    url: str
    process: Process

    def api(self, path: str, **params: str) -> dict[str, Any]:
        query = urllib.parse.urlencode(params)
        status, body = http_get(f"{self.url}/api/v1/{path}?{query}", timeout=10)
        try:
            data = json.loads(body)
        except ValueError:
            data = {"status": "error", "error": f"HTTP {status}: {body[:200]}"}
        return data


@pytest.fixture
def prometheus(
    tmp_path: Path, require_binary: Callable[[str], str], sources: list[Source]
) -> Iterator[PrometheusServer]:
    binary = require_binary("prometheus")
    by_job = {s.job: s.target for s in sources}
    port = free_port()
    config = promconfig.render_prometheus_config(
        promconfig.load_yaml(promconfig.PROMETHEUS_CONFIG),
        exporter=by_job[promconfig.JOB_EXPORTER],
        api=by_job[promconfig.JOB_API],
        alertmanager=None,
        prometheus=f"127.0.0.1:{port}",
        rules_dir=write_short_rules(tmp_path / "rules", max_for=MAX_FOR),
        scrape_interval="1s",
        evaluation_interval="1s",
    )
    config_path = promconfig.write_config(config, tmp_path / "prometheus.yml")
    process = Process(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--rules.alert.resend-delay=1s",
            "--log.level=warn",
        ],
        tmp_path / "prometheus.log",
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process)
    try:

        def ready() -> bool:
            assert process.alive(), f"prometheus exited:\n{process.output()}"
            return http_get(f"{server.url}/-/ready")[0] == 200

        wait_until(ready, STARTUP, "Prometheus to be ready")
        groups = server.api("rules")["data"]["groups"]
        assert groups, f"Prometheus loaded no rule group:\n{process.output()}"
        yield server
    finally:
        process.stop()


# ------------------------------------------------------------------ evaluation

_LABEL_VALUES = re.compile(
    r"^\s*label_values\(\s*(?:(?P<match>.+?)\s*,\s*)?(?P<label>\w+)\s*\)\s*$"
)


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with ``$name``, ``${name}``, ``${name:fmt}`` and ``[[name]]`` replaced."""

    def repl(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name in values:
            return values[name]
        raise KeyError(f"no value for ${name} in {expr!r}")

    return VARIABLE_REF.sub(repl, expr)


def run(prom: PrometheusServer, kind: str, expr: str) -> tuple[str | None, int]:
    """Run one substituted query as Grafana would: (error or None, number of results)."""
    now = time.time()
    if kind == "variable":
        match = _LABEL_VALUES.match(expr)
        if match is None:
            return f"unsupported variable query {expr!r}", 0
        params = {"start": str(now - RANGE_SECONDS), "end": str(now)}
        if match.group("match"):
            params["match[]"] = match.group("match")
        data = prom.api(f"label/{match.group('label')}/values", **params)
    elif kind == "instant":
        data = prom.api("query", query=expr, time=str(now))
    else:
        data = prom.api(
            "query_range", query=expr, start=str(now - RANGE_SECONDS), end=str(now), step=STEP
        )
    if data.get("status") != "success":
        return f"{data.get('errorType', 'error')}: {data.get('error')}", 0
    result = data["data"]
    if kind != "variable":
        result = result["result"]
        if data["data"]["resultType"] == "scalar":
            return None, 1
    return None, len(result)


def variable_values(prom: PrometheusServer, board: dict[str, Any]) -> dict[str, list[str]]:
    """Each template variable's options, resolved in order like Grafana (first value of
    the earlier variables substituted into the later ones' queries)."""
    resolved: dict[str, list[str]] = {}
    for variable in variables(board):
        current = {name: (vals[0] if vals else NO_VALUE) for name, vals in resolved.items()}
        expr = substitute(str(variable["query"]), {**GRAFANA_GLOBALS, **current})
        match = _LABEL_VALUES.match(expr)
        assert match, f"{board['uid']}: unsupported variable query {expr!r}"
        params = {"start": str(time.time() - RANGE_SECONDS), "end": str(time.time())}
        if match.group("match"):
            params["match[]"] = match.group("match")
        data = prom.api(f"label/{match.group('label')}/values", **params)
        resolved[variable["name"]] = sorted(data.get("data") or [])
    return resolved


def combinations(query: Query, options: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """The variable assignments to try for ``query`` (every option of each variable it
    uses: a KS panel has data for numeric features, a Jensen-Shannon one for
    categorical ones)."""
    names = sorted(
        {next(g for g in m.groups() if g) for m in VARIABLE_REF.finditer(query.expr)}
        - GRAFANA_GLOBALS.keys()
    )
    choices = [list(options.get(name) or [NO_VALUE]) for name in names]
    combos = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]
    return [{**GRAFANA_GLOBALS, **c} for c in combos[:MAX_COMBINATIONS]]


@dataclass
class Outcome:
    query: Query
    error: str | None = None
    series: int = 0
    tried: str = ""


def evaluate(prom: PrometheusServer, boards: Mapping[str, dict[str, Any]]) -> list[Outcome]:
    outcomes = []
    for uid, board in sorted(boards.items()):
        options = variable_values(prom, board)
        for query in iter_queries(board):
            outcome = Outcome(query)
            for values in combinations(query, options):
                expr = substitute(query.expr, values)
                error, series = run(prom, query.kind, expr)
                outcome.tried = expr
                if error is not None:
                    outcome.error = f"{error} (query: {expr})"
                    break
                if series:
                    outcome.series = series
                    break
            outcomes.append(outcome)
        assert uid == board["uid"]
    return outcomes


# ------------------------------------------------------------------------- tests


def rule_metric_names() -> set[str]:
    """The ``churn_*`` names the alert and recording rules use: in expressions, and in
    the queries their annotation templates run (inside ``printf`` strings)."""
    names: set[str] = set()
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in promconfig.load_yaml(path)["groups"]:
            for rule in group["rules"]:
                names |= metric_names(rule["expr"])
                for text in (rule.get("annotations") or {}).values():
                    names.update(re.findall(r"(?<![\w:])churn_[a-z0-9_]+", text))
    return names


def recorded_names() -> set[str]:
    return {
        rule["record"]
        for path in sorted(RULES_DIR.glob("*.yml"))
        for group in promconfig.load_yaml(path)["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def scraped_names(sources: Sequence[Source]) -> set[str]:
    """Sample names (``_total``, ``_bucket``, ... included) of a scrape of each source."""
    return {
        sample.name
        for source in sources
        for family in text_string_to_metric_families(scrape(source.metrics_url))
        for sample in family.samples
    }


@pytest.mark.integration
@pytest.mark.slow
def test_every_dashboard_query_runs_and_returns_data(
    prometheus: PrometheusServer, stack: Stack, sources: list[Source]
) -> None:
    boards = load_dashboards()

    # Every query is valid PromQL (Prometheus answers errors at once, no waiting).
    errors = [f"{o.query.key}: {o.error}" for o in evaluate(prometheus, boards) if o.error]
    assert not errors, "invalid queries:\n" + "\n".join(errors)

    # All the traffic is logged: the simulator sent every customer and label, and exited.
    simulator = stack.simulator
    try:
        code = simulator.popen.wait(SIMULATOR_DEADLINE)
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"the simulator had not exited {SIMULATOR_DEADLINE:.0f} s after the stack was "
            f"up:\n{simulator.output()}"
        )
    assert code == 0, f"the simulator failed ({code}):\n{simulator.output()}"

    # Every query returns data once the exporter's jobs ran on the traffic, Prometheus
    # scraped both twice and the shortened alerts fired.
    last: list[Outcome] = []

    def all_have_data() -> bool:
        last[:] = evaluate(prometheus, boards)
        return all(o.series for o in last)

    try:
        wait_until(all_have_data, DATA_DEADLINE, "every dashboard query to return data", 1.0)
    except AssertionError:
        empty = [
            f"{o.query.key}: {o.error or 'no series'} (query: {o.tried})"
            for o in last
            if not o.series
        ]
        raise AssertionError(
            "queries without data (a missing family, a wrong label or a wrong query):\n"
            + "\n".join(empty)
            + f"\nPrometheus log:\n{prometheus.process.output()}"
        ) from None

    # Every churn_* name of a dashboard or a rule is in a real scrape ...
    used = {n for q in all_queries() for n in metric_names(q.expr)} | rule_metric_names()
    raw_names = {n for n in used if ":" not in n}
    assert "churn_api_predictions_total" in raw_names  # the scanners see rules and boards
    missing = raw_names - scraped_names(sources)
    assert not missing, f"used by a dashboard or a rule, in no scrape: {sorted(missing)}"

    # ... and every recording rule (dashboards use them) has a series in Prometheus.
    data = prometheus.api("query", query='group by (__name__) ({__name__=~"churn(_api)?:.+"})')
    assert data.get("status") == "success", data
    recorded = {r["metric"]["__name__"] for r in data["data"]["result"]}
    assert {n for n in used if ":" in n} <= recorded_names()
    assert recorded_names() <= recorded, (
        f"recording rules without a series: {sorted(recorded_names() - recorded)}"
    )


def test_substitution_and_combinations() -> None:
    query = Query(
        "u", "p [A]", 'x{model="$model", feature=~"${feature}"}[$__rate_interval]', "range"
    )
    combos = combinations(query, {"model": ["m"], "feature": ["a", "b"]})
    assert [substitute(query.expr, c) for c in combos] == [
        'x{model="m", feature=~"a"}[1m]',
        'x{model="m", feature=~"b"}[1m]',
    ]
    assert substitute("[[model]] ${model:regex}", {"model": "m"}) == "m m"
    assert combinations(Query("u", "v", "up", "instant"), {}) == [GRAFANA_GLOBALS]
    with pytest.raises(KeyError):
        substitute("$nope", {})
