"""Training: tuning, the MLflow run tree, registration, reference snapshot, baseline,
determinism, and data errors that stop before anything is written.

Real MLflow SQLite tracking stores and real Optuna SQLite files in temporary folders;
every test runs with the temporary folder as working directory, so the config's
relative default paths (``mlruns/``, ``data/``) land there and never in the repository.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from exporter.config import MonitoringConfig, parse_config
from exporter.data.synthetic import generate_customers
from exporter.domain import schema
from exporter.domain.metrics import METRICS
from exporter.model import modeling
from exporter.stats.performance import classification_metrics
from exporter.training.evaluate import best_f1_threshold
from exporter.training.pipeline import TrainingError, TrainResult, train

ROWS = 1500
TRIALS = 2
SEED = 11


@dataclass(frozen=True)
class Trained:
    root: Path
    config: MonitoringConfig
    csv: Path
    result: TrainResult


def _train_in(root: Path, csv: Path) -> Trained:
    """Train with the default config (relative paths) in working directory ``root``."""
    config = parse_config({})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        result = train(config, data=csv, trials=TRIALS, seed=SEED, progress=False)
    return Trained(root=root, config=config, csv=csv, result=result)


@pytest.fixture(scope="module")
def customers_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("input") / "customers.csv"
    generate_customers(ROWS, seed=5).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, customers_csv: Path) -> Trained:
    return _train_in(tmp_path_factory.mktemp("first"), customers_csv)


@pytest.fixture
def in_root(trained: Trained, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The trained folder as working directory and MLflow pointed at its store."""
    monkeypatch.chdir(trained.root)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    # Absolute: MLflow caches stores by URI string, whatever the working directory.
    uri = f"sqlite:///{trained.root / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    yield trained.root
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


# --------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_train_registers_version_1_under_the_alias(trained: Trained, in_root: Path) -> None:
    result = trained.result
    assert (result.model_name, result.version, result.alias) == ("churn-model", "1", "champion")
    assert result.model_uri == "models:/churn-model/1"
    assert result.trials_run == TRIALS == result.trials_complete
    assert result.best_params["model"] in modeling.MODEL_FAMILIES
    assert set(result.metrics) == set(METRICS)
    assert 0.7 < result.metrics["roc_auc"] <= 1.0
    assert 0.0 < result.threshold < 1.0

    client = MlflowClient()
    version = client.get_model_version_by_alias("churn-model", "champion")
    assert (str(version.version), version.run_id) == ("1", result.run_id)
    # The relative default paths resolved inside the working directory.
    assert (in_root / "mlruns" / "mlflow.db").is_file()
    assert (in_root / "mlruns" / "artifacts" / "churn-model").is_dir()
    assert (in_root / "data" / "optuna.db").is_file()


@pytest.mark.slow
def test_parent_run_logs_baseline_threshold_importances_and_artifacts(
    trained: Trained, in_root: Path
) -> None:
    result = trained.result
    client = MlflowClient()
    run = client.get_run(result.run_id)
    metrics = run.data.metrics
    for name, value in result.metrics.items():
        assert metrics[f"test_{name}"] == pytest.approx(value)
        assert f"validation_{name}" in metrics
    assert metrics["decision_threshold"] == pytest.approx(result.threshold)
    assert metrics["cv_roc_auc"] == pytest.approx(result.best_value)
    assert {f"importance_{f}" for f in schema.FEATURES} <= set(metrics)
    assert run.data.params["model"] == result.best_params["model"]
    assert run.data.params["threshold_strategy"] == "max_f1_validation"
    assert run.data.tags["churn.registered_version"] == "1"

    artifacts = {f.path for f in client.list_artifacts(result.run_id)}
    assert {"baseline.json", "feature_importance.json", "reference"} <= artifacts
    assert [f.path for f in client.list_artifacts(result.run_id, "reference")] == [
        "reference/reference.parquet"
    ]
    # Artifacts live under the tracking store's folder, not in ./mlruns/<id> defaults.
    assert run.info.artifact_uri.startswith((in_root / "mlruns" / "artifacts").as_uri())


