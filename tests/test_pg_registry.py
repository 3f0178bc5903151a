"""MLflow's model registry and Optuna's storage on a real PostgreSQL server (the
`postgres_server` of tests/pg_fixtures.py), through the ``postgresql+psycopg://`` URLs
the compose stack gives them (psycopg 3, the installed driver): MLflow creates its
schema there, the project resolves and moves the champion alias through it, and the
exporter reads the Optuna study's progress from it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from exporter.config import parse_config
from exporter.model.registry import THRESHOLD_METRIC, resolve, set_alias
from exporter.model.studies import study_progress

from .pg_fixtures import Backend, PostgresServer

pytestmark = pytest.mark.integration


@pytest.fixture
def databases(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[Backend]:
    """Fresh PostgreSQL databases for this test, dropped after it (``WITH (FORCE)``:
    MLflow keeps its store's connections open)."""
    backend = Backend("postgresql", tmp_path, postgres_server)
    try:
        yield backend
    finally:
        backend.drop()


def test_mlflow_registry_runs_on_postgresql(databases: Backend, tmp_path: Path) -> None:
    url = databases.url("mlflow")
    assert url.startswith("postgresql+psycopg://")
    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiment = client.create_experiment("churn", artifact_location=(tmp_path / "a").as_uri())
    client.create_registered_model("churn-model")
    for threshold in (0.35, 0.6):
        run = client.create_run(experiment)
        client.log_metric(run.info.run_id, THRESHOLD_METRIC, threshold)
        client.log_metric(run.info.run_id, "test_f1", threshold / 2)
        client.set_terminated(run.info.run_id)
        client.create_model_version(
            "churn-model", f"runs:/{run.info.run_id}/model", run.info.run_id
        )
    config = parse_config({"model": {"tracking_uri": url}})
    set_alias(config, "champion", "1")
    first = resolve(config)
    assert (first.ref.version, first.threshold, first.baseline["f1"]) == ("1", 0.35, 0.175)
    set_alias(config, "champion", "2")  # a promotion moves the alias
    assert resolve(config).ref.version == "2" and resolve(config).threshold == 0.6
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:  # MLflow's own schema, in this database
            tables = set(sa.inspect(conn).get_table_names())
            aliases = conn.exec_driver_sql("SELECT alias, version FROM registered_model_aliases")
            assert aliases.all() == [("champion", 2)]
    finally:
        engine.dispose()
    assert {"alembic_version", "registered_models", "model_versions"} <= tables


def test_optuna_storage_runs_on_postgresql_and_the_exporter_reads_it(databases: Backend) -> None:
    url = databases.url("optuna")
    study = optuna.create_study(study_name="churn-model", storage=url, direction="maximize")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(lambda trial: 1 - (trial.suggest_float("x", 0, 1) - 0.3) ** 2, n_trials=4)
    reloaded = optuna.load_study(study_name="churn-model", storage=url)
    assert len(reloaded.trials) == 4
    (progress,) = study_progress(url)
    assert progress.study == "churn-model" and progress.direction == "MAXIMIZE"
    assert progress.best_value == study.best_value
    assert progress.trials["COMPLETE"] == 4
    assert progress.best_params == {"x": study.best_params["x"]}
