"""Retraining: the skips, the child process that trains the challenger, failures, and
the promotion order (alias first, then reference and baseline).

Real SQLite prediction logs and histories, a real MLflow store with a champion trained
once per module (each test that may change it works on a copy). The training runs as a
real ``python -m exporter train`` child, except where a test injects a runner to hold
it or to see what it was given.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from exporter.config import MonitoringConfig, load_config
from exporter.data import predlog, synthetic
from exporter.data.history import open_history, parse_notification, query
from exporter.data.loader import load_customers
from exporter.domain import schema
from exporter.loop import promotion
from exporter.loop.retraining import RetrainingTrigger
from exporter.model.registry import (
    AliasNotFound,
    ModelUnavailable,
    baseline_path,
    resolve,
    set_alias,
)

from .support import copy_store
from .test_history import notification
from .test_performance_monitoring import make_config

#: Deadline for one retraining (a child training of one trial on a thousand rows).
DEADLINE = 300.0


def _retraining(config: MonitoringConfig, **changes: object) -> MonitoringConfig:
    settings = {"enabled": True, "min_rows": 50, "trials": 1, "cooldown_minutes": 0, **changes}
    return config.model_copy(update={"retraining": config.retraining.model_copy(update=settings)})


def log_labelled(config: MonitoringConfig, frame: pd.DataFrame, *, ts: float) -> None:
    """Log `frame`'s customers as predictions at `ts`, with their Churn as feedback."""
    engine = predlog.make_engine(config.data.current.url)
    predlog.create_tables(engine)
    try:
        rows = []
        for record in frame.to_dict("records"):
            row = {name: record[name] for name in schema.FEATURES}
            if row["TotalCharges"] != row["TotalCharges"]:
                row["TotalCharges"] = None
            row.update(
                id=str(uuid.uuid4()),
                ts=ts,
                model="churn-model",
                version="1",
                customer_id=record[schema.ID_COLUMN],
                score=0.5,
                predicted=0,
            )
            rows.append(row)
        predlog.log_predictions(engine, rows)
        for row, outcome in zip(rows, frame[schema.TARGET], strict=True):
            actual = schema.label_code(outcome)
            predlog.record_feedback(engine, prediction_id=row["id"], actual=actual, ts=ts + 60)
    finally:
        engine.dispose()


def alert(trigger: RetrainingTrigger) -> str:
    """Hand the trigger one firing THRESHOLD_BREACH alert; return what it did."""
    body = notification(fingerprint=uuid.uuid4().hex[:16])
    return trigger.consider(parse_notification(body))


def finish(trigger: RetrainingTrigger) -> None:
    trigger.wait(DEADLINE)
    thread = trigger._thread
    assert thread is None or not thread.is_alive(), f"still retraining after {DEADLINE:.0f} s"


def decisions(config: MonitoringConfig) -> list[dict]:
    engine = open_history(config.history.url)
    try:
        return query(engine, "retraining")
    finally:
        engine.dispose()


def never_run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    raise AssertionError(f"no training may start: {argv}")


# -------------------------------------------------------------------- no champion


@pytest.mark.parametrize(
    ("rows", "churners", "expected"),
    [(40, 10, "40 labelled rows (minimum 50"), (80, 0, "80 labelled rows (minimum 50")],
    ids=["too-few-rows", "one-class"],
)
def test_insufficient_labelled_data_is_skipped_and_recorded(
    tmp_path: Path, rows: int, churners: int, expected: str
) -> None:
    config = _retraining(make_config(tmp_path))
    customers = synthetic.generate_customers(rows, seed=4)
    customers[schema.TARGET] = [schema.label_text(int(i < churners)) for i in range(rows)]
    log_labelled(config, customers, ts=time.time() - 3600)
    history = open_history(config.history.url)
    trigger = RetrainingTrigger(config, history, runner=never_run)

    assert alert(trigger) == "started"
    finish(trigger)
    (row,) = decisions(config)
    assert row["decision"] == "skipped_insufficient_data"
    assert expected in row["detail"]
    assert row["challenger_version"] is None
    assert not Path(config.data.reference_path).exists()
    history.dispose()


