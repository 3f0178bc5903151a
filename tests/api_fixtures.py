"""Fixtures of the prediction-API and simulator tests.

A test module uses them with ``pytest_plugins = ["tests.api_fixtures"]``.

* ``tiny_model``: a real scikit-learn pipeline (``modeling.build_pipeline``, logistic
  regression) fitted on 1,500 synthetic customers, as a ``registry.LoadedModel``.
* ``stand_in``: a registry stand-in over that model whose alias a test can move, and
  a challenger alias that does not exist until a test sets ``stand_in.challenger``.
* ``api_config`` / ``client``: an in-process app (FastAPI's TestClient) logging to a
  SQLite file in the test's tmp dir; its reference snapshot does not exist, so its
  predictions carry no anomaly score (``make_config(..., reference=path)`` gives one).
* ``mlflow_store``: a real MLflow tracking store and Optuna storage with a champion
  trained by ``training.train`` (one trial), once per session.
* ``live_api``: a real uvicorn process serving that champion on a free port, once
  per session, stopped by pid.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from exporter.config import MonitoringConfig, parse_config
from exporter.data import synthetic
from exporter.model import modeling

from .support import Process, free_port, wait_until

#: Deadline for a uvicorn process to answer, then to serve the champion: serve_api
#: imports FastAPI, scikit-learn and MLflow, and its lifespan startup waits up to 30 s
#: for the model before uvicorn binds; generous for a busy machine.
STARTUP = 180.0
#: A valid customer (the first row of the IBM export).
CUSTOMER: dict[str, Any] = {
    "customerID": "7590-VHVEG",
    "gender": "Female",
    "SeniorCitizen": 0,
    "Partner": "Yes",
    "Dependents": "No",
    "tenure": 1,
    "PhoneService": "No",
    "MultipleLines": "No phone service",
    "InternetService": "DSL",
    "OnlineSecurity": "No",
    "OnlineBackup": "Yes",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "No",
    "StreamingMovies": "No",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": 29.85,
    "TotalCharges": 29.85,
}


def customer(**changes: Any) -> dict[str, Any]:
    """A valid request body with `changes` applied (a value of ... drops the field)."""
    body = {**CUSTOMER, **changes}
    return {k: v for k, v in body.items() if v is not ...}


def customers(n: int, *, seed: int = 0, id_offset: int = 0) -> list[dict[str, Any]]:
    """`n` valid synthetic customers as request bodies (TotalCharges null when blank)."""
    frame = synthetic.generate_customers(n, seed=seed, id_offset=id_offset)
    out = []
    for record in frame.drop(columns=["Churn"]).to_dict("records"):
        body = {k: (v.item() if hasattr(v, "item") else v) for k, v in record.items()}
        if body["TotalCharges"] != body["TotalCharges"]:  # NaN
            body["TotalCharges"] = None
        out.append(body)
    return out


def count_rows(url: str, table: str = "predictions") -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
    finally:
        engine.dispose()


def fetch_rows(url: str, query: sa.Select[Any]) -> list[dict[str, Any]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()


# ---------------------------------------------------------------- in-process app


@pytest.fixture(scope="session")
def tiny_model() -> Any:
    from exporter.domain.model import ModelRef
    from exporter.model.registry import LoadedModel

    frame = synthetic.generate_customers(1500, seed=7)
    pipeline = modeling.build_pipeline({"model": modeling.LOGISTIC, "lr_C": 1.0}, seed=0)
    pipeline.fit(modeling.prepare_features(frame), (frame["Churn"] == "Yes").astype(int))
    return LoadedModel(
        model=pipeline,
        ref=ModelRef(name="churn-model", version="1", run_id="run-one"),
        baseline={"accuracy": 0.8, "precision": 0.65, "recall": 0.55, "f1": 0.6, "roc_auc": 0.84},
        threshold=0.4,
    )


def _is_challenger(config: MonitoringConfig) -> bool:
    """Whether `config` is the challenger's (``roles.challenger_config``: the default
    challenger alias as its registry alias)."""
    return config.model.registry_alias == "challenger"


class StandInRegistry:
    """`load_champion` and `ModelWatch` over one in-memory champion a test can replace,
    and a challenger alias: absent while `challenger` is None (``AliasNotFound``, as the
    registry says), failing to load while `challenger_unavailable` is set.

    `attempts` and `loads` count the champion's loads; `challenger_attempts` and
    `challenger_loads` the challenger's."""

    def __init__(self, champion: Any) -> None:
        self.champion = champion
        self.unavailable: str | None = None
        self.attempts = 0
        self.loads = 0
        self.challenger: Any = None
        self.challenger_unavailable: str | None = None
        self.challenger_attempts = 0
        self.challenger_loads = 0

    def load(self, config: MonitoringConfig) -> Any:
        from exporter.model.registry import ModelUnavailable

        if _is_challenger(config):
            return self._load_challenger(config)
        self.attempts += 1
        if self.unavailable:
            raise ModelUnavailable(self.unavailable)
        self.loads += 1
        return self.champion

    def _load_challenger(self, config: MonitoringConfig) -> Any:
        from exporter.model.registry import ModelUnavailable

        self.challenger_attempts += 1
        self._challenger_ref(config)
        if self.challenger_unavailable:
            raise ModelUnavailable(self.challenger_unavailable)
        self.challenger_loads += 1
        return self.challenger

    def _challenger_ref(self, config: MonitoringConfig) -> Any:
        from exporter.model.registry import AliasNotFound

        if self.challenger is None:
            alias = config.model.registry_alias
            raise AliasNotFound(f"models:/{config.model.name}@{alias}: alias not found")
        return self.challenger.ref

    def watch(self, config: MonitoringConfig) -> Any:
        return _ChallengerWatch(self, config) if _is_challenger(config) else self

    def refresh(self) -> bool:
        return True

    def current(self) -> Any:
        return self.champion.ref

    def promote(self, version: str, *, threshold: float | None = None) -> Any:
        """Point the alias at a new version of the same pipeline."""
        self.champion = replace(
            self.champion,
            ref=replace(self.champion.ref, version=version, run_id=f"run-{version}"),
            threshold=self.champion.threshold if threshold is None else threshold,
        )
        return self.champion


