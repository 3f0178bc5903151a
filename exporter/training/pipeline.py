"""`churn-monitor train`: tune, fit, evaluate, log and register the churn model.

:func:`train` runs the whole model lifecycle step of the design in one call:

1. **Data.** The user's CSV/Parquet through :func:`exporter.data.loader.load_customers`
   (``require_target=True``), or ``generate_customers(7000, seed=seed)``. Every data
   problem (missing column, a Churn value outside Yes/No/1/0/True/False, too few rows
   of a class) raises :class:`TrainingError` naming the column *before* anything is
   created: no folder, no Optuna study, no MLflow run.
2. **Split.** Stratified and seeded: 60 % train, 20 % validation, 20 % test.
3. **Tuning.** Optuna chooses the model family (logistic regression or histogram
   gradient boosting) and its hyperparameters (:mod:`exporter.model.modeling`), maximising
   the mean ROC AUC of a stratified 3-fold cross-validation on the train split. The
   study lives in ``optuna.storage`` under ``optuna.study_name`` and accumulates
   across trainings (``load_if_exists``). The TPE sampler is seeded with
   ``seed + <trials already in the study>``: a fresh storage with the same seed and
   data gives identical trials, and a later training into the same study explores
   new points instead of replaying the first run's random start-up trials. The model
   is chosen among the trials of *this* call only (its data may differ from earlier
   runs'), best CV ROC AUC, ties to the earliest trial.
4. **Fit and threshold.** The chosen pipeline is refitted on the train split only,
   so the validation and test splits stay held out for that exact model. The decision
   threshold maximises F1 on the validation split (churn is the minority class, so
   0.5 would trade recall away); it is baked into the logged model as a scikit-learn
   ``FixedThresholdClassifier``, so ``predict`` applies it and ``predict_proba``
   returns P(churn) in column 1.
5. **Evaluation.** Accuracy, precision, recall and F1 at the threshold and ROC AUC on
   the test split: the baseline the exporter compares live performance with. Permutation
   importances (ROC AUC drop, 3 repeats, at most 1,000 test rows) per raw feature.
6. **MLflow** (``model.tracking_uri``): experiment named after ``model.name``, one
   parent run per training, one nested child run per Optuna trial; the model is
   logged with signature and input example, registered as ``model.name`` and the alias
   ``model.registry_alias`` moved to the new version (aliases, not stages) as the very
   last step, once every artifact is in place.
7. **Reference snapshot**: the held-out rows (validation + test, about 40 % of the
   data): customerID (when the data has it), the 19 features, Churn ("Yes"/"No") and
   ``score`` = the model's P(churn). Held-out rows, not the rows the model was fitted
   on, because their scores are what the model produces on unseen customers: the
   prediction-drift statistics compare live scores with these, and in-sample scores of
   a boosted model are sharper than live ones. Written to ``data.reference_path``
   (Parquet if it ends in ``.parquet``, else CSV) and logged as a run artifact.
   ``baseline.json`` beside it holds the test metrics, threshold, model name, version
   and run id, so a ``model.local_path`` deployment has a baseline without MLflow.

MLflow names (parent run):

* params: ``model`` (family), the chosen hyperparameters (``lr_C``, ``hgb_*``),
  ``seed``, ``data_source``, ``rows``, ``train_rows``, ``validation_rows``,
  ``test_rows``, ``cv_folds``, ``optuna_study``, ``optuna_storage`` (password hidden),
  ``optuna_trials_requested``, ``optuna_timeout_seconds``, ``threshold_strategy``
  (``max_f1_validation``), ``best_trial_number``, ``model_split`` (``train``),
  ``reference_rows``;
* metrics: ``test_accuracy``, ``test_precision``, ``test_recall``, ``test_f1``,
  ``test_roc_auc``; ``validation_<same>``; ``cv_roc_auc`` (the chosen trial's),
  ``decision_threshold``, ``optuna_trials_run``, ``optuna_trials_complete``,
  ``importance_<feature>`` (mean permutation importance), ``training_duration_seconds``;
* artifacts: ``reference/<reference file name>``, ``baseline.json``,
  ``feature_importance.json`` (mean and std per feature); the model itself is an MLflow 3
  logged model (``name="model"``) linked to the run;
* tags: ``churn.registered_model``, ``churn.registered_version``, ``churn.alias``.

Child runs (one per trial, named ``trial-<n>``): params = the trial's parameters and
``trial_number``; metrics ``cv_roc_auc`` and ``cv_roc_auc_std``; tags
``optuna.study_name`` and ``optuna.trial_number``.

Where files go: the MLflow SQLite file at ``model.tracking_uri`` (default
``mlruns/mlflow.db``) with artifacts in ``artifacts/<experiment>`` next to it, the
Optuna SQLite file at ``optuna.storage`` (default ``data/optuna.db``), the reference
and ``baseline.json`` at ``data.reference_path``. Relative paths resolve against the
working directory; missing folders are created.

Telemetry: MLflow's anonymous usage tracking is switched off (``MLFLOW_DISABLE_TELEMETRY``
and ``DO_NOT_TRACK``, unless already set) before this module imports MLflow.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import json
import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import mlflow
import mlflow.sklearn
import numpy as np
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.inspection import permutation_importance
from sklearn.model_selection import (
    FixedThresholdClassifier,
    StratifiedKFold,
    cross_val_score,
    train_test_split,
)
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from exporter.config import MonitoringConfig
from exporter.data.dburl import safe_url, sqlite_file
from exporter.data.loader import DataSchemaError, encode_target, load_customers, normalize_frame
from exporter.data.synthetic import generate_customers
from exporter.domain import schema
from exporter.model import modeling
from exporter.model.registry import absolute_tracking_uri

log = logging.getLogger(__name__)

#: Rows of the synthetic default training set.
SYNTHETIC_ROWS = 7000
#: Split shares (stratified): train / validation / test.
VALIDATION_SHARE = 0.2
TEST_SHARE = 0.2
CV_FOLDS = 3
#: Fewest rows of each class (churned and not) a training set must have.
MIN_ROWS_PER_CLASS = 20
#: Permutation importance: repeats and the largest test subsample it runs on.
IMPORTANCE_REPEATS = 3
IMPORTANCE_MAX_ROWS = 1000
THRESHOLD_STRATEGY = "max_f1_validation"
#: The logged model's name within its run (MLflow 3 ``name=``).
MODEL_ARTIFACT_NAME = "model"
BASELINE_FILE = "baseline.json"
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
_PARENT_ATTR = "mlflow_parent_run_id"
_CHILD_ATTR = "mlflow_run_id"


class TrainingError(Exception):
    """Training cannot start or finish; the message names the column or setting."""


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
    #: Test-split metrics at the decision threshold (keys ``modeling.METRIC_NAMES``).
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


@dataclass(frozen=True)
class _Dataset:
    frame: pd.DataFrame  # loader-normalised, customerID (if any), features, Churn
    X: pd.DataFrame  # model input (modeling.prepare_features)
    y: np.ndarray  # 0/1
    source: str


@dataclass(frozen=True)
class _Splits:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


# ----------------------------------------------------------------------------- data


def _load_dataset(data: str | Path | None, seed: int) -> _Dataset:
    try:
        if data is None:
            raw = generate_customers(SYNTHETIC_ROWS, seed=seed)
            frame = normalize_frame(raw, require_target=True).frame
            source = f"synthetic:{SYNTHETIC_ROWS}:seed={seed}"
        else:
            frame = load_customers(data, require_target=True).frame
            source = str(data)
        y = encode_target(frame[schema.TARGET])
    except DataSchemaError as err:
        raise TrainingError(str(err)) from err
    counts = {int(label): int((y == label).sum()) for label in (0, 1)}
    if min(counts.values()) < MIN_ROWS_PER_CLASS:
        raise TrainingError(
            f"{'' if data is None else f'{data}: '}column {schema.TARGET!r}: need at least "
            f"{MIN_ROWS_PER_CLASS} rows of each class to train, found "
            f"{counts[1]} 'Yes' and {counts[0]} 'No'"
        )
    return _Dataset(frame=frame, X=modeling.prepare_features(frame), y=y, source=source)


def _split(y: np.ndarray, seed: int) -> _Splits:
    index = np.arange(len(y))
    rest, test = train_test_split(index, test_size=TEST_SHARE, stratify=y, random_state=seed)
    train, validation = train_test_split(
        rest,
        test_size=VALIDATION_SHARE / (1.0 - TEST_SHARE),
        stratify=y[rest],
        random_state=seed,
    )
    return _Splits(train=np.sort(train), validation=np.sort(validation), test=np.sort(test))


# ------------------------------------------------------------------------ locations


def _prepare_locations(config: MonitoringConfig) -> Path | None:
    """Create the parent folders of the SQLite files and the reference; return the
    artifact root for a new MLflow experiment (None: let the tracking server decide)."""
    artifact_root = None
    tracking_db = sqlite_file(config.model.tracking_uri)
    if tracking_db is not None:
        tracking_db.parent.mkdir(parents=True, exist_ok=True)
        artifact_root = tracking_db.parent.resolve() / "artifacts"
    optuna_db = sqlite_file(config.optuna.storage)
    if optuna_db is not None:
        optuna_db.parent.mkdir(parents=True, exist_ok=True)
    Path(config.data.reference_path).parent.mkdir(parents=True, exist_ok=True)
    return artifact_root


@contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API (tracking and registry) at ``uri``; restore after."""
    keys = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {key: os.environ.get(key) for key in keys}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(saved["MLFLOW_REGISTRY_URI"])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _experiment_id(client: MlflowClient, name: str, artifact_root: Path | None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = (artifact_root / name).as_uri() if artifact_root is not None else None
        return client.create_experiment(name, artifact_location=location)
    if experiment.lifecycle_stage != "active":
        raise TrainingError(
            f"model.name: the MLflow experiment {name!r} is deleted; restore it "
            f"(`mlflow experiments restore --experiment-id {experiment.experiment_id}`) "
            "or remove it from the tracking store"
        )
    return experiment.experiment_id


def _open_study(config: MonitoringConfig, seed: int) -> optuna.Study:
    cfg = config.optuna
    try:
        storage = optuna.storages.RDBStorage(cfg.storage)
        study = optuna.create_study(
            storage=storage,
            study_name=cfg.study_name,
            direction="maximize",
            load_if_exists=True,
        )
    except Exception as err:
        raise TrainingError(
            f"optuna.storage: cannot open {safe_url(cfg.storage)}: {type(err).__name__}: {err}"
        ) from err
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise TrainingError(
            f"optuna.study_name: study {cfg.study_name!r} exists and minimises its objective; "
            "choose another study name"
        )
    existing = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=seed + existing)
    return study


