"""The training's record: the MLflow run, the registered version and its alias, the
reference snapshot and the baseline file.

MLflow (``model.tracking_uri``): an experiment named after ``model.name``, one parent
run per training (nested trial runs: :mod:`exporter.training.tune`). Parent run:

* params: ``model`` (family), the chosen hyperparameters (``lr_C``, ``hgb_*``),
  ``seed``, ``data_source``, ``rows``, ``train_rows``, ``validation_rows``,
  ``test_rows``, ``cv_folds``, ``optuna_study``, ``optuna_storage`` (password hidden),
  ``optuna_trials_requested``, ``optuna_timeout_seconds``, ``threshold_strategy``
  (``max_f1_validation``), ``best_trial_number``, ``model_split`` (``train``),
  ``reference_rows``;
* metrics: ``test_<metric>`` and ``validation_<metric>`` for each metric of
  :data:`exporter.domain.metrics.METRICS` that is defined; ``cv_roc_auc`` (the chosen
  trial's), ``decision_threshold``, ``optuna_trials_run``, ``optuna_trials_complete``,
  ``importance_<feature>`` (mean permutation importance), ``training_duration_seconds``;
* artifacts: ``reference/<reference file name>``, ``baseline.json``,
  ``feature_importance.json`` (mean and std per feature); the model itself is an MLflow 3
  logged model (``name="model"``) linked to the run;
* tags: ``churn.registered_model``, ``churn.registered_version``, ``churn.alias``.

The model is logged as a scikit-learn ``FixedThresholdClassifier`` around the pipeline,
so ``predict`` applies the decision threshold and ``predict_proba`` returns P(churn) in
column 1; it is registered as ``model.name`` and the alias is moved to the new version
(aliases, not stages) as the very last step, once every artifact is in place.

The reference snapshot is the held-out rows (validation + test, about 40 % of the
data): customerID (when the data has it), the 19 features, Churn (``"Yes"``/``"No"``) and
``score`` = the model's P(churn). Held-out rows, because their scores are what the model
produces on unseen customers: the prediction-drift statistics compare live scores with
these. It is written to the reference path (Parquet if it ends in ``.parquet``, else
CSV) and logged as a run artifact; ``baseline.json`` beside it holds the test metrics,
threshold, model name, version and run id, so a ``model.local_path`` deployment has a
baseline without MLflow. Both files are replaced atomically.

Where files go: the MLflow SQLite file at ``model.tracking_uri`` (default
``mlruns/mlflow.db``) with artifacts in ``artifacts/<experiment>`` next to it, the
Optuna SQLite file at ``optuna.storage``, the reference and ``baseline.json`` at the
reference path. Relative paths resolve against the working directory; missing folders
are created.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.model_selection import FixedThresholdClassifier

from exporter.config import MonitoringConfig
from exporter.data.atomic import write_atomically, write_bytes_atomically
from exporter.data.dburl import safe_url, sqlite_file
from exporter.domain import schema
from exporter.domain.model import ModelRef
from exporter.model import modeling
from exporter.model.registry import baseline_path
from exporter.training.dataset import Dataset, Splits
from exporter.training.errors import TrainingError
from exporter.training.evaluate import THRESHOLD_STRATEGY, Evaluation
from exporter.training.tune import Tuning

#: The logged model's name within its run (MLflow 3 ``name=``).
MODEL_ARTIFACT_NAME = "model"
SCORE_COLUMN = "score"
#: Types skops must be told to trust to load the pipeline we saved ourselves: the
#: one-hot encoder's dtype, and the tree nodes of gradient boosting (skops flags them
#: because a *forged* file could index out of bounds; ours comes from this process).
SKOPS_TRUSTED_TYPES: dict[str, list[str]] = {
    modeling.LOGISTIC: ["numpy.dtype"],
    modeling.BOOSTING: [
        "numpy.dtype",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    ],
}


# ------------------------------------------------------------------------ the store


def prepare_locations(config: MonitoringConfig, reference: Path) -> Path | None:
    """Create the parent folders of the SQLite files and of the reference; return the
    artifact root for a new MLflow experiment (None: let the tracking server decide)."""
    artifact_root = None
    tracking_db = sqlite_file(config.model.tracking_uri)
    if tracking_db is not None:
        tracking_db.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = tracking_db.parent.resolve() / "artifacts"
    optuna_db = sqlite_file(config.optuna.storage)
    if optuna_db is not None:
        optuna_db.parent.mkdir(parents=True, exist_ok=True)
    reference.parent.mkdir(parents=True, exist_ok=True)
    return artifact_root


def _point_mlflow_at(tracking: str | None, registry: str | None) -> None:
    """Set MLflow's process-wide URIs; None returns to the environment or the default.

    MLflow resets with None itself (``_use_tracking_uri``), but annotates ``str``.
    """
    mlflow.set_tracking_uri(tracking)  # type: ignore[arg-type]
    mlflow.set_registry_uri(registry)  # type: ignore[arg-type]


@contextmanager
def tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri``; restore after."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in keys}
    _point_mlflow_at(uri, uri)
    try:
        yield
    finally:
        _point_mlflow_at(saved["MLFLOW_TRACKING_URI"], saved["MLFLOW_REGISTRY_URI"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def experiment_id(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    """The active experiment ``name``, created when absent; TrainingError naming the
    config field when the store cannot be used or the experiment is deleted."""
    try:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = (artifact_root / name).as_uri() if artifact_root is not None else None
            return client.create_experiment(name, artifact_location=location)
    except Exception as err:
        raise TrainingError(
            f"model.tracking_uri: cannot use {safe_url(client.tracking_uri)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if experiment.lifecycle_stage != "active":
        raise TrainingError(
            f"model.name: the MLflow experiment {name!r} is deleted; restore it "
            f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) "
            "or remove it from the tracking store"
        )
    return str(experiment.experiment_id)


# ---------------------------------------------------------------------- the run


def log_evaluation(tuning: Tuning, evaluation: Evaluation) -> None:
    """Log the chosen parameters, the metrics and the importances to the active run."""
    importances = evaluation.importances
    mlflow.log_params({**tuning.best_params, "best_trial_number": tuning.best_number})
    mlflow.log_metrics(
        {
            **{f"test_{k}": v for k, v in evaluation.test_metrics.items()},
            **{f"validation_{k}": v for k, v in evaluation.validation_metrics.items()},
            "cv_roc_auc": tuning.best_value,
            "decision_threshold": evaluation.threshold,
            "optuna_trials_run": tuning.trials_run,
            "optuna_trials_complete": tuning.trials_complete,
            **{f"importance_{f}": v["mean"] for f, v in importances.items()},
        }
    )
    mlflow.log_dict(importances, "feature_importance.json")


def log_model(
    pipeline: Any, threshold: float, example: pd.DataFrame, model_name: str, family: str
) -> str:
    """Log the pipeline with its threshold baked in and register it; return the version."""
    model = FixedThresholdClassifier(pipeline, threshold=threshold, response_method="predict_proba")
    signature = infer_signature(example, model.predict_proba(example))
    info = mlflow.sklearn.log_model(
        model,
        name=MODEL_ARTIFACT_NAME,
        signature=signature,
        input_example=example,
        registered_model_name=model_name,
        pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
        pyfunc_predict_fn="predict_proba",
        skops_trusted_types=SKOPS_TRUSTED_TYPES[family],
    )
    return str(info.registered_model_version)


# ----------------------------------------------------------- reference and baseline


def reference_frame(dataset: Dataset, splits: Splits, evaluation: Evaluation) -> pd.DataFrame:
    """The held-out rows in data order, with Churn as text and the model's ``score``."""
    rows = np.concatenate([splits.validation, splits.test])
    scores = np.concatenate([evaluation.validation_scores, evaluation.test_scores])
    order = np.argsort(rows, kind="stable")
    rows, scores = rows[order], scores[order]
    columns = [c for c in (schema.ID_COLUMN, *schema.FEATURES) if c in dataset.frame.columns]
    reference = dataset.frame.iloc[rows][columns].reset_index(drop=True)
    labels = pd.Series([schema.label_text(int(code)) for code in dataset.y[rows]])
    reference[schema.TARGET] = labels.astype(dataset.frame[schema.TARGET].dtype)
    reference[SCORE_COLUMN] = scores.astype(np.float64)
    return reference


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Parquet when ``path`` ends in ``.parquet``, CSV otherwise (atomically)."""
    if path.suffix.lower() == ".parquet":
        write_atomically(path, lambda handle: frame.to_parquet(handle, index=False))
    else:
        write_atomically(path, lambda handle: frame.to_csv(handle, index=False))


def publish_reference(
    reference: pd.DataFrame, baseline: Mapping[str, Any], reference_path: Path
) -> None:
    """Write the reference and ``baseline.json`` beside it, and log both to the run."""
    write_table(reference, reference_path)
    text = json.dumps(dict(baseline), indent=2) + "\n"
    write_bytes_atomically(baseline_path(reference_path), text.encode("utf-8"))
    mlflow.log_artifact(str(reference_path), artifact_path="reference")
    mlflow.log_dict(dict(baseline), baseline_path(reference_path).name)
    mlflow.log_param("reference_rows", len(reference))


def baseline_record(
    ref: ModelRef,
    *,
    alias: str,
    tuning: Tuning,
    evaluation: Evaluation,
    reference_path: Path,
    reference_rows: int,
) -> dict[str, Any]:
    """The content of ``baseline.json``: test metrics, threshold and the model's identity
    (`ref`, registered under `alias`)."""
    return {
        "model_name": ref.name,
        "version": ref.version,
        "run_id": ref.run_id,
        "alias": alias,
        "metrics": evaluation.test_metrics,
        "metric_split": "test",
        "threshold": evaluation.threshold,
        "threshold_strategy": THRESHOLD_STRATEGY,
        "cv_roc_auc": tuning.best_value,
        "best_params": tuning.best_params,
        "reference": reference_path.name,
        "reference_rows": reference_rows,
        "trained_at": time.time(),
    }


def move_alias(client: MlflowClient, model_name: str, alias: str, version: str) -> None:
    """Tag the active run with the registration and point ``alias`` at ``version``."""
    mlflow.set_tags(
        {
            "churn.registered_model": model_name,
            "churn.registered_version": version,
            "churn.alias": alias,
        }
    )
    client.set_registered_model_alias(model_name, alias, version)
