"""The monitoring history: webhook parsing, idempotent storage, the retraining loop."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from exporter.config import MonitoringConfig
from exporter.data import synthetic
from exporter.data.history import WebhookError, open_history, parse_notification, query
from exporter.loop.receiver import AlertReceiver
from exporter.loop.retraining import RetrainingTrigger
from exporter.model.registry import AliasNotFound, load_champion, resolve

from .pg_fixtures import Backend
from .test_performance_monitoring import log_window, make_config


def notification(status: str = "firing", alert_type: str = "THRESHOLD_BREACH", **extra) -> dict:
    """An Alertmanager webhook body (version 4) with one alert."""
    alert = {
        "status": status,
        "labels": {
            "alertname": "ChurnModelThresholdBreach",
            "alert_type": alert_type,
            "severity": "critical",
            "model": "churn-model",
            "metric": "accuracy",
        },
        "annotations": {"summary": "Accuracy (0.62) below minimum threshold (0.70)"},
        "startsAt": "2026-11-27T05:00:00.000Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-11-27T05:10:00Z",
        "generatorURL": "http://prometheus/graph",
        "fingerprint": "c0ffee0123456789",
        **extra,
    }
    return {
        "version": "4",
        "groupKey": '{}:{alertname="ChurnModelThresholdBreach"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "churn-webhook",
        "groupLabels": {"alertname": "ChurnModelThresholdBreach"},
        "commonLabels": alert["labels"],
        "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
        "alerts": [alert],
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"version": "3", "alerts": []}, "version"),
        ({"version": "4"}, "alerts"),
        ({"version": "4", "alerts": [{"status": "firing"}]}, "alerts[0].startsAt"),
        (
            {"version": "4", "alerts": [{"status": "firing", "startsAt": "x", "fingerprint": "f"}]},
            "alerts[0].labels",
        ),
    ],
)
def test_malformed_notifications_name_the_field(body, field: str) -> None:
    with pytest.raises(WebhookError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_notification(body)


def test_receiver_is_idempotent_and_keeps_firing_and_resolved(backend: Backend) -> None:
    """On SQLite and on PostgreSQL (the `backend` fixture)."""
    engine = open_history(backend.url("history"))
    receiver = AlertReceiver(engine, clock=lambda: 1000.0)
    firing = json.dumps(notification()).encode()
    assert receiver.handle(firing) == (200, {"alerts": 1, "new": 1})
    assert receiver.handle(firing) == (200, {"alerts": 1, "new": 0})  # redelivery
    assert receiver.handle(json.dumps(notification("resolved")).encode())[1]["new"] == 1
    rows = query(engine, "alerts")
    assert [(r["status"], r["notifications"]) for r in rows] == [("firing", 2), ("resolved", 1)]
    first = rows[0]
    assert first["alertname"] == "ChurnModelThresholdBreach"
    assert first["alert_type"] == "THRESHOLD_BREACH" and first["severity"] == "critical"
    assert first["ends_at"] is None and rows[1]["ends_at"] == "2026-11-27T05:10:00Z"
    assert json.loads(first["annotations"])["summary"].startswith("Accuracy (0.62)")
    assert receiver.handle(b"{not json")[0] == 400
    engine.dispose()


#: Deadline for a retraining (one Optuna trial on 3,000 rows) started by an alert.
RETRAINING_DEADLINE = 300.0


def _with_retraining(config: MonitoringConfig, **changes: object) -> MonitoringConfig:
    retraining = config.retraining.model_copy(update={"enabled": True, **changes})
    return config.model_copy(update={"retraining": retraining})


@pytest.mark.slow
def test_retraining_follows_the_promotion_rule_and_the_cooldown(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Champion trained on `none`; recent labelled traffic follows `concept`."""
    from exporter.data import predlog
    from exporter.training.pipeline import train

    tmp = tmp_path_factory.mktemp("retrain")
    config = make_config(tmp)
    data = tmp / "train.csv"
    synthetic.generate_customers(3000, seed=81).to_csv(data, index=False)
    train(config, data=data, trials=1, seed=1, progress=False)
    champion = load_champion(config)
    engine = predlog.make_engine(config.data.current.url)
    predlog.create_tables(engine)
    engine.dispose()
    concept = synthetic.generate_customers(2500, seed=82, scenario="concept", id_offset=90_000)
    log_window(config, champion, concept, ts=time.time() - 3600)
    history = open_history(config.history.url)

    def alert(trigger_config: MonitoringConfig, **labels: str) -> tuple[RetrainingTrigger, str]:
        trigger = RetrainingTrigger(trigger_config, history)
        body = notification(fingerprint=uuid.uuid4().hex[:16], **labels)
        status, answer = AlertReceiver(history, trigger).handle(json.dumps(body).encode())
        assert status == 200
        trigger.wait(RETRAINING_DEADLINE)
        thread = trigger._thread  # the retraining started for this alert, if any
        assert thread is None or not thread.is_alive(), (
            f"the retraining still ran {RETRAINING_DEADLINE:.0f} s after the alert"
        )
        return trigger, answer["retraining"]

    # 1. the challenger must win by 0.5: it cannot, the champion stays
    _, started = alert(_with_retraining(config, trials=1, min_improvement=0.5, cooldown_minutes=0))
    assert started == "started"
    kept = query(history, "retraining")[-1]
    assert kept["decision"] == "kept_champion", kept
    assert (kept["champion_version"], kept["challenger_version"]) == ("1", "2")
    assert resolve(config).ref.version == "1"

    # 2. a margin of 0.02 on concept-drifted data: promoted, alias and reference move
    _, started = alert(_with_retraining(config, trials=1, min_improvement=0.02, cooldown_minutes=0))
    assert started == "started"
    promoted = query(history, "retraining")[-1]
    assert promoted["decision"] == "promoted", promoted
    assert promoted["challenger_version"] == "3"
    assert promoted["challenger_value"] - promoted["champion_value"] >= 0.02
    assert resolve(config).ref.version == "3"
    # The promoted challenger is the champion: its alias is gone until the next one.
    challenger = config.model.model_copy(update={"registry_alias": "challenger"})
    with pytest.raises(AliasNotFound):
        resolve(config.model_copy(update={"model": challenger}))
    assert json.loads((tmp / "baseline.json").read_text())["version"] == "3"

    # 3. a second alert inside the (default, 6 h) cooldown does not retrain
    _, outcome = alert(_with_retraining(config, trials=1))
    assert outcome == "skipped_cooldown"
    decisions = [r["decision"] for r in query(history, "retraining")]
    assert decisions == ["kept_champion", "promoted", "skipped_cooldown"]
    assert resolve(config).ref.version == "3"

    # an alert of another type never retrains
    _, outcome = alert(_with_retraining(config), alert_type="DATA_DRIFT")
    assert outcome == "not_triggered"
    history.dispose()


