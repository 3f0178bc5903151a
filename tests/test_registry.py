"""Model access: the champion by alias, a local model directory, the cheap watch, and
clear errors. Real MLflow SQLite tracking stores in temporary folders.

The tests of this module share one store, which none of them changes: the test that
trains a second version and checks that the alias moved works on its own copy, so the
tests pass in any order.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow.artifacts
import mlflow.sklearn
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient

from exporter.config import MonitoringConfig, parse_config
from exporter.data.synthetic import generate_customers
from exporter.domain import schema
from exporter.domain.metrics import METRICS
from exporter.domain.model import ModelRef
from exporter.model import modeling
from exporter.model.registry import (
    LoadedModel,
    ModelUnavailable,
    ModelWatch,
    load_champion,
    resolve,
)
from exporter.training.pipeline import TrainResult, train

from .support import copy_store

ROWS = 1500
TRIALS = 2


def _config(root: Path, **model: object) -> MonitoringConfig:
    return parse_config(
        {
            "model": {"tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}", **model},
            "data": {"reference_path": str(root / "data" / "reference" / "reference.parquet")},
            "optuna": {"storage": f"sqlite:///{root / 'data' / 'optuna.db'}"},
        }
    )


class Store:
    def __init__(self, root: Path, first: TrainResult | None = None) -> None:
        self.root = root
        self.config = _config(root)
        self.csv = root / "customers.csv"
        if not self.csv.exists():
            generate_customers(ROWS, seed=8).to_csv(self.csv, index=False)
        self.first = first

    def copy(self, root: Path) -> Store:
        """This store copied to `root`: a test may change the copy."""
        return Store(copy_store(self.root, root), self.first)

    def train(self, seed: int, trials: int = TRIALS, timeout: float | None = None) -> TrainResult:
        with pytest.MonkeyPatch.context() as mp:
            mp.chdir(self.root)
            return train(
                self.config,
                data=self.csv,
                trials=trials,
                timeout=timeout,
                seed=seed,
                progress=False,
            )

    @property
    def reference(self) -> pd.DataFrame:
        return pd.read_parquet(self.config.data.reference_path)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    store = Store(tmp_path_factory.mktemp("registry"))
    store.first = store.train(seed=3)
    return store


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test from an empty folder: nothing may depend on, or write to, the cwd."""
    monkeypatch.chdir(tmp_path)


@pytest.mark.slow
def test_load_champion_by_alias(store: Store, tmp_path: Path) -> None:
    first = store.first
    assert first is not None
    # Seed 3 picks gradient boosting (test_training's seed picks logistic regression), so
    # both families go through logging, registration and loading.
    assert first.best_params["model"] == modeling.BOOSTING
    loaded = load_champion(store.config)
    assert isinstance(loaded, LoadedModel)
    assert loaded.ref == ModelRef(name="churn-model", version="1", run_id=first.run_id)
    assert loaded.baseline == pytest.approx(first.metrics)
    assert set(loaded.baseline) == set(METRICS)
    assert loaded.threshold == pytest.approx(first.threshold)
    assert loaded.source == "models:/churn-model/1"
    assert loaded.reference_uri is not None
    assert loaded.reference_uri.endswith("/reference/reference.parquet")
    reference = store.reference
    np.testing.assert_allclose(loaded.score(reference), reference["score"], rtol=1e-9)
    proba = loaded.model.predict_proba(modeling.prepare_features(reference.head(3)))
    assert proba.shape == (3, 2)
    assert list(tmp_path.iterdir()) == []  # the download went to a temporary folder


@pytest.mark.slow
def test_watch_is_unknown_until_refreshed_then_caches(store: Store) -> None:
    watch = ModelWatch(store.config)
    assert watch.current() == ModelRef(name="churn-model", version="unknown", run_id="unknown")
    assert watch.baseline() == {}
    assert watch.threshold() is None
    assert watch.refresh() is True  # the first resolve counts as a change
    assert watch.current().version == "1"
    assert watch.refresh() is False
    assert watch.baseline() == pytest.approx(store.first.metrics)
    assert watch.threshold() == pytest.approx(store.first.threshold)