@pytest.mark.slow
def test_each_trial_is_a_nested_child_run(trained: Trained, in_root: Path) -> None:
    result = trained.result
    client = MlflowClient()
    children = client.search_runs(
        [client.get_run(result.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'",
    )
    assert len(children) == TRIALS
    for child in children:
        assert "cv_roc_auc" in child.data.metrics
        assert child.data.params["model"] in modeling.MODEL_FAMILIES
    study = optuna.load_study(study_name="churn-model", storage="sqlite:///data/optuna.db")
    by_number = {str(t.number): t for t in study.trials}
    for child in children:
        trial = by_number[child.data.params["trial_number"]]
        assert child.data.metrics["cv_roc_auc"] == pytest.approx(trial.value)
    assert max(t.value for t in study.trials) == pytest.approx(result.best_value)


@pytest.mark.slow
def test_reference_snapshot_and_baseline_file(trained: Trained, in_root: Path) -> None:
    result = trained.result
    reference = pd.read_parquet(in_root / "data" / "reference" / "reference.parquet")
    expected = [schema.ID_COLUMN, *schema.FEATURES, schema.TARGET, "score"]
    assert list(reference.columns) == expected
    assert len(reference) == round(ROWS * 0.4)  # the held-out validation + test rows
    assert reference["score"].between(0, 1).all()
    assert set(reference[schema.TARGET]) == {"Yes", "No"}
    source = pd.read_csv(trained.csv)
    assert set(reference[schema.ID_COLUMN]) <= set(source[schema.ID_COLUMN])

    baseline = json.loads((in_root / "data" / "reference" / "baseline.json").read_text())
    assert baseline["model_name"] == "churn-model"
    assert (baseline["version"], baseline["run_id"]) == ("1", result.run_id)
    assert baseline["threshold"] == pytest.approx(result.threshold)
    assert baseline["metrics"] == pytest.approx(result.metrics)

    # The same file is the run's artifact.
    logged = mlflow.artifacts.download_artifacts(
        run_id=result.run_id, artifact_path="reference/reference.parquet", dst_path=str(in_root)
    )
    pd.testing.assert_frame_equal(pd.read_parquet(logged), reference)


@pytest.mark.slow
def test_champion_loads_with_mlflow_and_reproduces_the_reference_scores(
    trained: Trained, in_root: Path
) -> None:
    model = mlflow.sklearn.load_model("models:/churn-model@champion")
    reference = pd.read_parquet(in_root / "data" / "reference" / "reference.parquet")
    proba = model.predict_proba(modeling.prepare_features(reference))[:, 1]
    np.testing.assert_allclose(proba, reference["score"].to_numpy(), rtol=1e-9)
    # predict applies the logged decision threshold.
    predicted = model.predict(modeling.prepare_features(reference))
    np.testing.assert_array_equal(predicted, (proba >= trained.result.threshold).astype(int))
    # The pyfunc flavour serves probabilities too.
    pyfunc = mlflow.pyfunc.load_model("models:/churn-model@champion")
    served = np.asarray(pyfunc.predict(modeling.prepare_features(reference.head(5))))
    np.testing.assert_allclose(served[:, 1], proba[:5], rtol=1e-9)


@pytest.mark.slow
def test_same_seed_and_data_give_the_same_model(
    trained: Trained, customers_csv: Path, tmp_path: Path
) -> None:
    """Identical results are promised for identical fresh storages (a study that already
    holds trials samples differently, by design: see exporter.training.tune)."""
    again = _train_in(tmp_path, customers_csv).result
    first = trained.result
    assert again.best_params == first.best_params
    assert again.best_value == first.best_value
    assert again.metrics == first.metrics
    assert again.threshold == first.threshold
    assert again.version == "1"  # a fresh store: nothing was shared with the first run
    np.testing.assert_array_equal(
        pd.read_parquet(tmp_path / "data" / "reference" / "reference.parquet")["score"],
        pd.read_parquet(trained.root / "data" / "reference" / "reference.parquet")["score"],
    )


@pytest.mark.slow
def test_undefined_baseline_metrics_are_left_out_not_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, customers_csv: Path
) -> None:
    """A test split of non-churners only: ROC AUC and recall are undefined there, so the
    baseline path (result, baseline.json, the run, the registry) leaves them out."""
    from exporter.model.registry import load_champion
    from exporter.training import pipeline
    from exporter.training.dataset import Splits, split

    def non_churners_in_test(y: np.ndarray, seed: int) -> Splits:
        parts = split(y, seed)
        return Splits(parts.train, parts.validation, parts.test[y[parts.test] == 0])

    monkeypatch.setattr(pipeline, "split", non_churners_in_test)
    monkeypatch.chdir(tmp_path)
    config = parse_config({})
    result = train(config, data=customers_csv, trials=1, seed=SEED, progress=False)

    undefined = {"roc_auc", "recall"}
    assert "accuracy" in result.metrics
    assert not undefined & set(result.metrics)
    assert all(np.isfinite(v) for v in result.metrics.values())
    assert set(result.validation_metrics) == set(METRICS)  # both classes there
    assert result.feature_importance == {}  # the ROC AUC drop is undefined too

    baseline = json.loads((tmp_path / "data" / "reference" / "baseline.json").read_text())
    assert baseline["metrics"] == result.metrics
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    logged = MlflowClient(uri, uri).get_run(result.run_id).data.metrics
    assert {f"test_{m}" for m in result.metrics} <= set(logged)
    assert not {f"test_{m}" for m in undefined} & set(logged)
    registered = load_champion(config).baseline
    assert registered == pytest.approx(result.metrics)
    assert not undefined & set(registered)


# --------------------------------------------------------------------------- fast


def _nothing_written(root: Path) -> None:
    assert not (root / "mlruns").exists()
    assert not (root / "data").exists()


@pytest.mark.parametrize(
    ("change", "column", "detail"),
    [
        (lambda f: f.drop(columns=["Contract"]), "Contract", "missing required column"),
        (lambda f: f.drop(columns=[schema.TARGET]), schema.TARGET, "missing required column"),
        (lambda f: f.assign(Churn=["Maybe", *f[schema.TARGET][1:]]), "Churn", "'Maybe'"),
        (lambda f: f.assign(tenure=["abc", *f["tenure"][1:]]), "tenure", "'abc'"),
    ],
    ids=["missing-feature", "missing-target", "target-maybe", "tenure-not-a-number"],
)
def test_bad_data_fails_naming_the_column_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change, column: str, detail: str
) -> None:
    monkeypatch.chdir(tmp_path)
    frame = generate_customers(200, seed=1).astype({"tenure": object})
    change(frame).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(TrainingError) as err:
        train(parse_config({}), data=tmp_path / "bad.csv", trials=1, progress=False)
    message = str(err.value)
    assert column in message
    assert detail in message
    _nothing_written(tmp_path)