# ------------------------------------------------------------------------- tuning


class _Objective:
    """CV ROC AUC of one trial's pipeline; each trial is a nested MLflow run."""

    def __init__(
        self, X: pd.DataFrame, y: np.ndarray, seed: int, experiment_id: str, parent_run_id: str
    ) -> None:
        self.X, self.y, self.seed = X, y, seed
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(_PARENT_ATTR, self.parent_run_id)
        with mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=f"trial-{trial.number}",
            nested=True,
            tags={
                "optuna.study_name": trial.study.study_name,
                "optuna.trial_number": str(trial.number),
            },
        ) as child:
            trial.set_user_attr(_CHILD_ATTR, child.info.run_id)
            params = modeling.suggest_params(trial)
            mlflow.log_params({**params, "trial_number": trial.number})
            scores = cross_val_score(
                modeling.build_pipeline(params, self.seed),
                self.X,
                self.y,
                cv=self.cv,
                scoring="roc_auc",
                n_jobs=1,
            )
            value = float(np.mean(scores))
            mlflow.log_metrics({"cv_roc_auc": value, "cv_roc_auc_std": float(np.std(scores))})
        return value


def _own_trials(study: optuna.Study, parent_run_id: str) -> list[optuna.trial.FrozenTrial]:
    return [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(_PARENT_ATTR) == parent_run_id
    ]