# ---------------------------------------------------------------- with a champion


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A champion (version 1) trained on `none` traffic; tests change only copies."""
    from exporter.training.pipeline import train

    root = tmp_path_factory.mktemp("retraining-store")
    data = root / "train.csv"
    synthetic.generate_customers(1500, seed=81).to_csv(data, index=False)
    train(make_config(root), data=data, trials=1, seed=1, progress=False)
    return root


@pytest.fixture
def copy(store: Path, tmp_path: Path) -> Path:
    """The store copied for one test: its prediction log and history are its own."""
    return copy_store(store, tmp_path / "store")


def _state(config: MonitoringConfig) -> tuple[str, bytes, bytes]:
    """The champion: its version, reference bytes and baseline bytes."""
    reference = Path(config.data.reference_path)
    return (
        resolve(config).ref.version,
        reference.read_bytes(),
        baseline_path(reference).read_bytes(),
    )


@pytest.mark.slow
def test_an_alert_during_a_retraining_is_skipped_busy(copy: Path) -> None:
    """The injected runner holds the training until the second alert was handled, and
    shows what the child would get: the challenger config and the training rows."""
    config = _retraining(make_config(copy), holdout_fraction=0.25, trials=3)
    log_labelled(config, synthetic.generate_customers(200, seed=5), ts=time.time() - 3600)
    entered, release = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def held(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        args = list(argv)
        seen["argv"] = args
        seen["config"] = load_config(args[args.index("--config") + 1])
        seen["data"] = load_customers(args[args.index("--data") + 1], require_target=True).frame
        entered.set()
        release.wait(DEADLINE)
        return subprocess.CompletedProcess(args, 2, "", "churn-monitor: error: held\n")

    history = open_history(config.history.url)
    trigger = RetrainingTrigger(config, history, runner=held)
    before = _state(config)
    assert alert(trigger) == "started"
    assert entered.wait(DEADLINE), "the training never started"
    assert alert(trigger) == "skipped_busy"
    release.set()
    finish(trigger)

    rows = decisions(config)
    assert [r["decision"] for r in rows] == ["skipped_busy", "failed"]
    assert rows[0]["detail"] == "a retraining or promotion is already running"
    assert "exited with status 2: churn-monitor: error: held" in rows[1]["detail"]
    assert _state(config) == before

    argv = seen["argv"]
    assert argv[:4] == [sys.executable, "-m", "exporter", "train"]
    assert argv[argv.index("--trials") + 1] == "3"
    child = seen["config"]
    assert child.model.registry_alias == "challenger"
    assert child.model.tracking_uri == config.model.tracking_uri
    assert child.optuna == config.optuna
    assert Path(child.data.reference_path) == copy / "challenger" / "reference.parquet"
    data = seen["data"]
    assert len(data) == 150  # 200 labelled rows, a quarter held out
    assert set(data[schema.TARGET]) == {schema.POSITIVE_LABEL, schema.NEGATIVE_LABEL}
    history.dispose()


@pytest.mark.slow
def test_a_failing_training_child_is_recorded_and_changes_nothing(copy: Path) -> None:
    """A real `python -m exporter train` that refuses its data (too few churners)."""
    config = _retraining(make_config(copy))
    customers = synthetic.generate_customers(400, seed=6)
    churners = customers.index[customers[schema.TARGET] == schema.POSITIVE_LABEL]
    log_labelled(config, customers.drop(index=churners[12:]), ts=time.time() - 3600)
    history = open_history(config.history.url)
    trigger = RetrainingTrigger(config, history)
    before = _state(config)

    assert alert(trigger) == "started"
    finish(trigger)
    (row,) = decisions(config)
    assert row["decision"] == "failed"
    assert "`churn-monitor train` exited with status 2" in row["detail"]
    assert "need at least 20 rows of each class" in row["detail"]
    assert _state(config) == before
    assert not (copy / "challenger").exists()
    history.dispose()


@pytest.mark.slow
def test_promotion_moves_the_alias_first_and_a_failed_move_changes_nothing(
    copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recent traffic follows `concept`, so a challenger trained on it wins (margin 0).
    The first alias move fails; the second succeeds, with the files replaced after it."""
    config = _retraining(make_config(copy), min_improvement=0.0)
    concept = synthetic.generate_customers(1200, seed=82, scenario="concept", id_offset=90_000)
    log_labelled(config, concept, ts=time.time() - 3600)
    history = open_history(config.history.url)
    trigger = RetrainingTrigger(config, history)
    before = _state(config)

    def fail(*args: object) -> None:
        raise ModelUnavailable("models:/churn-model@champion: injected failure")

    monkeypatch.setattr(promotion, "set_alias", fail)
    assert alert(trigger) == "started"
    finish(trigger)
    (failed,) = decisions(config)
    assert failed["decision"] == "failed", failed
    assert "promotion failed, champion unchanged" in failed["detail"]
    assert "injected failure" in failed["detail"]
    assert (failed["champion_version"], failed["challenger_version"]) == ("1", "2")
    assert failed["challenger_value"] >= failed["champion_value"]
    assert _state(config) == before
    challenger = config.model_copy(
        update={"model": config.model.model_copy(update={"registry_alias": "challenger"})}
    )
    assert resolve(challenger).ref.version == "2"

    # A failure does not start the cooldown: the next alert retrains, and promotes.
    at_alias_move: list[tuple[str, bytes, bytes]] = []

    def spy(cfg: MonitoringConfig, alias: str, version: str | None) -> None:
        if version is not None:
            at_alias_move.append(_state(config))
        set_alias(cfg, alias, version)

    monkeypatch.setattr(promotion, "set_alias", spy)
    assert alert(trigger) == "started"
    finish(trigger)
    promoted = decisions(config)[-1]
    assert promoted["decision"] == "promoted", promoted
    assert promoted["challenger_version"] == "3"
    assert at_alias_move == [before]  # the alias moved while the files were the old ones
    version, reference, baseline = _state(config)
    assert version == "3"
    new_reference = copy / "challenger" / "reference.parquet"
    assert reference == new_reference.read_bytes()
    assert baseline == baseline_path(new_reference).read_bytes()
    assert json.loads(baseline)["version"] == "3"
    # The challenger is the champion now: its alias is gone until the next retraining.
    with pytest.raises(AliasNotFound):
        resolve(challenger)
    history.dispose()