class RecordingReceiver(AlertReceiver):
    """The real receiver, keeping each raw body so a test can redeliver it."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.bodies: list[bytes] = []

    def handle(self, body: bytes):
        self.bodies.append(body)
        return super().handle(body)


@pytest.mark.integration
def test_a_real_alertmanager_posts_to_the_receiver(tmp_path: Path, require_binary) -> None:
    import datetime as dt
    import urllib.request

    from exporter.config import parse_config
    from exporter.monitor.httpserver import ExporterServer
    from exporter.monitor.server import make_app
    from exporter.monitor.wiring import Monitor

    from .alerting_fixtures import Alertmanager, HttpSink, SmtpSink
    from .support import wait_until

    binary = require_binary("prometheus-alertmanager")
    engine = open_history(f"sqlite:///{tmp_path}/history.db")
    receiver = RecordingReceiver(engine)
    monitor = Monitor(config=parse_config({}), jobs=[], model=lambda: None)
    server = ExporterServer(make_app(monitor.registry, monitor.store, receiver), "127.0.0.1", 0)
    server.start()
    smtp = SmtpSink("not-used").start()
    slack = HttpSink("/slack").start()
    manager = Alertmanager(
        binary,
        tmp_path / "am",
        smtp=smtp,
        slack_url=slack.url,
        webhook_url=f"http://127.0.0.1:{server.port}/alerts/webhook",
    )
    try:
        now = dt.datetime.now(dt.UTC)

        def post(ends: dt.datetime) -> None:
            alerts = [
                {
                    "labels": {
                        "alertname": "ChurnFeatureDrift",
                        "alert_type": "DATA_DRIFT",
                        "severity": "info",
                        "model": "churn-model",
                        "feature": feature,
                    },
                    "annotations": {"summary": f"Feature {feature} drifted"},
                    "startsAt": now.isoformat(),
                    "endsAt": ends.isoformat(),
                }
                for feature in ("tenure", "MonthlyCharges")
            ]
            request = urllib.request.Request(
                f"{manager.url}/api/v2/alerts",
                data=json.dumps(alerts).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(request, timeout=5) as response:
                assert response.status == 200

        post(now + dt.timedelta(hours=1))
        wait_until(lambda: len(query(engine, "alerts")) == 2, 30, "two firing rows")
        post(dt.datetime.now(dt.UTC))  # resolve both
        wait_until(lambda: len(query(engine, "alerts")) == 4, 30, "two resolved rows")

        rows = query(engine, "alerts")
        sent = [json.loads(b) for b in receiver.bodies]
        notified = {
            (a["fingerprint"], a["status"], a["startsAt"], a["labels"]["feature"])
            for body in sent
            for a in body["alerts"]
        }
        stored = {
            (r["fingerprint"], r["status"], r["starts_at"], json.loads(r["labels"])["feature"])
            for r in rows
        }
        assert stored == notified
        assert {r["status"] for r in rows} == {"firing", "resolved"}
        assert all(
            r["receiver"] == "churn-webhook" and r["alert_type"] == "DATA_DRIFT" for r in rows
        )

        # a redelivery of every notification adds nothing
        before = len(rows)
        for body in list(receiver.bodies):
            assert receiver.handle(body)[0] == 200
        assert len(query(engine, "alerts")) == before
        assert not slack.posts() and not smtp.emails()  # info goes to the webhook only
    finally:
        manager.stop()
        slack.stop()
        smtp.stop()
        server.stop()
        engine.dispose()