def _best_trial(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise TrainingError(
            f"no Optuna trial completed ({len(trials)} started); "
            "raise the time limit or check the data"
        )
    return max(complete, key=lambda t: (float(t.value), -t.number))


class TrialProgress:
    """One progress bar over a tuning call's trials, for ``study.optimize(callbacks=...)``.

    Its postfix is the best CV ROC AUC among the trials of *this* call (the pool the
    model is chosen from), not Optuna's study-wide best, which includes earlier trainings.
    ``enabled=False`` writes nothing. Use as a context manager, so the bar is closed.
    """

    def __init__(self, total: int, *, enabled: bool = True, file: TextIO | None = None) -> None:
        self.best: optuna.trial.FrozenTrial | None = None
        self.bar = tqdm(total=total, desc="tuning", unit="trial", file=file, disable=not enabled)

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """Count the finished trial and show the best value so far."""
        if trial.state == optuna.trial.TrialState.COMPLETE and (
            self.best is None or float(trial.value) > float(self.best.value)
        ):
            self.best = trial
        if self.best is not None:
            self.bar.set_postfix_str(
                f"best CV ROC AUC {self.best.value:.4f} (trial {self.best.number})",
                refresh=False,
            )
        self.bar.update(1)

    def __enter__(self) -> TrialProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()


@contextmanager
def _quiet_optuna(quiet: bool) -> Iterator[None]:
    """Hold Optuna's per-trial INFO lines back (the progress bar replaces them)."""
    if not quiet:
        yield
        return
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


# ------------------------------------------------------------------------ outputs


def _write_atomically(path: Path, write: Any) -> None:
    """Write through a temporary file in the same folder, then rename over ``path``,
    so a reader (the exporter) never sees half a file."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """Parquet when ``path`` ends in ``.parquet``, CSV otherwise (atomically)."""
    if path.suffix.lower() == ".parquet":
        _write_atomically(path, lambda p: frame.to_parquet(p, index=False))
    else:
        _write_atomically(path, lambda p: frame.to_csv(p, index=False))


def _reference_frame(dataset: _Dataset, rows: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    columns = [c for c in (schema.ID_COLUMN, *schema.FEATURES) if c in dataset.frame.columns]
    reference = dataset.frame.iloc[rows][columns].reset_index(drop=True)
    labels = np.asarray(schema.YES_NO, dtype=object)[dataset.y[rows]]
    reference[schema.TARGET] = pd.Series(labels).astype(dataset.frame[schema.TARGET].dtype)
    reference[SCORE_COLUMN] = scores.astype(np.float64)
    return reference


def _importances(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, seed: int
) -> dict[str, dict[str, float]]:
    if len(X) > IMPORTANCE_MAX_ROWS:
        rows, _ = train_test_split(
            np.arange(len(X)), train_size=IMPORTANCE_MAX_ROWS, stratify=y, random_state=seed
        )
        X, y = X.iloc[np.sort(rows)], y[np.sort(rows)]
    result = permutation_importance(
        pipeline,
        X,
        y,
        scoring="roc_auc",
        n_repeats=IMPORTANCE_REPEATS,
        random_state=seed,
        n_jobs=1,
    )
    return {
        feature: {
            "mean": float(result.importances_mean[i]),
            "std": float(result.importances_std[i]),
        }
        for i, feature in enumerate(X.columns)
    }


def _pip_requirements() -> list[str]:
    return mlflow.sklearn.get_default_pip_requirements(include_skops=True)


# --------------------------------------------------------------------------- train


def train(
    config: MonitoringConfig,
    *,
    data: str | Path | None = None,
    trials: int | None = None,
    timeout: float | None = None,
    seed: int = 42,
    progress: bool = True,
) -> TrainResult:
    """Tune, fit, evaluate, log, register and promote the churn model (module docstring).

    ``trials`` defaults to ``optuna.n_trials``; ``timeout`` (seconds) stops tuning
    early, after the trial in progress. ``progress`` shows a :class:`TrialProgress` bar on
    stderr; Optuna's log line per trial is shown only without it and when this module
    logs at DEBUG (``--verbose``). Raises :class:`TrainingError` for bad
    arguments or data before anything is written, and naming the config field
    (``model.tracking_uri``, ``optuna.storage``, ...) when a store cannot be used.
    """
    started = time.perf_counter()
    n_trials = config.optuna.n_trials if trials is None else trials
    if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
        raise TrainingError(f"trials: must be a positive integer, got {n_trials!r}")
    if timeout is not None and not timeout > 0:
        raise TrainingError(f"timeout: must be greater than 0 seconds, got {timeout!r}")

    dataset = _load_dataset(data, seed)
    splits = _split(dataset.y, seed)
    X, y = dataset.X, dataset.y
    X_train, y_train = X.iloc[splits.train], y[splits.train]
    X_val, y_val = X.iloc[splits.validation], y[splits.validation]
    X_test, y_test = X.iloc[splits.test], y[splits.test]

    artifact_root = _prepare_locations(config)
    model_name = config.model.name
    alias = config.model.registry_alias
    reference_path = Path(config.data.reference_path)
    baseline_path = reference_path.parent / BASELINE_FILE
    uri = absolute_tracking_uri(config.model.tracking_uri)

    with _tracking(uri), threadpool_limits(limits=1):
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        try:
            experiment_id = _experiment_id(client, model_name, artifact_root)
        except TrainingError:
            raise
        except Exception as err:
            raise TrainingError(
                f"model.tracking_uri: cannot use {safe_url(uri)}: {type(err).__name__}: {err}"
            ) from err
        study = _open_study(config, seed)

        with mlflow.start_run(
            experiment_id=experiment_id,
            run_name=f"train-{model_name}",
            tags={"churn.role": "training"},
        ) as parent:
            run_id = parent.info.run_id
            mlflow.log_params(
                {
                    "seed": seed,
                    "data_source": dataset.source,
                    "rows": len(y),
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
            )

            objective = _Objective(X_train, y_train, seed, experiment_id, run_id)
            trial_lines = not progress and log.isEnabledFor(logging.DEBUG)
            with (
                _quiet_optuna(not trial_lines),
                TrialProgress(n_trials, enabled=progress) as bar,
            ):
                study.optimize(
                    objective, n_trials=n_trials, timeout=timeout, n_jobs=1, callbacks=[bar]
                )
            own = _own_trials(study, run_id)
            best = _best_trial(own)
            best_params = dict(best.params)
            complete = sum(t.state == optuna.trial.TrialState.COMPLETE for t in own)

            pipeline = modeling.build_pipeline(best_params, seed).fit(X_train, y_train)
            val_scores = pipeline.predict_proba(X_val)[:, 1]
            threshold = modeling.best_f1_threshold(y_val, val_scores)
            validation_metrics = modeling.classification_metrics(y_val, val_scores, threshold)
            test_scores = pipeline.predict_proba(X_test)[:, 1]
            test_metrics = modeling.classification_metrics(y_test, test_scores, threshold)
            importances = _importances(pipeline, X_test, y_test, seed)

            mlflow.log_params({**best_params, "best_trial_number": best.number})
            mlflow.log_metrics(
                {
                    **{f"test_{k}": v for k, v in test_metrics.items()},
                    **{f"validation_{k}": v for k, v in validation_metrics.items()},
                    "cv_roc_auc": float(best.value),
                    "decision_threshold": threshold,
                    "optuna_trials_run": len(own),
                    "optuna_trials_complete": complete,
                    **{f"importance_{f}": v["mean"] for f, v in importances.items()},
                }
            )
            mlflow.log_dict(importances, "feature_importance.json")

            model = FixedThresholdClassifier(
                pipeline, threshold=threshold, response_method="predict_proba"
            )
            example = X_train.dropna().head(5)
            signature = infer_signature(example, model.predict_proba(example))
            info = mlflow.sklearn.log_model(
                model,
                name=MODEL_ARTIFACT_NAME,
                signature=signature,
                input_example=example,
                registered_model_name=model_name,
                pip_requirements=_pip_requirements(),
                pyfunc_predict_fn="predict_proba",
                skops_trusted_types=SKOPS_TRUSTED_TYPES[best_params["model"]],
            )
            version = str(info.registered_model_version)

            reference_rows = np.concatenate([splits.validation, splits.test])
            reference_scores = np.concatenate([val_scores, test_scores])
            order = np.argsort(reference_rows, kind="stable")
            reference = _reference_frame(dataset, reference_rows[order], reference_scores[order])
            baseline = {
                "model_name": model_name,
                "version": version,
                "run_id": run_id,
                "alias": alias,
                "metrics": test_metrics,
                "metric_split": "test",
                "threshold": threshold,
                "threshold_strategy": THRESHOLD_STRATEGY,
                "cv_roc_auc": float(best.value),
                "best_params": best_params,
                "reference": reference_path.name,
                "reference_rows": len(reference),
                "trained_at": time.time(),
            }
            write_table(reference, reference_path)
            _write_atomically(
                baseline_path,
                lambda p: p.write_text(json.dumps(baseline, indent=2) + "\n", encoding="utf-8"),
            )
            mlflow.log_artifact(str(reference_path), artifact_path="reference")
            mlflow.log_dict(baseline, BASELINE_FILE)
            mlflow.log_param("reference_rows", len(reference))
            mlflow.set_tags(
                {
                    "churn.registered_model": model_name,
                    "churn.registered_version": version,
                    "churn.alias": alias,
                }
            )
            client.set_registered_model_alias(model_name, alias, version)
            mlflow.log_metric("training_duration_seconds", time.perf_counter() - started)

    log.info(
        "trained %s version %s (run %s): test ROC AUC %.4f, threshold %.3f, alias %s",
        model_name,
        version,
        run_id,
        test_metrics["roc_auc"],
        threshold,
        alias,
    )
    return TrainResult(
        model_name=model_name,
        version=version,
        run_id=run_id,
        model_uri=f"models:/{model_name}/{version}",
        alias=alias,
        best_params=best_params,
        best_value=float(best.value),
        metrics=test_metrics,
        threshold=threshold,
        reference_path=reference_path,
        baseline_path=baseline_path,
        study_name=config.optuna.study_name,
        trials_run=len(own),
        trials_complete=complete,
        validation_metrics=validation_metrics,
        feature_importance={f: v["mean"] for f, v in importances.items()},
    )


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
