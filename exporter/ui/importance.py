"""The champion's global feature importances, read from its MLflow training run.

Training logs the mean permutation importance (drop of ROC AUC when the feature is
shuffled) of each raw feature as the run metric ``importance_<feature>`` and the mean
and standard deviation in the artifact ``feature_importance.json``
(:mod:`exporter.training.register`). :func:`feature_importance` reads the metrics of a run, or
the artifact when the run has no such metrics; with ``model.local_path`` it reads
``feature_importance.json`` inside the model directory or beside it. Every problem
raises :class:`ImportanceUnavailable` saying why; a missing SQLite store is reported,
never created.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

from exporter.config import MonitoringConfig

METRIC_PREFIX = "importance_"
ARTIFACT = "feature_importance.json"


class ImportanceUnavailable(RuntimeError):
    """The importances cannot be read; the message says why."""


def _from_json(data: Any) -> dict[str, float]:
    """``{feature: {"mean": m, "std": s}}`` (or ``{feature: m}``) as feature -> mean."""
    if not isinstance(data, dict):
        raise ImportanceUnavailable(f"{ARTIFACT} is not a JSON object")
    out: dict[str, float] = {}
    for feature, value in data.items():
        mean = value.get("mean") if isinstance(value, dict) else value
        if not isinstance(mean, int | float | str):  # null, a list or an object
            continue
        try:
            number = float(mean)
        except ValueError:  # text that is not a number
            continue
        if math.isfinite(number):
            out[str(feature)] = number
    return out


def _local(config: MonitoringConfig) -> dict[str, float]:
    model_dir = Path(str(config.model.local_path))
    for candidate in (model_dir / ARTIFACT, model_dir.parent / ARTIFACT):
        if candidate.is_file():
            try:
                return _from_json(json.loads(candidate.read_text(encoding="utf-8")))
            except (OSError, ValueError) as err:
                raise ImportanceUnavailable(f"cannot read {candidate}: {err}") from None
    raise ImportanceUnavailable(
        f"no {ARTIFACT} in {model_dir} or beside it (model.local_path deployments carry "
        "no training run)"
    )


def feature_importance(config: MonitoringConfig, run_id: str) -> dict[str, float]:
    """Mean permutation importance per feature of training run `run_id`."""
    if config.model.local_path:
        result = _local(config)
    else:
        result = _from_run(config.model.tracking_uri, run_id)
    if not result:
        raise ImportanceUnavailable(f"run {run_id} logged no feature importances")
    return result


def _from_run(uri: str, run_id: str) -> dict[str, float]:
    from exporter.data.dburl import sqlite_file
    from exporter.model.registry import absolute_tracking_uri  # imports MLflow: only when needed

    if not run_id or run_id == "unknown":
        raise ImportanceUnavailable("the served model has no known training run")
    database = sqlite_file(uri)
    if database is not None and not database.is_file():
        raise ImportanceUnavailable(f"the MLflow store {uri} does not exist")
    from mlflow import MlflowClient

    uri = absolute_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    try:
        run = client.get_run(run_id)
    except Exception as err:
        reason = (str(err).strip() or type(err).__name__).splitlines()[0][:300]
        raise ImportanceUnavailable(f"cannot read run {run_id} from MLflow: {reason}") from None
    metrics = {
        key.removeprefix(METRIC_PREFIX): float(value)
        for key, value in run.data.metrics.items()
        if key.startswith(METRIC_PREFIX) and math.isfinite(float(value))
    }
    if metrics:
        return metrics
    try:
        with tempfile.TemporaryDirectory(prefix="churn-importance-") as tmp:
            local = client.download_artifacts(run_id, ARTIFACT, dst_path=tmp)
            return _from_json(json.loads(Path(local).read_text(encoding="utf-8")))
    except Exception as err:
        reason = (str(err).strip() or type(err).__name__).splitlines()[0][:300]
        raise ImportanceUnavailable(
            f"run {run_id} has no importance_* metrics and no readable {ARTIFACT}: {reason}"
        ) from None
