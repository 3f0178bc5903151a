"""A model version as the services hold it, without MLflow (the API imports this
eagerly; :mod:`exporter.model.registry`, which loads versions, imports MLflow)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exporter.domain.model import ModelRef


@dataclass(frozen=True)
class VersionedModel:
    """A loaded model version with its identity, baseline and decision threshold."""

    #: The fitted scikit-learn estimator (``predict_proba``, ``predict`` at the threshold).
    model: Any
    ref: ModelRef
    #: Test-set metrics from training: the defined ones of ``METRICS``.
    baseline: dict[str, float]
    threshold: float