def test_too_few_churners_fails_naming_the_target(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    frame = generate_customers(300, seed=1)
    churners = frame.index[frame[schema.TARGET] == "Yes"]
    frame.drop(index=churners[5:]).to_csv(tmp_path / "few.csv", index=False)
    with pytest.raises(TrainingError, match=r"'Churn'.*at least 20 rows of each class"):
        train(parse_config({}), data=tmp_path / "few.csv", trials=1, progress=False)
    _nothing_written(tmp_path)


def test_missing_file_and_bad_trial_count_fail_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainingError, match="no such file"):
        train(parse_config({}), data=tmp_path / "absent.csv", progress=False)
    with pytest.raises(TrainingError, match="trials"):
        train(parse_config({}), trials=0, progress=False)
    with pytest.raises(TrainingError, match="timeout"):
        train(parse_config({}), timeout=-1, progress=False)
    _nothing_written(tmp_path)


def test_best_f1_threshold_maximises_f1() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    scores = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.6])
    threshold = best_f1_threshold(y, scores)
    candidates = {t: f1_score(y, scores >= t) for t in scores}
    assert candidates[threshold] == max(candidates.values())
    assert threshold == pytest.approx(0.35)  # F1 0.857 (0.35 and 0.4 tie; the lower wins)
    assert best_f1_threshold(np.zeros(4), np.linspace(0, 1, 4)) == 0.5


def test_classification_metrics_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    scores = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1)
    got = classification_metrics(y, scores, 0.45)
    predicted = scores >= 0.45
    assert got["accuracy"] == pytest.approx(np.mean(predicted == y))
    assert got["precision"] == pytest.approx(precision_score(y, predicted))
    assert got["recall"] == pytest.approx(recall_score(y, predicted))
    assert got["f1"] == pytest.approx(f1_score(y, predicted))
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, scores))


@pytest.mark.parametrize("family", modeling.MODEL_FAMILIES)
def test_pipeline_copes_with_unseen_categories_and_blanks(family: str) -> None:
    train_frame = generate_customers(300, seed=2)
    X = modeling.prepare_features(train_frame)
    y = (train_frame[schema.TARGET] == "Yes").to_numpy(dtype=int)
    params = {
        modeling.LOGISTIC: {"model": family, "lr_C": 1.0},
        modeling.BOOSTING: {
            "model": family,
            "hgb_learning_rate": 0.1,
            "hgb_max_iter": 20,
            "hgb_max_leaf_nodes": 8,
            "hgb_min_samples_leaf": 10,
            "hgb_l2_regularization": 0.1,
        },
    }[family]
    pipeline = modeling.build_pipeline(params, seed=0).fit(X, y)
    odd = generate_customers(50, seed=3, scenario="new_payment_method")
    odd.loc[:4, "Contract"] = np.nan
    odd.loc[:4, "MonthlyCharges"] = np.nan
    proba = pipeline.predict_proba(modeling.prepare_features(odd))[:, 1]
    assert np.isfinite(proba).all()
    assert (odd["PaymentMethod"] == "Digital wallet").any()
