"""Champion against challenger on live traffic, through the shipped stack (issue 18).

Two real models are registered with `churn-monitor train`: the champion trained on
customers whose strongest features are shuffled across rows (their signal gone, so it
is clearly worse) and the challenger, at the ``challenger`` alias, trained on the same
customers intact. `churn-monitor up` (the demo config; the test changes only ports,
paths, timers, the traffic and the comparison's thresholds, through the config's keys)
then runs the API, which shadow-scores every prediction with the challenger, the exporter with its
comparison job, the sinks, Alertmanager, Prometheus on the shipped rules and routes,
and the simulator, which sends customers without drift and their outcomes a second
later.

- The exporter reports the challenger as better (higher ROC AUC, DeLong p below 0.01)
  on at least ``model_comparison.min_paired_rows`` paired labelled rows.
- ChurnChallengerOutperforms fires and reaches the history webhook (severity info).
- `churn-monitor promote` moves the champion alias to the challenger on that evidence,
  and the API's /health and the exporter's churn_model_info follow the new champion.

Retraining is off (the default, and the demo config does not enable it): the alert
stays in the history and the promotion is the manual one, so nothing else moves the
alias meanwhile. Every wait is a poll with a deadline; `up` is stopped by pid.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import parse_config
from exporter.data import synthetic
from exporter.model.roles import challenger_config

from . import test_stack_e2e as stack_e2e
from .support import wait_until
from .test_stack_e2e import DEADLINE, MODEL, demo_config, history, logs, run_cli

pytestmark = [pytest.mark.integration, pytest.mark.slow]

#: `churn-monitor up` as tests/test_stack_e2e.py starts and stops it (the same fixture).
stack_up = stack_e2e.stack_up

#: The comparison's settings: 300 paired labelled rows, DeLong p below 0.01, a run
#: every 3 s.
COMPARISON = {"min_paired_rows": 300, "pvalue": 0.01, "check_interval_minutes": 0.05}
ALERT = "ChurnChallengerOutperforms"
#: Shuffled in the champion's training data: the churn relation's strongest inputs
#: (those of tests/test_comparison.py), the proxy TotalCharges (~ tenure x charges) and
#: three more of its inputs. The champion's ROC AUC on intact customers is then 0.1 to
#: 0.2 below the challenger's: 300 paired rows give a DeLong p well below 0.01.
SCRAMBLED = (
    "Contract",
    "tenure",
    "TotalCharges",
    "InternetService",
    "MonthlyCharges",
    "PaymentMethod",
    "OnlineSecurity",
    "TechSupport",
)


#: Metric name -> (labels, value) of each sample.
Metrics = dict[str, list[tuple[dict[str, str], float]]]


def register_models(workdir: Path, config: Path) -> None:
    """The champion (version 1, scrambled) and the challenger (version 2, intact),
    each with its reference snapshot, trained by `churn-monitor train`."""
    customers = synthetic.generate_customers(1500, seed=181)
    scrambled = customers.copy()
    rng = np.random.default_rng(5)
    for column in SCRAMBLED:
        scrambled[column] = rng.permutation(scrambled[column].to_numpy())
    scrambled.to_csv(workdir / "scrambled.csv", index=False)
    customers.to_csv(workdir / "intact.csv", index=False)
    # The challenger's config: its alias and reference path, as the product derives them.
    challenger = challenger_config(parse_config(yaml.safe_load(config.read_text())))
    assert challenger is not None
    challenger_file = workdir / "challenger.yaml"
    challenger_file.write_text(yaml.safe_dump(challenger.model_dump(mode="json")))
    run_cli(workdir, config, "train", "--data", "scrambled.csv", "--trials", "1")
    run_cli(workdir, challenger_file, "train", "--data", "intact.csv", "--trials", "1")


def samples(text: str) -> Metrics:
    """Metric name -> (labels, value) of each sample in a Prometheus exposition."""
    out: Metrics = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(metrics: Metrics, name: str, **labels: str) -> Any:
    """The value of the one sample of `name` with these labels (None: no such sample)."""
    found = [v for have, v in metrics.get(name, []) if labels.items() <= have.items()]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else None


def test_a_better_challenger_is_reported_alerted_and_promoted(
    stack_up: Any, tmp_path: Path
) -> None:
    config, ports = demo_config(
        tmp_path,
        model_comparison=COMPARISON,
        # Traffic without drift: 300 labelled customers in about 7 s.
        simulator={"rate": 50, "scenario": "none", "label_delay_seconds": 1},
        # A timer: the API looks for a moved alias every second.
        api={"model_poll_seconds": 1.0},
        # Explicit: no automatic promotion races the manual one.
        retraining={"enabled": False},
    )
    register_models(tmp_path, config)
    stack_up(config)
    exporter = f"http://127.0.0.1:{ports['exporter']}"
    api = f"http://127.0.0.1:{ports['api']}"

    # The API serves the champion and, once loaded (off the readiness path), shadow-scores
    # every prediction with the challenger.
    def shadow_scoring() -> dict[str, Any] | None:
        body = httpx.get(f"{api}/health", timeout=30).json()
        return body if body["challenger_version"] is not None else None

    health = wait_until(shadow_scoring, DEADLINE, "the API to load the challenger", 0.5)
    assert (health["model"]["version"], health["challenger_version"]) == ("1", "2"), health

    # The exporter reports the challenger as better on at least min_paired_rows paired
    # labelled rows. Polled: a run just past 300 rows could miss p < 0.01 by chance
    # (300 consecutive customers of this traffic gave p below 0.005, most far below);
    # more rows only add evidence.
    def challenger_better() -> Metrics | None:
        metrics = samples(httpx.get(f"{exporter}/metrics", timeout=30).text)
        rows = value(metrics, "churn_comparison_paired_rows", model=MODEL)
        difference = value(metrics, "churn_comparison_auc_difference", model=MODEL)
        pvalue = value(metrics, "churn_comparison_auc_difference_pvalue", model=MODEL)
        if rows is None or difference is None or pvalue is None:
            return None
        better = difference > 0 and pvalue < COMPARISON["pvalue"]
        return metrics if rows >= COMPARISON["min_paired_rows"] and better else None

    try:
        metrics = wait_until(challenger_better, DEADLINE, "the exporter to report it", 1.0)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{logs(tmp_path)}") from None
    difference = value(metrics, "churn_comparison_auc_difference", model=MODEL)
    assert value(metrics, "churn_comparison_min_paired_rows", model=MODEL) == 300
    assert value(metrics, "churn_comparison_pvalue_threshold", model=MODEL) == 0.01
    for role, version in (("champion", "1"), ("challenger", "2")):
        info = value(metrics, "churn_comparison_model_info", role=role, version=version)
        assert info == 1.0, (role, metrics.get("churn_comparison_model_info"))
    auc = {
        role: value(
            metrics, "churn_comparison_performance", role=role, metric="roc_auc", model=MODEL
        )
        for role in ("champion", "challenger")
    }
    assert auc["challenger"] - auc["champion"] == pytest.approx(difference), auc

    # Prometheus fires the shipped rule; Alertmanager routes it to the history.
    prometheus = f"http://127.0.0.1:{ports['prometheus']}"

    def firing() -> bool:
        answer = httpx.get(f"{prometheus}/api/v1/alerts", timeout=30).json()
        return any(
            a["labels"]["alertname"] == ALERT and a["state"] == "firing"
            for a in answer["data"]["alerts"]
        )

    def alert_in_history() -> dict[str, Any] | None:
        rows = history(tmp_path, config, "alerts")
        return next((r for r in rows if r["alertname"] == ALERT and r["status"] == "firing"), None)

    try:
        wait_until(firing, DEADLINE, f"Prometheus to fire {ALERT}", 0.5)
        row = wait_until(alert_in_history, DEADLINE, f"{ALERT} in the history", 1.0)
    except AssertionError as err:
        raise AssertionError(f"{err}\n{logs(tmp_path)}") from None
    assert row["severity"] == "info" and row["alert_type"] == "MODEL_COMPARISON", row
    assert row["model"] == MODEL and row["receiver"] == "churn-webhook", row

    # The manual promotion on that evidence.
    out = run_cli(tmp_path, config, "promote")
    assert "champion   version 1, challenger version 2" in out, out
    paired = re.search(r"^paired labelled rows +(\d+)$", out, re.MULTILINE)
    assert paired is not None and int(paired.group(1)) >= 300, out
    assert re.search(r"difference \+0\.\d+, DeLong p ", out), out
    assert "promoted: champion is now version 2" in out, out
    (decision,) = history(tmp_path, config, "retraining")
    assert decision["decision"] == "promoted", decision
    assert decision["trigger"] == "churn-monitor promote", decision
    assert (decision["champion_version"], decision["challenger_version"]) == ("1", "2")

    # The API and the exporter follow the new champion.
    def api_serves_version_2() -> dict[str, Any] | None:
        body = httpx.get(f"{api}/health", timeout=30).json()
        return body if body["model"]["version"] == "2" else None

    body = wait_until(api_serves_version_2, DEADLINE, "the API to serve version 2", 0.5)
    assert body["status"] == "ok" and body["challenger_version"] is None, body

    def exporter_monitors_version_2() -> bool:
        metrics = samples(httpx.get(f"{exporter}/metrics", timeout=30).text)
        return value(metrics, "churn_model_info", model=MODEL, version="2") == 1.0

    wait_until(exporter_monitors_version_2, DEADLINE, "churn_model_info version 2", 0.5)
    metrics = samples(httpx.get(f"{exporter}/metrics", timeout=30).text)
    assert [labels["version"] for labels, _ in metrics["churn_model_info"]] == ["2"]