@pytest.mark.slow
def test_local_model_directory_with_baseline_beside_it(store: Store, tmp_path: Path) -> None:
    deploy = tmp_path / "deploy"
    uri = store.config.model.tracking_uri
    location = MlflowClient(uri, uri).get_model_version_download_uri("churn-model", "1")
    model_dir = Path(
        mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(deploy / "model"))
    )
    assert (model_dir / "MLmodel").is_file()
    beside = model_dir.parent
    shutil.copy(Path(store.config.data.reference_path).parent / "baseline.json", beside)
    config = _config(tmp_path / "no-store", local_path=str(model_dir))
    loaded = load_champion(config)
    assert loaded.ref == ModelRef(name="churn-model", version="1", run_id=store.first.run_id)
    assert loaded.threshold == pytest.approx(store.first.threshold)
    assert loaded.baseline == pytest.approx(store.first.metrics)
    reference = store.reference
    np.testing.assert_allclose(loaded.score(reference), reference["score"], rtol=1e-9)
    watch = ModelWatch(config)
    assert watch.refresh() is True
    assert watch.current() == loaded.ref
    assert not (tmp_path / "no-store").exists()  # no tracking store was touched

    # A baseline of another run is refused rather than silently paired with this model.
    data = json.loads((beside / "baseline.json").read_text())
    (beside / "baseline.json").write_text(json.dumps({**data, "run_id": "f" * 32}))
    with pytest.raises(ModelUnavailable, match=r"belongs to run f{32}"):
        load_champion(config)
    (beside / "baseline.json").unlink()
    with pytest.raises(ModelUnavailable, match=r"no baseline\.json"):
        resolve(config)


def test_local_path_that_is_not_a_model(tmp_path: Path) -> None:
    config = _config(tmp_path, local_path=str(tmp_path))
    with pytest.raises(ModelUnavailable, match=r"model\.local_path: .*\(no MLmodel file\)"):
        load_champion(config)


def test_missing_store_is_reported_not_created(tmp_path: Path) -> None:
    config = _config(tmp_path / "nowhere")
    for call in (load_champion, resolve, lambda c: ModelWatch(c).refresh()):
        with pytest.raises(ModelUnavailable, match=r"does not exist.*churn-monitor train"):
            call(config)
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.slow
def test_unknown_alias_or_model_names_it(store: Store) -> None:
    config = _config(store.root, registry_alias="staging")
    with pytest.raises(ModelUnavailable, match="models:/churn-model@staging") as err:
        load_champion(config)
    assert "staging" in str(err.value).split(": ", 1)[1]  # MLflow's reason follows
    watch = ModelWatch(_config(store.root, name="other-model"))
    with pytest.raises(ModelUnavailable, match="models:/other-model@champion"):
        watch.refresh()
    assert watch.current().version == "unknown"


@pytest.mark.slow
def test_second_training_moves_the_alias_and_the_watch_notices(
    store: Store, tmp_path: Path
) -> None:
    """Adds version 2, to a copy of the shared store."""
    shared, store = store, store.copy(tmp_path / "store")
    watch = ModelWatch(store.config)
    assert watch.refresh() is True
    assert watch.current().version == "1"

    # Far more trials than fit in the time limit: tuning stops after the trial in progress.
    second = store.train(seed=4, trials=500, timeout=1.0)
    assert second.version == "2"
    assert 1 <= second.trials_run < 500
    assert watch.current().version == "1"  # cached: nothing resolves until refresh()
    assert watch.refresh() is True
    assert watch.current() == ModelRef(name="churn-model", version="2", run_id=second.run_id)
    assert watch.refresh() is False
    assert watch.baseline() == pytest.approx(second.metrics)
    assert watch.threshold() == pytest.approx(second.threshold)
    loaded = load_champion(store.config)
    assert loaded.ref.version == "2"
    np.testing.assert_allclose(loaded.score(store.reference), store.reference["score"], rtol=1e-9)

    # The study accumulated both trainings' trials; the second explored new points.
    study = optuna.load_study(study_name="churn-model", storage=store.config.optuna.storage)
    assert len(study.trials) == TRIALS + second.trials_run
    first_points = [t.params for t in study.trials[:TRIALS]]
    assert all(t.params not in first_points for t in study.trials[TRIALS:])
    assert set(store.reference.columns) >= {schema.ID_COLUMN, schema.TARGET, "score"}
    # the shared store still serves version 1 to the module's other tests
    assert resolve(shared.config).ref.version == "1"
    assert not list(shared.root.rglob(f"*{second.run_id}*")), "the copy wrote into the original"
