"""The churn classifier: feature preparation, the sklearn pipeline and its search space.

Pure computation, no I/O: :mod:`exporter.training` tunes, fits and judges it (Optuna,
MLflow); the services prepare their input with :func:`prepare_features`.

The pipeline takes the 19 raw Telco features (``schema.FEATURES``; other columns such
as customerID are ignored) and is a ``ColumnTransformer`` followed by one classifier:

* numeric (SeniorCitizen, tenure, MonthlyCharges, TotalCharges): median imputation
  (TotalCharges is blank where tenure is 0), then standard scaling;
* categorical (the other 15): missing values become the category ``"missing"``, then
  one-hot encoding with ``handle_unknown="ignore"`` (an unseen value such as a new
  payment method encodes as all zeros instead of failing);
* the classifier is one of :data:`MODEL_FAMILIES`, chosen by Optuna together with its
  hyperparameters (:func:`suggest_params`).

Every estimator runs single-threaded and seeded, so a fit is reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from exporter.domain import schema

#: Features the model treats as numbers (SeniorCitizen is 0/1, numeric to the model).
MODEL_NUMERIC: tuple[str, ...] = schema.MODEL_NUMERIC_FEATURES
#: Features the model one-hot encodes.
MODEL_CATEGORICAL: tuple[str, ...] = tuple(f for f in schema.FEATURES if f not in MODEL_NUMERIC)

LOGISTIC = "logistic_regression"
BOOSTING = "hist_gradient_boosting"
#: The model families Optuna chooses between (the categorical parameter ``model``).
MODEL_FAMILIES: tuple[str, ...] = (LOGISTIC, BOOSTING)
#: The boosting hyperparameters Optuna tunes, each on a log scale: the estimator's
#: parameter -> (its type, low, high). Trial parameters add the ``hgb_`` prefix.
BOOSTING_SPACE: dict[str, tuple[type[int] | type[float], float, float]] = {
    "learning_rate": (float, 0.02, 0.3),
    "max_iter": (int, 50, 300),
    "max_leaf_nodes": (int, 4, 32),
    "min_samples_leaf": (int, 10, 100),
    "l2_regularization": (float, 1e-4, 10.0),
}


def prepare_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input: ``schema.FEATURES`` in order, numeric features as float64.

    Floats for every numeric feature give the logged MLflow signature one stable type
    (``double``) whether or not a column had blanks in the training file.
    """
    missing = [c for c in schema.FEATURES if c not in frame.columns]
    if missing:
        raise ValueError(f"missing feature column(s): {', '.join(missing)}")
    features = frame.loc[:, list(schema.FEATURES)].copy()
    for column in MODEL_NUMERIC:
        features[column] = pd.to_numeric(features[column], errors="coerce").astype(np.float64)
    return features.reset_index(drop=True)


def preprocessor() -> ColumnTransformer:
    """Imputation, scaling and one-hot encoding of the raw features."""
    numeric = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
    return ColumnTransformer(
        [("num", numeric, list(MODEL_NUMERIC)), ("cat", categorical, list(MODEL_CATEGORICAL))],
        remainder="drop",
    )


def suggest_params(trial: Any) -> dict[str, Any]:
    """Draw a model family and its hyperparameters from an Optuna trial.

    Parameter names carry their family's prefix (``lr_``, ``hgb_``) so the numeric
    parameters of the best trial are unambiguous when exported per study.
    """
    family = trial.suggest_categorical("model", list(MODEL_FAMILIES))
    params: dict[str, Any] = {"model": family}
    if family == LOGISTIC:
        params["lr_C"] = trial.suggest_float("lr_C", 1e-3, 1e2, log=True)
    else:
        for name, (kind, low, high) in BOOSTING_SPACE.items():
            suggest = trial.suggest_int if kind is int else trial.suggest_float
            params[f"hgb_{name}"] = suggest(f"hgb_{name}", low, high, log=True)
    return params


def classifier(params: Mapping[str, Any], seed: int) -> Any:
    """The estimator described by ``params`` (as returned by :func:`suggest_params`)."""
    family = params["model"]
    if family == LOGISTIC:
        return LogisticRegression(C=float(params["lr_C"]), max_iter=2000)
    if family == BOOSTING:
        return HistGradientBoostingClassifier(
            **{name: kind(params[f"hgb_{name}"]) for name, (kind, _, _) in BOOSTING_SPACE.items()},
            early_stopping=False,
            random_state=seed,
        )
    raise ValueError(f"unknown model family {family!r}; expected one of {MODEL_FAMILIES}")


def build_pipeline(params: Mapping[str, Any], seed: int) -> Pipeline:
    """An unfitted preprocessing + classifier pipeline."""
    return Pipeline([("preprocess", preprocessor()), ("classifier", classifier(params, seed))])
