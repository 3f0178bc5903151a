"""`churn-monitor train`: tune, fit, evaluate, log and register the churn model.

:func:`train` runs the model lifecycle step of the design in one call:

1. **Data** (:mod:`~exporter.training.dataset`): the user's file or synthetic customers,
   checked before anything is created (no folder, no Optuna study, no MLflow run), and
   split 60/20/20, stratified and seeded. ``shuffle`` permutes some feature columns
   among the train rows only (an ablation; validation and test stay intact).
2. **Tuning** (:mod:`~exporter.training.tune`): Optuna chooses the model family and its
   hyperparameters by cross-validated ROC AUC on the train split.
3. **Fit and evaluation** (:mod:`~exporter.training.evaluate`): the chosen pipeline is
   refitted on the train split only, so the validation and test splits stay held out
   for that exact model; the decision threshold maximises F1 on the validation split;
   the test metrics at that threshold are the baseline the exporter compares live
   performance with.
4. **Record** (:mod:`~exporter.training.register`): the MLflow run, the registered
   version, the reference snapshot and ``baseline.json``; the alias
   ``model.registry_alias`` moves to the new version as the very last step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import optuna
from mlflow import MlflowClient
from threadpoolctl import threadpool_limits

from exporter.config import MonitoringConfig
from exporter.data.dburl import safe_url
from exporter.domain.model import ModelRef
from exporter.model import modeling
from exporter.model.registry import absolute_tracking_uri, baseline_path
from exporter.training import register
from exporter.training.dataset import Dataset, Splits, load_dataset, shuffle_train, split
from exporter.training.errors import TrainingError
from exporter.training.evaluate import THRESHOLD_STRATEGY, evaluate
from exporter.training.tune import CV_FOLDS, Objective, open_study, tune

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainResult:
    """What one :func:`train` call produced."""

    model_name: str
    #: Registered model version (a string, as MLflow reports it).
    version: str
    run_id: str
    #: The exact version: ``models:/<name>/<version>``.
    model_uri: str
    alias: str
    #: The chosen trial's parameters, ``model`` (family) included.
    best_params: dict[str, Any]
    #: The chosen trial's CV ROC AUC.
    best_value: float
    #: Test-split metrics at the decision threshold (the defined ones of
    #: :data:`exporter.domain.metrics.METRICS`).
    metrics: dict[str, float]
    threshold: float
    reference_path: Path
    baseline_path: Path
    study_name: str
    #: Trials this call ran (every state), and how many completed.
    trials_run: int
    trials_complete: int
    validation_metrics: dict[str, float] = field(default_factory=dict)
    feature_importance: dict[str, float] = field(default_factory=dict)


def _trial_count(config: MonitoringConfig, trials: int | None, timeout: float | None) -> int:
    """The number of trials to run; TrainingError for a bad count or time limit."""
    n_trials = config.optuna.n_trials if trials is None else trials
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise TrainingError(f"trials: must be a positive integer, got {n_trials!r}")
    if timeout is not None and not timeout > 0:
        raise TrainingError(f"timeout: must be greater than 0 seconds, got {timeout!r}")
    return n_trials


def _run_params(
    config: MonitoringConfig,
    dataset: Dataset,
    splits: Splits,
    *,
    seed: int,
    n_trials: int,
    timeout: float | None,
) -> dict[str, Any]:
    """The parent run's parameters known before tuning."""
    return {
        "seed": seed,
        "data_source": dataset.source,
        "rows": len(dataset.y),
        "shuffled_features": ",".join(dataset.shuffled) or "none",
        "train_rows": len(splits.train),
        "validation_rows": len(splits.validation),
        "test_rows": len(splits.test),
        "cv_folds": CV_FOLDS,
        "optuna_study": config.optuna.study_name,
        "optuna_storage": safe_url(config.optuna.storage),
        "optuna_trials_requested": n_trials,
        "optuna_timeout_seconds": "none" if timeout is None else timeout,
        "threshold_strategy": THRESHOLD_STRATEGY,
        "model_split": "train",
    }


