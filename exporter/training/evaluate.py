"""Judging the fitted pipeline on held-out rows: decision threshold, metrics, importances.

* **Threshold**: the score threshold ``t`` that maximises F1 on the validation split,
  ``F1(t) = 2·P(t)·R(t) / (P(t) + R(t))`` with ``P = TP / (TP + FP)`` and
  ``R = TP / (TP + FN)`` for ``ŷ = score >= t``. Churn is the minority class, so 0.5
  would trade recall away. Ties go to the lowest such threshold; with one class only
  F1 is not defined and 0.5 is used.
* **Metrics**: accuracy, precision, recall and F1 at the threshold and ROC AUC of the
  scores, on the validation and the test split, from
  :func:`exporter.stats.performance.classification_metrics` (the one implementation;
  undefined values are left out). The test values are the model's baseline.
* **Importances**: permutation importance per raw feature, the mean (and standard
  deviation) drop of the test ROC AUC when that feature's values are shuffled;
  3 repeats on at most 1,000 test rows (a stratified subsample). Undefined, and left
  out, when the test split holds one class only (ROC AUC is then undefined).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.inspection import permutation_importance
from sklearn.metrics import precision_recall_curve
from sklearn.model_selection import train_test_split

from exporter.domain import schema
from exporter.stats.performance import classification_metrics
from exporter.training.dataset import Dataset, Splits

#: Permutation importance: repeats and the largest test subsample it runs on.
IMPORTANCE_REPEATS = 3
IMPORTANCE_MAX_ROWS = 1000
#: How the threshold is chosen (logged as the run parameter ``threshold_strategy``).
THRESHOLD_STRATEGY = "max_f1_validation"
#: The threshold when F1 is undefined (one class in the validation split).
FALLBACK_THRESHOLD = 0.5


@dataclass(frozen=True)
class Evaluation:
    """What the held-out splits say about one fitted pipeline."""

    threshold: float
    #: P(churn) of the validation and the test rows, in split order.
    validation_scores: np.ndarray
    test_scores: np.ndarray
    #: Metric name -> share in [0, 1]; undefined metrics are absent.
    validation_metrics: dict[str, float]
    test_metrics: dict[str, float]
    #: Feature -> {"mean": ..., "std": ...} of the ROC AUC drop; {} when undefined.
    importances: dict[str, dict[str, float]]


def best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The score threshold that maximises F1 (``score >= threshold`` is churn).

    Ties go to the lowest such threshold. With a single class in ``y_true`` F1 is not
    defined and 0.5 is returned.
    """
    y_true = np.asarray(y_true)
    if len(np.unique(y_true)) < 2:
        return FALLBACK_THRESHOLD
    precision, recall, thresholds = precision_recall_curve(y_true, scores)
    # The last precision/recall pair has no threshold (recall 0 by construction).
    p, r = precision[:-1], recall[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    return float(thresholds[int(np.argmax(f1))])


def permutation_importances(
    pipeline: Any, X: pd.DataFrame, y: np.ndarray, seed: int
) -> dict[str, dict[str, float]]:
    """Mean and standard deviation of the ROC AUC drop per feature (module docstring)."""
    if len(np.unique(y)) < 2:
        return {}
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
        str(feature): {
            "mean": float(result.importances_mean[i]),
            "std": float(result.importances_std[i]),
        }
        for i, feature in enumerate(X.columns)
    }


def evaluate(pipeline: Any, dataset: Dataset, splits: Splits, seed: int) -> Evaluation:
    """Threshold on the validation split, metrics on both, importances on the test split."""
    X_val, y_val = dataset.X.iloc[splits.validation], dataset.y[splits.validation]
    X_test, y_test = dataset.X.iloc[splits.test], dataset.y[splits.test]
    churn = schema.positive_column(pipeline.classes_)
    val_scores = pipeline.predict_proba(X_val)[:, churn]
    threshold = best_f1_threshold(y_val, val_scores)
    test_scores = pipeline.predict_proba(X_test)[:, churn]
    return Evaluation(
        threshold=threshold,
        validation_scores=val_scores,
        test_scores=test_scores,
        validation_metrics=classification_metrics(y_val, val_scores, threshold),
        test_metrics=classification_metrics(y_test, test_scores, threshold),
        importances=permutation_importances(pipeline, X_test, y_test, seed),
    )
