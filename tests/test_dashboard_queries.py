"""Every dashboard query, run by a real Prometheus against a real exporter.

The test starts the exporter (``churn-monitor run --mode continuous`` on the demo
current window, which drifts) and Prometheus 2.x on free 127.0.0.1 ports, Prometheus
configured from prometheus/prometheus.yml by ``exporter.promconfig`` with the repo's
recording and alert rules, 1 s scrape and evaluation intervals. Then it does what
Grafana would do with each dashboard: resolve the template variables with their own
queries (``label_values``), substitute them and Grafana's interval variables, and run
every panel, variable and annotation query. Each must be valid PromQL, and each must
return at least one series — except the queries listed in :data:`EXPECTED_EMPTY`, whose
data needs a source this test does not start yet. Those must still be valid, and must
stay empty: a listed query that returns data fails the test, so the list cannot go
stale.

Extending the stack: the :func:`sources` fixture lists what Prometheus scrapes. A
source that makes some of the data exist says so in ``provides`` (the reasons below);
the queries listed under a provided reason are then checked like all others. When the
full stack (API with traffic, a trained model, an Optuna study) is in the fixture,
every reason is provided and :data:`EXPECTED_EMPTY` can go.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from exporter import promconfig

from .support import REPO, Process, churn_monitor, free_port, http_get, wait_until
from .test_dashboards import (
    VARIABLE_REF,
    Query,
    all_queries,
    iter_queries,
    load_dashboards,
    variables,
)

EXPORTER_CONFIG = REPO / "configs" / "monitoring" / "monitoring_config.yaml"

# ------------------------------------------------------------- expected empty

NEEDS_API = "needs the prediction API (churn-monitor api) scraped as job churn-api, with traffic"
NEEDS_MODEL = (
    "needs a trained model: the exporter's performance job exports nothing without model "
    "scores and labels"
)
NEEDS_OPTUNA = "needs the exporter's optuna job and a study in its storage (churn-monitor train)"
NEEDS_FIRING_ALERT = (
    "needs a firing alert: every rule waits `for:` 2m or longer, more than this test runs"
)

#: Queries that return nothing today, by the reason. Keys are ``Query.key``:
#: "<dashboard uid>: <panel title> [<refId>]", "<uid>: variable <name>" or
#: "<uid>: annotation <name>".
EXPECTED_EMPTY: dict[str, frozenset[str]] = {
    NEEDS_API: frozenset(
        {
            "churn-model-performance: Predicted churn ratio [C]",
            "churn-service: API up [A]",
            "churn-service: Request rate [A]",
            "churn-service: Error ratio (5xx) [A]",
            "churn-service: p95 latency [A]",
            "churn-service: Served model version [A]",
            "churn-service: Request rate by route and status [A]",
            "churn-service: 5xx error ratio over time [A]",
            "churn-service: Request latency percentiles [A]",
            "churn-service: Request latency percentiles [B]",
            "churn-service: Request latency percentiles [C]",
            "churn-service: Inference latency [A]",
            "churn-service: Inference latency [B]",
            "churn-service: Churn score distribution [A]",
            "churn-service: Predictions by predicted label [A]",
            "churn-service: Served churn ratio and score quantiles [A]",
            "churn-service: Served churn ratio and score quantiles [B]",
            "churn-service: Served churn ratio and score quantiles [C]",
        }
    ),
    NEEDS_MODEL: frozenset(
        {
            "churn-model-performance: Labelled rows [A]",
            "churn-model-performance: Revenue at risk [A]",
            *(
                f"churn-model-performance: {title} [{ref}]"
                for title in ("ROC AUC", "F1", "Accuracy", "Precision", "Recall")
                for ref in "ABCDE"
            ),
            *(
                f"churn-model-performance: Metrics against baseline and minimum [{r}]"
                for r in "ABCDEFGH"
            ),
            "churn-model-performance: Prediction drift (PSI) [A]",
            "churn-model-performance: Prediction drift (PSI) [B]",
            "churn-model-performance: Prediction drift (KS) [A]",
            "churn-model-performance: Predicted churn ratio [A]",
            "churn-model-performance: Predicted churn ratio [B]",
            "churn-model-performance: Revenue at risk over time [A]",
            "churn-model-performance: Labelled rows over time [A]",
            "churn-optuna: Best value over time [B]",
        }
    ),
    NEEDS_OPTUNA: frozenset(
        {
            "churn-optuna: variable study",
            "churn-optuna: Best value [A]",
            "churn-optuna: Trials [A]",
            "churn-optuna: Failed trials [A]",
            "churn-optuna: Time since last trial [A]",
            "churn-optuna: Best value over time [A]",
            "churn-optuna: Trials by state [A]",
            "churn-optuna: Best parameters [A]",
        }
    ),
    NEEDS_FIRING_ALERT: frozenset(
        {
            *(
                f"{uid}: annotation Churn alerts"
                for uid in (
                    "churn-data-drift",
                    "churn-model-performance",
                    "churn-feature-distributions",
                    "churn-optuna",
                    "churn-service",
                )
            ),
            "churn-data-drift: Firing drift alerts [A]",
            "churn-service: Alert history [A]",
        }
    ),
}

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
#: Stand-in for a variable that resolved to nothing (its queries are expected empty).
NO_VALUE = "no-value"
MAX_COMBINATIONS = 64


# --------------------------------------------------------------------- sources


@dataclass(frozen=True)
class Source:
    """A scrape target of the test's Prometheus.

    ``job`` is the scrape job of prometheus/prometheus.yml it fills
    (``promconfig.JOB_EXPORTER`` or ``promconfig.JOB_API``); ``provides`` names the
    :data:`EXPECTED_EMPTY` reasons whose data it makes exist.
    """

    job: str
    target: str
    provides: frozenset[str] = field(default_factory=frozenset)


@pytest.fixture
def exporter_source(tmp_path: Path) -> Iterator[Source]:
    """The exporter in continuous mode on the drifting demo window, jobs every 1.2 s."""
    workdir = tmp_path / "exporter"
    workdir.mkdir()
    setup = Process(
        churn_monitor("setup", "--config", str(EXPORTER_CONFIG)),
        tmp_path / "setup.log",
        cwd=workdir,
    )
    try:
        code = setup.popen.wait(120)
    finally:
        setup.stop()
    assert code == 0, f"churn-monitor setup failed:\n{setup.output()}"
    current = workdir / "data" / "demo" / "current.csv"
    assert current.is_file(), "churn-monitor setup wrote no demo current window"

    port = free_port()
    exporter = Process(
        churn_monitor(
            "run",
            "--mode",
            "continuous",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--interval",
            "0.02",
            "--config",
            str(EXPORTER_CONFIG),
            "--current",
            str(current),
        ),
        tmp_path / "exporter.log",
        cwd=workdir,
    )
    try:

        def has_drift() -> bool:
            assert exporter.alive(), f"the exporter exited:\n{exporter.output()}"
            status, body = http_get(f"http://127.0.0.1:{port}/metrics")
            return status == 200 and "churn_window_rows{" in body

        try:
            wait_until(has_drift, 90, "the exporter's first drift run")
        except AssertionError as err:
            raise AssertionError(f"{err}\nexporter log:\n{exporter.output()}") from None
        yield Source(promconfig.JOB_EXPORTER, f"127.0.0.1:{port}")
    finally:
        exporter.stop()


@pytest.fixture
def sources(exporter_source: Source) -> list[Source]:
    """Everything Prometheus scrapes. Extend with the API, a trained model, a study."""
    return [exporter_source]


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
        api=by_job.get(promconfig.JOB_API),
        alertmanager=None,
        prometheus=f"127.0.0.1:{port}",
        rules_dir=promconfig.PROMETHEUS_RULES_DIR,
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
            "--log.level=warn",
        ],
        tmp_path / "prometheus.log",
    )
    server = PrometheusServer(f"http://127.0.0.1:{port}", process)
    try:

        def ready() -> bool:
            assert process.alive(), f"prometheus exited:\n{process.output()}"
            return http_get(f"{server.url}/-/ready")[0] == 200

        wait_until(ready, 30, "Prometheus to be ready")
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


def expected_empty(provided: set[str]) -> set[str]:
    return {
        key for reason, keys in EXPECTED_EMPTY.items() if reason not in provided for key in keys
    }


@pytest.mark.integration
@pytest.mark.slow
def test_every_dashboard_query_runs_and_returns_data(
    prometheus: PrometheusServer, sources: list[Source]
) -> None:
    boards = load_dashboards()
    provided = {reason for s in sources for reason in s.provides}
    allowed_empty = expected_empty(provided)

    # Every query is valid PromQL (Prometheus answers errors at once, no waiting).
    errors = [f"{o.query.key}: {o.error}" for o in evaluate(prometheus, boards) if o.error]
    assert not errors, "invalid queries:\n" + "\n".join(errors)

    # Every query not expected empty returns data once the exporter ran and Prometheus
    # scraped it and evaluated the rules a few times.
    last: list[Outcome] = []

    def all_have_data() -> bool:
        last[:] = evaluate(prometheus, boards)
        return all(o.series for o in last if o.query.key not in allowed_empty)

    try:
        wait_until(all_have_data, 90, "every dashboard query to return data", interval=1.0)
    except AssertionError:
        empty = [
            f"{o.query.key}: {o.error or 'no series'} (query: {o.tried})"
            for o in last
            if not o.series and o.query.key not in allowed_empty
        ]
        raise AssertionError(
            "queries without data (a missing family, a wrong label, or a new source that "
            "belongs in EXPECTED_EMPTY):\n"
            + "\n".join(empty)
            + f"\nPrometheus log:\n{prometheus.process.output()}"
        ) from None

    # ... and the allow-list stays narrow: nothing on it returns data.
    unexpected = sorted(o.query.key for o in last if o.series and o.query.key in allowed_empty)
    assert not unexpected, f"these return data now; remove them from EXPECTED_EMPTY: {unexpected}"


def test_expected_empty_names_existing_queries_once() -> None:
    keys = {q.key for q in all_queries()}
    seen: set[str] = set()
    for reason, listed in EXPECTED_EMPTY.items():
        assert listed, f"empty reason {reason!r}: delete it"
        assert listed <= keys, f"{reason}: no such query {sorted(listed - keys)}"
        assert not listed & seen, f"listed under two reasons: {sorted(listed & seen)}"
        seen |= listed


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
