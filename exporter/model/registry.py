"""Access to the served model: the MLflow registry alias, or a local model directory.

Two ways to find the model, chosen by the config:

* **Registry** (default): the version the alias points at, ``models:/<model.name>@
  <model.registry_alias>`` in the store at ``model.tracking_uri``. The alias is resolved
  to a version number first and that exact version is loaded, so the model, its
  `ModelRef` and its baseline always belong together even if a training moves the alias
  meanwhile. Baseline and threshold are the training run's metrics ``test_accuracy``,
  ``test_precision``, ``test_recall``, ``test_f1``, ``test_roc_auc`` and
  ``decision_threshold`` (see :mod:`exporter.training.register`); a metric that was
  undefined on the test split has no run metric and is absent from the baseline.
* **Local** (``model.local_path`` set): an MLflow model directory (the one holding
  ``MLmodel``), e.g. downloaded with ``mlflow artifacts download -u
  models:/churn-model@champion``. Baseline, threshold and version come from
  ``baseline.json`` (written by training beside the reference) found inside that
  directory or beside it (in its parent). Its ``run_id`` must match the model's.

:func:`load_champion` loads the model (with ``mlflow.sklearn``, so ``predict_proba``
works); :class:`ModelWatch` is the cheap view the exporter and the API poll. Every
failure (store missing or unreachable, no such model or alias, unreadable files) raises
:class:`ModelUnavailable` with the reason. A missing SQLite tracking file is reported,
never created.

Remote tracking servers: MLflow retries HTTP requests with back-off
(``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``MLFLOW_HTTP_REQUEST_TIMEOUT``), so a resolve
against an unreachable server can take a while; call it from a worker thread.
"""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

import json
import logging
import math
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import sqlalchemy as sa
from mlflow import MlflowClient
from mlflow.models import Model

from exporter.config import MonitoringConfig
from exporter.data.dburl import safe_url, sqlite_file
from exporter.domain import schema
from exporter.domain.metrics import METRICS
from exporter.domain.model import ModelRef
from exporter.model import modeling
from exporter.model.version import VersionedModel

log = logging.getLogger(__name__)

BASELINE_FILE = "baseline.json"
#: Run metric holding the decision threshold, and the one used when a run has none.
THRESHOLD_METRIC = "decision_threshold"
DEFAULT_THRESHOLD = 0.5
#: Baseline metric name -> training-run metric key.
BASELINE_RUN_METRICS: dict[str, str] = {m: f"test_{m}" for m in METRICS}


class ModelUnavailable(RuntimeError):
    """The model (or its registry entry) cannot be resolved or loaded; says why."""


class AliasNotFound(ModelUnavailable):
    """The registry answered, and the model or the alias does not exist (for the
    challenger alias, the normal state between a promotion and the next retraining)."""


def _is_not_found(err: BaseException) -> bool:
    """Whether an MLflow error says the registered model or the alias does not exist."""
    code = getattr(err, "error_code", None)
    return code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"} and (
        "not found" in str(err)
    )


@dataclass(frozen=True)
class ModelInfo:
    """Where the model is and what it is judged against (no model object)."""

    ref: ModelRef
    baseline: Mapping[str, float]
    threshold: float
    #: The reference snapshot of the training run (artifact URI or local path), if known.
    reference_uri: str | None
    #: What to load: ``models:/<name>/<version>`` or the local model directory.
    source: str


@dataclass(frozen=True)
class LoadedModel(VersionedModel):
    """A model version as :func:`load_champion` loads it, and where it was found."""

    reference_uri: str | None = None
    source: str = ""

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """P(churn) per row of a frame with the Telco feature columns."""
        proba = self.model.predict_proba(modeling.prepare_features(frame))
        return np.asarray(proba)[:, schema.positive_column(getattr(self.model, "classes_", None))]


# -------------------------------------------------------------------------- helpers


