"""The training pipeline: tune with Optuna, evaluate, register in MLflow.

:mod:`~exporter.training.pipeline` runs the steps in order: the data
(:mod:`~exporter.training.dataset`), tuning (:mod:`~exporter.training.tune`), the
threshold, metrics and importances (:mod:`~exporter.training.evaluate`), and the MLflow
run, registration, alias, reference snapshot and baseline file
(:mod:`~exporter.training.register`).

MLflow's anonymous usage tracking is switched off (``MLFLOW_DISABLE_TELEMETRY`` and
``DO_NOT_TRACK``, unless already set) here, before any module of the package imports
MLflow.
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
