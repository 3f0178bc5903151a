"""Tuning: an Optuna study chooses the model family and its hyperparameters.

The objective is the mean ROC AUC of a stratified 3-fold cross-validation on the train
split (maximised), over the search space of :func:`exporter.model.modeling.suggest_params`.
The study lives in ``optuna.storage`` under ``optuna.study_name`` and accumulates
across trainings (``load_if_exists``). The TPE sampler is seeded with
``seed + <trials already in the study>``: a fresh storage with the same seed and data
gives identical trials, and a later training into the same study explores new points
instead of replaying the first run's random start-up trials. The model is chosen among
the trials of *this* call only (its data may differ from earlier runs'): best CV ROC
AUC, ties to the earliest trial.

Each trial is a nested MLflow run ``trial-<n>`` of the training's parent run: params =
the trial's parameters and ``trial_number``; metrics ``cv_roc_auc`` and
``cv_roc_auc_std``; tags ``optuna.study_name`` and ``optuna.trial_number``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import mlflow
import numpy as np
import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from sklearn.model_selection import StratifiedKFold, cross_val_score
from tqdm import tqdm

from exporter.config import MonitoringConfig
from exporter.data.dburl import safe_url
from exporter.model import modeling
from exporter.training.errors import TrainingError

log = logging.getLogger(__name__)

CV_FOLDS = 3
#: Trial user attributes: the training's parent MLflow run, and the trial's own run.
PARENT_ATTR = "mlflow_parent_run_id"
CHILD_ATTR = "mlflow_run_id"


@dataclass(frozen=True)
class Tuning:
    """The outcome of one :func:`tune` call."""

    best_number: int
    #: The chosen trial's parameters, ``model`` (family) included.
    best_params: dict[str, Any]
    #: The chosen trial's CV ROC AUC.
    best_value: float
    #: Trials this call ran (every state), and how many completed.
    trials_run: int
    trials_complete: int


def open_study(config: MonitoringConfig, seed: int) -> optuna.Study:
    """The configured study (created if absent) with its seeded TPE sampler."""
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


class Objective:
    """CV ROC AUC of one trial's pipeline; each trial is a nested MLflow run."""

    def __init__(
        self, X: pd.DataFrame, y: np.ndarray, seed: int, experiment_id: str, parent_run_id: str
    ) -> None:
        self.X, self.y, self.seed = X, y, seed
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=seed)

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(PARENT_ATTR, self.parent_run_id)
        with mlflow.start_run(
            experiment_id=self.experiment_id,
            run_name=f"trial-{trial.number}",
            nested=True,
            tags={
                "optuna.study_name": trial.study.study_name,
                "optuna.trial_number": str(trial.number),
            },
        ) as child:
            trial.set_user_attr(CHILD_ATTR, child.info.run_id)
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


def complete_value(trial: FrozenTrial) -> float | None:
    """The objective value of a complete trial; None for a trial in any other state."""
    if trial.state != TrialState.COMPLETE or trial.value is None:
        return None
    return float(trial.value)


class TrialProgress:
    """One progress bar over a tuning call's trials, for ``study.optimize(callbacks=...)``.

    Its postfix is the best CV ROC AUC among the trials of *this* call (the pool the
    model is chosen from), not Optuna's study-wide best, which includes earlier trainings.
    ``enabled=False`` writes nothing. Use as a context manager, so the bar is closed.
    """

    def __init__(self, total: int, *, enabled: bool = True, file: TextIO | None = None) -> None:
        self.best: FrozenTrial | None = None
        self.bar = tqdm(total=total, desc="tuning", unit="trial", file=file, disable=not enabled)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Count the finished trial and show the best value so far."""
        value = complete_value(trial)
        best = None if self.best is None else complete_value(self.best)
        if value is not None and (best is None or value > best):
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
def quiet_optuna(quiet: bool) -> Iterator[None]:
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


def _outcome(study: optuna.Study, parent_run_id: str) -> Tuning:
    """The best of the trials this call ran (those tagged with its parent run)."""
    own = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(PARENT_ATTR) == parent_run_id
    ]
    complete = [(t, v) for t in own if (v := complete_value(t)) is not None]
    if not complete:
        raise TrainingError(
            f"no Optuna trial completed ({len(own)} started); "
            "raise the time limit or check the data"
        )
    best, value = max(complete, key=lambda pair: (pair[1], -pair[0].number))
    return Tuning(
        best_number=best.number,
        best_params=dict(best.params),
        best_value=value,
        trials_run=len(own),
        trials_complete=len(complete),
    )


def tune(
    study: optuna.Study,
    objective: Objective,
    *,
    n_trials: int,
    timeout: float | None,
    progress: bool,
) -> Tuning:
    """Run ``n_trials`` trials (or until ``timeout`` seconds), then choose the best.

    ``progress`` shows a :class:`TrialProgress` bar on stderr; Optuna's log line per
    trial is shown only without it and when this module logs at DEBUG (``--verbose``).
    """
    trial_lines = not progress and log.isEnabledFor(logging.DEBUG)
    with quiet_optuna(not trial_lines), TrialProgress(n_trials, enabled=progress) as bar:
        study.optimize(objective, n_trials=n_trials, timeout=timeout, n_jobs=1, callbacks=[bar])
    return _outcome(study, objective.parent_run_id)