class _ChallengerWatch:
    """The `ModelWatch` of the stand-in's challenger alias."""

    def __init__(self, registry: StandInRegistry, config: MonitoringConfig) -> None:
        self.registry = registry
        self.config = config

    def refresh(self) -> bool:
        self.registry._challenger_ref(self.config)
        return True

    def current(self) -> Any:
        return self.registry._challenger_ref(self.config)


@pytest.fixture
def stand_in(tiny_model: Any) -> StandInRegistry:
    return StandInRegistry(tiny_model)


def make_config(tmp_path: Path, *, reference: Path | None = None, **api: Any) -> MonitoringConfig:
    """A config logging to a SQLite file in `tmp_path`, with `api` settings; its
    reference snapshot is `reference`, by default a file that does not exist (so the
    API answers without anomaly scores whatever the working directory holds)."""
    reference_path = reference if reference is not None else tmp_path / "no-reference.parquet"
    return parse_config(
        {
            "data": {
                "reference_path": str(reference_path),
                "current": {"url": f"sqlite:///{tmp_path / 'predictions.db'}"},
            },
            "api": {"max_batch": 20, "max_body_bytes": 100_000, "model_poll_seconds": 0.1, **api},
        }
    )


@pytest.fixture
def api_config(tmp_path: Path) -> MonitoringConfig:
    return make_config(tmp_path)


@pytest.fixture
def client(api_config: MonitoringConfig, stand_in: StandInRegistry) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from exporter.api import create_app

    app = create_app(api_config, model_loader=stand_in.load, model_watch=stand_in.watch)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


# ------------------------------------------------------------ real MLflow + uvicorn


@dataclass(frozen=True)
class TrainedStore:
    """A tracking store with a registered champion, and the config pointing at it."""

    root: Path
    config_raw: dict[str, Any]
    model_name: str
    version: str
    run_id: str


@pytest.fixture(scope="session")
def mlflow_store(tmp_path_factory: pytest.TempPathFactory) -> TrainedStore:
    from exporter.training.pipeline import train

    root = tmp_path_factory.mktemp("mlflow-store")
    data = root / "customers.csv"
    synthetic.generate_customers(2000, seed=3).to_csv(data, index=False)
    raw = {
        "model": {"tracking_uri": f"sqlite:///{root / 'mlflow.db'}"},
        "optuna": {"storage": f"sqlite:///{root / 'optuna.db'}"},
        "data": {"reference_path": str(root / "reference.parquet")},
    }
    result = train(parse_config(raw), data=data, trials=1, seed=3, progress=False)
    return TrainedStore(root, raw, result.model_name, result.version, result.run_id)