def _reason(err: BaseException) -> str:
    message = getattr(err, "message", None) or str(err) or type(err).__name__
    return str(message).strip().splitlines()[0][:500]


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute against the working directory.

    MLflow caches its stores by URI string, so a relative ``sqlite:///mlruns/mlflow.db``
    would keep pointing at the folder it was first used from after a ``chdir``.
    """
    if not uri.startswith("sqlite:"):
        return uri
    url = sa.engine.make_url(uri)
    if not url.database or url.database == ":memory:" or Path(url.database).is_absolute():
        return uri
    absolute = url.set(database=str(Path(url.database).resolve()))
    return absolute.render_as_string(hide_password=False)


def _check_sqlite_exists(uri: str) -> None:
    """A SQLite store that does not exist would be created empty by MLflow: refuse."""
    database = sqlite_file(uri)
    if database is not None and not database.is_file():
        raise ModelUnavailable(
            f"model.tracking_uri: {uri} does not exist (run `churn-monitor train` first)"
        )


def check_server_answers(uri: str) -> None:
    """A tracking server that does not answer would keep MLflow retrying for minutes:
    refuse at once (one connection attempt, a few seconds at most)."""
    if not uri.startswith(("http://", "https://")):
        return
    import httpx

    try:
        httpx.get(f"{uri.rstrip('/')}/health", timeout=5.0)
    except httpx.TransportError as err:
        raise ModelUnavailable(
            f"model.tracking_uri: {safe_url(uri)} does not answer ({_reason(err)}): start "
            "the MLflow server, or fix model.tracking_uri"
        ) from err


def _client(uri: str) -> MlflowClient:
    _check_sqlite_exists(uri)
    check_server_answers(uri)
    uri = absolute_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


# ------------------------------------------------------------------------- registry


def _resolve_registry(config: MonitoringConfig) -> ModelInfo:
    name, alias, uri = config.model.name, config.model.registry_alias, config.model.tracking_uri
    where = f"models:/{name}@{alias} at {safe_url(uri)}"
    client = _client(uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception as err:
        unavailable = AliasNotFound if _is_not_found(err) else ModelUnavailable
        raise unavailable(f"{where}: {_reason(err)}") from err
    run_id = version.run_id or "unknown"
    metrics: dict[str, float] = {}
    reference_uri = None
    if version.run_id:
        try:
            run = client.get_run(version.run_id)
            metrics = dict(run.data.metrics)
            files = client.list_artifacts(version.run_id, "reference")
            reference = next((f.path for f in files if not f.is_dir), None)
            if reference is not None:
                reference_uri = f"{run.info.artifact_uri.rstrip('/')}/{reference}"
        except Exception as err:
            raise ModelUnavailable(
                f"{where}: version {version.version}: cannot read run {version.run_id}: "
                f"{_reason(err)}"
            ) from err
    baseline = {
        key: value
        for key, metric in BASELINE_RUN_METRICS.items()
        if (value := _finite(metrics.get(metric))) is not None
    }
    threshold = _finite(metrics.get(THRESHOLD_METRIC))
    if threshold is None:
        log.warning(
            "%s: version %s has no %s metric; using %.2f",
            where,
            version.version,
            THRESHOLD_METRIC,
            DEFAULT_THRESHOLD,
        )
        threshold = DEFAULT_THRESHOLD
    return ModelInfo(
        ref=ModelRef(name=name, version=str(version.version), run_id=run_id),
        baseline=baseline,
        threshold=threshold,
        reference_uri=reference_uri,
        source=f"models:/{name}/{version.version}",
    )


def _load_registry(config: MonitoringConfig, info: ModelInfo) -> Any:
    """Load the exact version in ``info``. Its artifact location is asked of the
    registry with an explicit client (``mlflow.artifacts.download_artifacts`` would
    resolve ``models:/`` URIs through the process-wide registry URI instead)."""
    name, version = info.ref.name, info.ref.version
    uri = config.model.tracking_uri
    try:
        location = _client(uri).get_model_version_download_uri(name, version)
        with tempfile.TemporaryDirectory(prefix="churn-model-") as tmp:
            # Download with the configured tracking URI: mlflow-artifacts:/ locations of a
            # tracking server resolve against it, not the process-wide default.
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=location, dst_path=tmp, tracking_uri=absolute_tracking_uri(uri)
            )
            return mlflow.sklearn.load_model(local)
    except Exception as err:
        raise ModelUnavailable(
            f"{info.source} at {safe_url(uri)}: cannot load the model: {_reason(err)}"
        ) from err


# ---------------------------------------------------------------------------- local


def baseline_path(reference: str | os.PathLike[str]) -> Path:
    """The baseline file of a reference snapshot: ``baseline.json`` in its folder."""
    return Path(reference).parent / BASELINE_FILE


def _find_baseline(model_dir: Path) -> Path:
    for candidate in (model_dir / BASELINE_FILE, model_dir.parent / BASELINE_FILE):
        if candidate.is_file():
            return candidate
    raise ModelUnavailable(
        f"model.local_path: no {BASELINE_FILE} in {model_dir} or beside it in "
        f"{model_dir.parent} (training writes one next to the reference snapshot)"
    )


def _resolve_local(config: MonitoringConfig) -> ModelInfo:
    model_dir = Path(str(config.model.local_path))
    if not (model_dir / "MLmodel").is_file():
        raise ModelUnavailable(
            f"model.local_path: {model_dir} is not an MLflow model directory (no MLmodel file)"
        )
    try:
        model_run_id = Model.load(str(model_dir)).run_id
    except Exception as err:
        raise ModelUnavailable(
            f"model.local_path: cannot read {model_dir / 'MLmodel'}: {_reason(err)}"
        ) from err
    baseline_file = _find_baseline(model_dir)
    try:
        data = json.loads(baseline_file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
    except (OSError, ValueError) as err:
        raise ModelUnavailable(f"model.local_path: cannot read {baseline_file}: {err}") from err
    baseline_run = data.get("run_id")
    if model_run_id and baseline_run and model_run_id != baseline_run:
        raise ModelUnavailable(
            f"model.local_path: {baseline_file} belongs to run {baseline_run} but the model "
            f"in {model_dir} comes from run {model_run_id}"
        )
    metrics = data.get("metrics")
    baseline = {
        key: value
        for key in METRICS
        if isinstance(metrics, dict) and (value := _finite(metrics.get(key))) is not None
    }
    threshold = _finite(data.get("threshold"))
    if threshold is None:
        log.warning("%s has no threshold; using %.2f", baseline_file, DEFAULT_THRESHOLD)
        threshold = DEFAULT_THRESHOLD
    reference_name = data.get("reference")
    reference_uri = None
    if isinstance(reference_name, str) and (baseline_file.parent / reference_name).is_file():
        reference_uri = str(baseline_file.parent / reference_name)
    return ModelInfo(
        ref=ModelRef(
            name=config.model.name,
            version=str(data.get("version") or "local"),
            run_id=str(model_run_id or baseline_run or "unknown"),
        ),
        baseline=baseline,
        threshold=threshold,
        reference_uri=reference_uri,
        source=str(model_dir),
    )


def _load_local(info: ModelInfo) -> Any:
    try:
        return mlflow.sklearn.load_model(info.source)
    except Exception as err:
        raise ModelUnavailable(
            f"model.local_path: cannot load the model in {info.source}: {_reason(err)}"
        ) from err


# --------------------------------------------------------------------------- public


def resolve(config: MonitoringConfig) -> ModelInfo:
    """Where the champion is now, with its baseline and threshold (no model loaded)."""
    if config.model.local_path:
        return _resolve_local(config)
    return _resolve_registry(config)


def load_champion(config: MonitoringConfig) -> LoadedModel:
    """Load the champion: the alias's current version, or ``model.local_path``."""
    info = resolve(config)
    model = _load_local(info) if config.model.local_path else _load_registry(config, info)
    if not hasattr(model, "predict_proba"):
        raise ModelUnavailable(f"{info.source}: the model has no predict_proba")
    return LoadedModel(
        model=model,
        ref=info.ref,
        baseline=dict(info.baseline),
        threshold=info.threshold,
        reference_uri=info.reference_uri,
        source=info.source,
    )