def _train_in_run(
    config: MonitoringConfig,
    client: MlflowClient,
    study: optuna.Study,
    dataset: Dataset,
    splits: Splits,
    *,
    experiment_id: str,
    run_id: str,
    seed: int,
    n_trials: int,
    timeout: float | None,
    progress: bool,
) -> TrainResult:
    """Everything inside the parent MLflow run ``run_id``: tune, fit, evaluate, record."""
    name, alias = config.model.name, config.model.registry_alias
    reference_path = Path(config.data.reference_path)
    mlflow.log_params(
        _run_params(config, dataset, splits, seed=seed, n_trials=n_trials, timeout=timeout)
    )
    X_train, y_train = dataset.X.iloc[splits.train], dataset.y[splits.train]
    objective = Objective(X_train, y_train, seed, experiment_id, run_id)
    tuning = tune(study, objective, n_trials=n_trials, timeout=timeout, progress=progress)
    pipeline = modeling.build_pipeline(tuning.best_params, seed).fit(X_train, y_train)
    evaluation = evaluate(pipeline, dataset, splits, seed)
    register.log_evaluation(tuning, evaluation)
    family = tuning.best_params["model"]
    example = X_train.dropna().head(5)
    version = register.log_model(pipeline, evaluation.threshold, example, name, family)
    reference = register.reference_frame(dataset, splits, evaluation)
    baseline = register.baseline_record(
        ModelRef(name, version, run_id),
        alias=alias,
        tuning=tuning,
        evaluation=evaluation,
        reference_path=reference_path,
        reference_rows=len(reference),
    )
    register.publish_reference(reference, baseline, reference_path)
    register.move_alias(client, name, alias, version)
    return TrainResult(
        model_name=name,
        version=version,
        run_id=run_id,
        model_uri=f"models:/{name}/{version}",
        alias=alias,
        best_params=tuning.best_params,
        best_value=tuning.best_value,
        metrics=evaluation.test_metrics,
        threshold=evaluation.threshold,
        reference_path=reference_path,
        baseline_path=baseline_path(reference_path),
        study_name=config.optuna.study_name,
        trials_run=tuning.trials_run,
        trials_complete=tuning.trials_complete,
        validation_metrics=evaluation.validation_metrics,
        feature_importance={f: v["mean"] for f, v in evaluation.importances.items()},
    )


def train(
    config: MonitoringConfig,
    *,
    data: str | Path | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    seed: int = 42,
    progress: bool = True,
    rows: int | None = None,
    shuffle: Sequence[str] = (),
) -> TrainResult:
    """Tune, fit, evaluate, log, register and move the alias (module docstring).

    ``trials`` defaults to ``optuna.n_trials``; ``timeout`` (seconds) stops tuning
    early, after the trial in progress. Without ``data``, ``rows`` synthetic customers
    are generated (default 7000). ``shuffle`` names feature columns to permute among
    the train rows (:func:`~exporter.training.dataset.shuffle_train`). ``progress``
    shows a progress bar over the trials on stderr
    (:class:`~exporter.training.tune.TrialProgress`). Raises
    :class:`TrainingError` for bad arguments or data before anything is written, and
    naming the config field (``model.tracking_uri``, ``optuna.storage``, ...) when a
    store cannot be used.
    """
    started = time.perf_counter()
    n_trials = _trial_count(config, trials, timeout)
    dataset = load_dataset(data, seed, rows)
    splits = split(dataset.y, seed)
    dataset = shuffle_train(dataset, splits, shuffle, seed)
    artifact_root = register.prepare_locations(config, Path(config.data.reference_path))
    uri = absolute_tracking_uri(config.model.tracking_uri)
    with register.tracking(uri), threadpool_limits(limits=1):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        experiment_id = register.experiment_id(client, config.model.name, artifact_root)
        study = open_study(config, seed)
        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train-{config.model.name}",
            tags={"churn.role": "training"},
        ) as parent:
            result = _train_in_run(
                config,
                client,
                study,
                dataset,
                splits,
                experiment_id=experiment_id,
                run_id=parent.info.run_id,
                seed=seed,
                n_trials=n_trials,
                timeout=timeout,
                progress=progress,
            )
            mlflow.log_metric("training_duration_seconds", time.perf_counter() - started)
    log.info(
        "trained %s version %s (run %s): test ROC AUC %s, threshold %.3f, alias %s",
        result.model_name,
        result.version,
        result.run_id,
        _format(result.metrics.get("roc_auc")),
        result.threshold,
        result.alias,
    )
    return result


def _format(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.4f}"


def summary_lines(result: TrainResult) -> list[str]:
    """Human-readable lines for the command line."""
    metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items())
    params = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
        for k, v in sorted(result.best_params.items())
    )
    return [
        f"model {result.model_name} version {result.version} "
        f"(alias {result.alias}, run {result.run_id})",
        f"best trial CV ROC AUC {result.best_value:.4f}: {params}",
        f"test: {metrics} at threshold {result.threshold:.3f}",
        f"trials this run: {result.trials_run} ({result.trials_complete} complete) "
        f"in study {result.study_name}",
        f"reference {result.reference_path}, baseline {result.baseline_path}",
    ]