def register_new_version(store: TrainedStore) -> str:
    """Register another version of the champion's model and move the alias to it."""
    from mlflow import MlflowClient

    uri = store.config_raw["model"]["tracking_uri"]
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    current = client.get_model_version_by_alias(store.model_name, "champion")
    source = client.get_model_version_download_uri(store.model_name, current.version)
    new = client.create_model_version(store.model_name, source, run_id=current.run_id)
    wait_until(
        lambda: client.get_model_version(store.model_name, new.version).status == "READY",
        STARTUP,
        "the new model version to be READY",
    )
    client.set_registered_model_alias(store.model_name, "champion", new.version)
    return str(new.version)


#: The command the lead's `churn-monitor api` runs, with the config from the environment.
SERVE = textwrap.dedent(
    """
    import sys
    from exporter.api import serve_api
    from exporter.config import load_config
    serve_api(load_config(), "127.0.0.1", int(sys.argv[1]))
    """
)


#: An app with a loader that always fails: no MLflow import, so it starts fast.
SERVE_WITHOUT_REGISTRY = textwrap.dedent(
    """
    import logging, sys
    import uvicorn
    from exporter.api import create_app
    from exporter.config import load_config
    def no_model(config):
        raise RuntimeError("this test serves no model")
    logging.basicConfig(level="INFO")
    app = create_app(load_config(), model_loader=no_model)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
    """
)


@dataclass
class LiveApi:
    url: str
    db_url: str
    process: Process
    config_path: Path


def start_api(
    tmp: Path, raw: dict[str, Any], log_name: str = "api.log", code: str = SERVE
) -> LiveApi:
    """A uvicorn process serving `raw` (a config mapping) on a free port, once healthy
    or failed (the caller decides what it expects of /health)."""
    port = free_port()
    config_path = tmp / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    process = Process(
        [sys.executable, "-c", code, str(port)],
        tmp / log_name,
        cwd=Path(__file__).resolve().parents[1],
        env={"CHURN_MONITOR_CONFIG": str(config_path), "LOG_LEVEL": "INFO"},
    )
    url = f"http://127.0.0.1:{port}"

    def answering() -> bool:
        if not process.alive():
            raise AssertionError(f"the API exited:\n{process.output()}")
        httpx.get(f"{url}/health", timeout=2)
        return True

    try:
        wait_until(answering, STARTUP, f"the API on port {port} to answer")
    except BaseException:
        process.stop()
        raise
    return LiveApi(url, raw["data"]["current"]["url"], process, config_path)


@pytest.fixture(scope="session")
def live_api(
    mlflow_store: TrainedStore, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    tmp = tmp_path_factory.mktemp("live-api")
    raw = {
        **mlflow_store.config_raw,
        "data": {
            **mlflow_store.config_raw["data"],
            "current": {"url": f"sqlite:///{tmp / 'predictions.db'}"},
        },
        "api": {"model_poll_seconds": 0.5, "max_batch": 1000},
    }
    api = start_api(tmp, raw)
    try:
        wait_until(
            lambda: httpx.get(f"{api.url}/health", timeout=2).status_code == 200,
            STARTUP,
            "the API to load the champion",
        )
        yield api
    finally:
        api.process.stop()


@pytest.fixture(scope="session")
def modelless_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """A uvicorn process whose tracking store does not exist: no model to serve."""
    tmp = tmp_path_factory.mktemp("modelless-api")
    raw = {
        "model": {"tracking_uri": f"sqlite:///{tmp / 'absent.db'}"},
        "data": {"current": {"url": f"sqlite:///{tmp / 'predictions.db'}"}},
    }
    api = start_api(tmp, raw)
    try:
        yield api
    finally:
        api.process.stop()


__all__ = [
    "CUSTOMER",
    "LiveApi",
    "StandInRegistry",
    "TrainedStore",
    "api_config",
    "client",
    "count_rows",
    "customer",
    "customers",
    "fetch_rows",
    "live_api",
    "make_config",
    "mlflow_store",
    "modelless_api",
    "register_new_version",
    "stand_in",
    "start_api",
    "tiny_model",
]