class ModelWatch:
    """Which model version is the champion, cached; resolved only by :meth:`refresh`.

    ``current()`` never touches the network: before the first successful refresh it is
    ``ModelRef(name, "unknown", "unknown")``. A failed refresh raises
    :class:`ModelUnavailable` and keeps the last good answer. Thread-safe.
    """

    def __init__(self, config: MonitoringConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._info: ModelInfo | None = None

    def current(self) -> ModelRef:
        with self._lock:
            info = self._info
        return info.ref if info is not None else ModelRef(name=self.config.model.name)

    def info(self) -> ModelInfo | None:
        """Everything the last successful refresh found (None before it)."""
        with self._lock:
            return self._info

    def refresh(self) -> bool:
        """Resolve the alias now; True when the version differs from the last known one
        (including the first successful resolve)."""
        info = resolve(self.config)
        with self._lock:
            previous = self._info
            self._info = info
        changed = previous is None or previous.ref != info.ref
        if changed and previous is not None:
            log.info(
                "champion of %s moved from version %s to %s",
                info.ref.name,
                previous.ref.version,
                info.ref.version,
            )
        return changed

    def baseline(self) -> dict[str, float]:
        """The current version's test-set metrics ({} before the first refresh)."""
        info = self.info()
        return dict(info.baseline) if info is not None else {}

    def threshold(self) -> float | None:
        """The current version's decision threshold (None before the first refresh)."""
        info = self.info()
        return info.threshold if info is not None else None


def set_alias(config: MonitoringConfig, alias: str, version: str | None) -> None:
    """Point `alias` of the configured model at `version`, or remove it (None): a
    promotion moves the champion alias and removes the challenger's."""
    uri = config.model.tracking_uri
    try:
        client = _client(uri)
        if version is None:
            client.delete_registered_model_alias(config.model.name, alias)
        else:
            client.set_registered_model_alias(config.model.name, alias, version)
    except ModelUnavailable:
        raise
    except Exception as err:
        raise ModelUnavailable(
            f"models:/{config.model.name}@{alias} at {safe_url(uri)}: {_reason(err)}"
        ) from err
