"""Champion against challenger in the exporter: the comparison job, its families, and
the guarded promotion (`churn-monitor promote`).

Real models: a MLflow store (SQLite) with a champion trained with its strongest
features scrambled (clearly worse) and a challenger trained on the same customers
intact, each with its reference snapshot; a real SQLite prediction log holding both
models' scores of the same customers, as the API's shadow scoring writes them, with
their outcomes as feedback. A second store registers the champion's own model again as
the challenger (two copies of one model).
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from prometheus_client import CollectorRegistry, generate_latest

from exporter.cli.main import main
from exporter.config import MonitoringConfig
from exporter.data import predlog, synthetic
from exporter.data.history import AlertRecord, open_history, query
from exporter.domain import schema
from exporter.loop.promotion import gather_evidence, missing_evidence, promote
from exporter.loop.retraining import RetrainingTrigger
from exporter.model.registry import (
    AliasNotFound,
    ModelWatch,
    absolute_tracking_uri,
    baseline_path,
    load_champion,
    resolve,
)
from exporter.model.roles import challenger_config
from exporter.monitor.collector import SnapshotCollector
from exporter.monitor.comparison_job import ComparisonJob
from exporter.monitor.jobs import run_job
from exporter.monitor.reference_job import ReferenceCache
from exporter.monitor.store import SnapshotStore
from exporter.monitor.wiring import build_monitor
from exporter.stats.snapshots import ComparisonSnapshot

from .support import copy_store
from .test_performance_monitoring import make_config

pytestmark = pytest.mark.integration

#: The comparison's settings in these tests: 300 paired rows, p below 0.01.
COMPARISON = {"min_paired_rows": 300, "pvalue": 0.01}


#: The churn relation's strongest inputs and their proxy (TotalCharges ~ tenure × charges).
SCRAMBLED = ("Contract", "tenure", "TotalCharges", "InternetService", "MonthlyCharges")


def _config(root: Path, **retraining: object) -> MonitoringConfig:
    base = make_config(root)
    return base.model_copy(
        update={
            "model_comparison": base.model_comparison.model_copy(update=COMPARISON),
            "retraining": base.retraining.model_copy(
                update={"cooldown_minutes": 0, "min_improvement": 0.01, **retraining}
            ),
        }
    )


def _scrambled(frame: pd.DataFrame, seed: int) -> pd.DataFrame:
    """`frame` with its strongest features shuffled across rows: their signal is gone."""
    rng = np.random.default_rng(seed)
    out = frame.copy()
    for column in SCRAMBLED:
        out[column] = rng.permutation(out[column].to_numpy())
    return out


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two stores: `better` (a worse champion, a better challenger) and `same` (the
    champion registered twice)."""
    from exporter.training.pipeline import train

    customers = synthetic.generate_customers(1500, seed=181)
    better = tmp_path_factory.mktemp("better-challenger")
    scrambled, intact = better / "scrambled.csv", better / "intact.csv"
    _scrambled(customers, 5).to_csv(scrambled, index=False)
    customers.to_csv(intact, index=False)
    config = _config(better)
    train(config, data=scrambled, trials=1, seed=1, progress=False)
    challenger = challenger_config(config)
    assert challenger is not None
    train(challenger, data=intact, trials=1, seed=1, progress=False)

    same = tmp_path_factory.mktemp("same-model")
    copy_store(better, same / "store")
    same_config = _config(same / "store")
    same_challenger = challenger_config(same_config)
    assert same_challenger is not None
    champion = resolve(same_config)
    uri = absolute_tracking_uri(same_config.model.tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    source = client.get_model_version_download_uri(champion.ref.name, champion.ref.version)
    copy = client.create_model_version(champion.ref.name, source, run_id=champion.ref.run_id)
    client.set_registered_model_alias(champion.ref.name, "challenger", copy.version)
    for path in (Path(same_config.data.reference_path),):
        target = Path(same_challenger.data.reference_path)
        shutil.copyfile(path, target)
        shutil.copyfile(baseline_path(path), baseline_path(target))
    return {"better": better, "same": same / "store"}


def shadow_traffic(config: MonitoringConfig, n: int, *, seed: int, labelled: bool = True) -> None:
    """Log `n` customers scored by both current models, as the API does, and (when
    `labelled`) their outcomes as feedback."""
    challenger_cfg = challenger_config(config)
    assert challenger_cfg is not None
    champion, challenger = load_champion(config), load_champion(challenger_cfg)
    frame = synthetic.generate_customers(n, seed=seed, id_offset=500_000 + seed * 10_000)
    scores = champion.score(frame)
    shadow = challenger.score(frame)
    now = time.time()
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        row = {name: record[name] for name in schema.FEATURES}
        if row["TotalCharges"] != row["TotalCharges"]:
            row["TotalCharges"] = None
        row.update(
            id=str(uuid.uuid4()),
            ts=now - 60,
            model=champion.ref.name,
            version=champion.ref.version,
            customer_id=record[schema.ID_COLUMN],
            score=float(scores[i]),
            predicted=int(scores[i] >= champion.threshold),
            challenger_version=challenger.ref.version,
            challenger_score=float(shadow[i]),
        )
        rows.append(row)
    engine = predlog.make_engine(config.data.current.url)
    try:
        predlog.create_tables(engine)
        predlog.log_predictions(engine, rows)
        if labelled:
            for row, outcome in zip(rows, frame[schema.TARGET], strict=True):
                predlog.record_feedback(
                    engine, prediction_id=row["id"], actual=schema.label_code(outcome), ts=now
                )
    finally:
        engine.dispose()


def compare(config: MonitoringConfig) -> tuple[ComparisonSnapshot, str]:
    """One run of the comparison job and the exposition text of its families."""
    job = ComparisonJob(
        config, ReferenceCache(config.data.reference_path), model=ModelWatch(config)
    )
    store = SnapshotStore()
    store.register(job.name, job.interval_seconds)
    assert run_job(job, store)
    registry = CollectorRegistry()
    registry.register(SnapshotCollector(store))
    snapshot = store.snapshots()[job.name]
    assert isinstance(snapshot, ComparisonSnapshot)
    return snapshot, generate_latest(registry).decode()


@pytest.fixture
def better(stores: dict[str, Path], tmp_path: Path) -> MonitoringConfig:
    return _config(copy_store(stores["better"], tmp_path / "store"))


def test_the_better_challenger_is_reported_with_delong_p_below_001(
    better: MonitoringConfig,
) -> None:
    shadow_traffic(better, 600, seed=1)
    shadow_traffic(better, 200, seed=2, labelled=False)
    snapshot, text = compare(better)
    paired = snapshot.paired
    assert paired is not None and snapshot.challenger is not None
    assert paired.n_paired == 600
    assert paired.auc_difference is not None and paired.auc_difference > 0.03
    assert paired.auc_pvalue is not None and paired.auc_pvalue < 0.01
    assert snapshot.shadowed_rows == 800
    assert snapshot.agreement_ratio is not None and snapshot.agreement_ratio < 1.0
    champion_auc = snapshot.champion.realized.values["roc_auc"]  # type: ignore[union-attr]
    challenger_auc = snapshot.challenger.realized.values["roc_auc"]
    assert challenger_auc - champion_auc == pytest.approx(paired.auc_difference)
    assert (
        'churn_comparison_model_info{model="churn-model",role="challenger",version="2"} 1.0' in text
    )
    assert 'churn_comparison_paired_rows{model="churn-model"} 600.0' in text
    assert 'churn_comparison_min_paired_rows{model="churn-model"} 300.0' in text
    assert 'churn_comparison_pvalue_threshold{model="churn-model"} 0.01' in text
    for role in ("champion", "challenger"):
        assert (
            f'churn_comparison_performance{{metric="roc_auc",model="churn-model",role="{role}"}}'
            in text
        )
        assert (
            f'churn_comparison_performance_estimated{{metric="roc_auc",model="churn-model",role="{role}"}}'
            in text
        )
        assert f'churn_comparison_prediction_drift_psi{{model="churn-model",role="{role}"}}' in text


def test_two_copies_of_one_model_show_no_difference(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    config = _config(copy_store(stores["same"], tmp_path / "store"))
    shadow_traffic(config, 600, seed=3)
    snapshot, _ = compare(config)
    paired = snapshot.paired
    assert paired is not None and paired.n_paired == 600
    assert paired.auc_difference == 0.0
    assert paired.auc_pvalue is not None and paired.auc_pvalue > 0.5
    assert paired.agreement_ratio == 1.0 and snapshot.agreement_ratio == 1.0
    assert paired.mcnemar_pvalue == 1.0


def test_rows_of_other_versions_are_not_compared(better: MonitoringConfig) -> None:
    """Rows shadowed by another challenger version (before the alias moved) and rows
    logged before shadow scoring (no challenger score) stay out of the comparison."""
    shadow_traffic(better, 100, seed=4)
    engine = predlog.make_engine(better.data.current.url)
    try:
        with engine.begin() as conn:
            conn.execute(predlog.predictions.update().values(challenger_version="1"))
    finally:
        engine.dispose()
    shadow_traffic(better, 120, seed=5)
    snapshot, _ = compare(better)
    assert snapshot.paired is not None and snapshot.paired.n_paired == 120
    assert snapshot.shadowed_rows == 120


def test_without_a_challenger_alias_only_the_thresholds_are_exported(
    better: MonitoringConfig,
) -> None:
    MlflowClient(
        tracking_uri=absolute_tracking_uri(better.model.tracking_uri),
        registry_uri=absolute_tracking_uri(better.model.tracking_uri),
    ).delete_registered_model_alias("churn-model", "challenger")
    snapshot, text = compare(better)
    assert snapshot.challenger is None and snapshot.paired is None
    samples = [line for line in text.splitlines() if line.startswith("churn_comparison_")]
    assert sorted(s.split("{")[0] for s in samples) == [
        "churn_comparison_min_paired_rows",
        "churn_comparison_pvalue_threshold",
    ]


def test_the_exporter_compares_only_with_a_challenger_alias_and_the_log(tmp_path: Path) -> None:
    config = _config(tmp_path)
    assert "comparison" in [job.name for job in build_monitor(config).jobs]
    no_alias = config.model_copy(
        update={"model": config.model.model_copy(update={"challenger_alias": None})}
    )
    assert "comparison" not in [job.name for job in build_monitor(no_alias).jobs]
    off = config.model_copy(
        update={"model_comparison": config.model_comparison.model_copy(update={"enabled": False})}
    )
    assert "comparison" not in [job.name for job in build_monitor(off).jobs]


def _write_config(config: MonitoringConfig, path: Path) -> Path:
    import json

    path.write_text(json.dumps(config.model_dump(mode="json")))
    return path


def test_promote_refuses_without_evidence_and_names_what_is_missing(
    better: MonitoringConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shadow_traffic(better, 120, seed=6)
    evidence = gather_evidence(better, time.time())
    missing = missing_evidence(evidence, better)
    assert any("120 paired labelled rows, fewer than" in m for m in missing), missing
    config_file = _write_config(better, tmp_path / "config.json")
    assert main(["promote", "--config", str(config_file)]) == 1
    out, err = capsys.readouterr()
    assert "paired labelled rows   120" in out
    assert "not promoted; missing evidence:" in err
    assert "model_comparison.min_paired_rows (300)" in err
    assert resolve(better).ref.version == "1"
    (row,) = query(open_history(better.history.url), "retraining")
    assert row["decision"] == "refused" and row["trigger"] == "churn-monitor promote"
    assert "min_paired_rows" in row["detail"]


def test_promote_with_evidence_moves_the_alias_and_the_exporter_follows(
    better: MonitoringConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shadow_traffic(better, 600, seed=7)
    before, _ = compare(better)
    assert before.model.version == "1"
    challenger_reference = Path(challenger_config(better).data.reference_path)  # type: ignore[union-attr]
    config_file = _write_config(better, tmp_path / "config.json")
    assert main(["promote", "--config", str(config_file)]) == 0
    out, _ = capsys.readouterr()
    assert "promoted: champion is now version 2" in out
    assert resolve(better).ref.version == "2"
    assert Path(better.data.reference_path).read_bytes() == challenger_reference.read_bytes()
    with pytest.raises(AliasNotFound):
        resolve(challenger_config(better))  # type: ignore[arg-type]
    (row,) = query(open_history(better.history.url), "retraining")
    assert row["decision"] == "promoted"
    assert (row["champion_version"], row["challenger_version"]) == ("1", "2")
    assert row["challenger_value"] - row["champion_value"] >= 0.01
    after, _ = compare(better)
    assert after.model.version == "2" and after.challenger is None
    # A second promotion has no challenger to promote.
    assert main(["promote", "--config", str(config_file)]) == 1
    said = capsys.readouterr().err  # after the log lines of this process
    assert "\nchurn-monitor promote: no challenger: " in said
    assert "(register one with `churn-monitor challenger better`" in said


def test_force_promotes_without_evidence_and_is_recorded_as_forced(
    better: MonitoringConfig, tmp_path: Path
) -> None:
    decision = promote(better, open_history(better.history.url), trigger="test", force=True)
    assert decision.decision == "forced" and decision.promoted
    assert resolve(better).ref.version == "2"
    (row,) = query(open_history(better.history.url), "retraining")
    assert row["decision"] == "forced"


def _outperforms(status: str = "firing") -> AlertRecord:
    return AlertRecord(
        fingerprint="f-challenger",
        status=status,
        starts_at="2026-12-01T00:00:00Z",
        ends_at=None,
        labels={
            "alertname": "ChurnChallengerOutperforms",
            "alert_type": "MODEL_COMPARISON",
            "severity": "info",
            "model": "churn-model",
        },
        annotations={},
        receiver="churn-webhook",
    )


def test_the_alert_starts_the_guarded_promotion_when_retraining_is_on(
    stores: dict[str, Path], tmp_path: Path
) -> None:
    """The loop's path: a firing ChurnChallengerOutperforms promotes only on evidence,
    and both decisions are recorded (no training runs: the runner must not be called)."""
    config = _config(copy_store(stores["better"], tmp_path / "store"), enabled=True)
    history = open_history(config.history.url)

    def never_run(*_args: object, **_kwargs: object) -> object:
        raise AssertionError("a promotion must not start a training")

    trigger = RetrainingTrigger(config, history, runner=never_run)  # type: ignore[arg-type]
    assert trigger.consider([_outperforms("resolved")]) == "not_triggered"

    # Too few paired rows: refused, recorded, the alias stays.
    shadow_traffic(config, 100, seed=8)
    assert trigger.consider([_outperforms()]) == "promotion_started"
    trigger.wait(120)
    (refused,) = query(history, "retraining")
    assert refused["decision"] == "refused"
    assert "min_paired_rows" in refused["detail"]
    assert resolve(config).ref.version == "1"

    # With the evidence: promoted, recorded with both versions.
    shadow_traffic(config, 600, seed=9)
    assert trigger.consider([_outperforms()]) == "promotion_started"
    trigger.wait(120)
    rows = query(history, "retraining")
    assert sorted(r["decision"] for r in rows) == ["promoted", "refused"]
    (promoted,) = (r for r in rows if r["decision"] == "promoted")
    assert (promoted["champion_version"], promoted["challenger_version"]) == ("1", "2")
    assert resolve(config).ref.version == "2"
