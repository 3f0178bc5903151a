"""The FastAPI prediction service: app factory, routes and the uvicorn entry point.

``create_app(config)`` wires the champion model (loaded from the MLflow registry alias
or ``model.local_path``, and re-checked every ``api.model_poll_seconds``), the
micro-batching scorer, the prediction log at ``data.current.url``, the ``churn_api_*``
metrics and, with ``api.web_config_file``, basic auth. ``serve_api(config, host, port)``
runs it with uvicorn (with TLS when the web config has a certificate) until
SIGINT/SIGTERM; a bad web config raises `ConfigError` before anything starts.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# run time, and the batch body is a class made inside `create_app`.

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from pydantic_core import to_json
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from exporter import __version__
from exporter.api import errors
from exporter.api.auth import BasicAuthMiddleware
from exporter.api.bodylimit import BodySizeLimitMiddleware
from exporter.api.champion import ChampionHolder, ModelLoader, Served, WatchFactory
from exporter.api.logguard import LogFileGuard
from exporter.api.metrics import ApiMetrics, RequestMetricsMiddleware
from exporter.api.models import (
    BatchResponse,
    Customer,
    ErrorBody,
    Feedback,
    FeedbackResponse,
    Health,
    ModelInfo,
    Prediction,
    ValidationErrorBody,
    batch_request_model,
)
from exporter.api.scoring import ModelNotReady, Scored, Scorer
from exporter.config import MonitoringConfig
from exporter.data import predlog
from exporter.web.webconfig import OPEN_PATHS, WebConfig, load_web_config

log = logging.getLogger("churn_monitor.api")

#: Rows one micro-batch aims at (a batch request is never split).
MICRO_BATCH_ROWS = 256
#: How often the SQLite log's WAL is checkpointed, off the request path.
CHECKPOINT_SECONDS = 1.0
#: How long the start waits for the first model load before serving anyway (with
#: /health at 503 until a model is loaded): MLflow retries an unreachable tracking
#: server for minutes, and a server that does not listen meanwhile cannot say why.
MODEL_WAIT_SECONDS = 30.0

T = TypeVar("T")

#: An OpenAPI ``responses`` mapping: status -> description and body model.
Responses = dict[int | str, dict[str, Any]]


def _answer(description: str, model: type[BaseModel] = ErrorBody) -> dict[str, Any]:
    """One declared answer: its description and the model of its JSON body."""
    return {"description": description, "model": model}


#: What every route with a JSON body may answer before it runs (see `errors`).
_BODY_ERRORS: Responses = {
    400: _answer("malformed JSON"),
    413: _answer("body over api.max_body_bytes"),
    415: _answer("body not sent as application/json"),
    422: _answer("invalid field; `message` names each one", ValidationErrorBody),
}
_SCORING_ERRORS: Responses = {
    **_BODY_ERRORS,
    500: _answer("the model failed to score the customers"),
    503: _answer("no model loaded, or the prediction log unavailable"),
}
_AUTH_SCHEME = "basicAuth"


def _declare_basic_auth(app: FastAPI) -> None:
    """Add HTTP basic auth to `app`'s OpenAPI document: the scheme, required by every
    operation but those on ``webconfig.OPEN_PATHS`` (as `BasicAuthMiddleware` does)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = generate()
            schemes = spec.setdefault("components", {}).setdefault("securitySchemes", {})
            schemes[_AUTH_SCHEME] = {"type": "http", "scheme": "basic"}
            spec["security"] = [{_AUTH_SCHEME: []}]
            for path in OPEN_PATHS & spec.get("paths", {}).keys():
                for operation in spec["paths"][path].values():
                    operation["security"] = []
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _prediction(served: Served, scored: Scored) -> dict[str, Any]:
    """One `Prediction` as a plain dict (a thousand pydantic models cost ~20 ms)."""
    return {
        "prediction_id": scored.prediction_id,
        "customerID": scored.customer_id,
        "churn_probability": scored.score,
        "predicted": scored.predicted,
        "churn": "Yes" if scored.predicted else "No",
        "threshold": served.threshold,
        "model_name": served.ref.name,
        "model_version": served.ref.version,
    }


def _json(content: Any) -> Response:
    """A JSON response built directly: the answer is already in the response model's
    shape, so FastAPI's validation of the return value is skipped."""
    return Response(to_json(content), media_type="application/json")


def _model_info(served: Served) -> ModelInfo:
    return ModelInfo(
        name=served.ref.name,
        version=served.ref.version,
        run_id=served.ref.run_id,
        threshold=served.threshold,
        baseline=served.baseline,
        loaded_at=served.loaded_at,
    )


def _in_daemon_thread(func: Callable[[], T]) -> asyncio.Future[T]:
    """Run blocking `func` in a daemon thread of its own; its result as a future.

    For calls that may block for minutes (MLflow retrying an unreachable registry):
    awaiting them can be cancelled, and a shutdown neither waits for the thread nor
    is held by it at exit (a worker-pool thread would be waited for)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def run() -> None:
        result: Any = None
        error: BaseException | None = None
        try:
            result = func()
        except BaseException as err:
            error = err
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name="churn-api-model-load", daemon=True).start()
    return future


def _default_loader() -> tuple[ModelLoader, WatchFactory]:
    from exporter.model import registry  # imports MLflow: only when the real registry is wanted

    return registry.load_champion, registry.ModelWatch


def create_app(
    config: MonitoringConfig,
    *,
    model_loader: ModelLoader | None = None,
    model_watch: WatchFactory | None = None,
    engine: Engine | None = None,
    freeze_gc: bool = False,
    web: WebConfig | None = None,
    model_wait_seconds: float = MODEL_WAIT_SECONDS,
) -> FastAPI:
    """The prediction API for `config`.

    `model_loader` defaults to ``registry.load_champion`` and `model_watch` to
    ``registry.ModelWatch``; a custom loader without a watch is loaded once (and
    retried every poll until it succeeds). `engine` defaults to
    ``predlog.make_engine(config.data.current.url)``.

    `freeze_gc` (what `serve_api` passes) moves every object alive once the model is
    loaded into the garbage collector's permanent generation, and again after each
    model switch: MLflow, scikit-learn and pandas leave a few hundred thousand
    long-lived objects, and a full collection scanning them stalled every request
    for 50-200 ms at random moments.

    `web` (default: read from ``api.web_config_file``) adds basic auth when it has
    users; its TLS files are for the server (`serve_api`). The start waits up to
    `model_wait_seconds` for the first model load, then serves, with /health at 503
    and predictions refused with 503, until a model is loaded.
    """
    if web is None:
        web = load_web_config(config.api.web_config_file, "api.web_config_file")
    if model_loader is None:
        model_loader, default_watch = _default_loader()
        model_watch = model_watch or default_watch
    api = config.api
    model_name = config.model.name
    metrics = ApiMetrics(model_name)
    holder = ChampionHolder(
        config, model_loader, model_watch, on_swap=lambda s: metrics.serving(s.ref)
    )
    log_engine = (
        engine
        if engine is not None
        else predlog.make_engine(config.data.current.url, autocheckpoint=False)
    )
    guard = LogFileGuard(log_engine)
    scorer = Scorer(holder, log_engine, metrics, model_name, max_rows=MICRO_BATCH_ROWS, guard=guard)
    tables = {"ready": False}
    first_load: dict[str, asyncio.Future[bool] | None] = {"future": None}

    def ensure_tables() -> None:
        if tables["ready"]:
            return
        try:
            predlog.create_tables(log_engine)
            tables["ready"] = True
        except SQLAlchemyError as err:
            log.error(
                "cannot create the prediction log tables at %s: %s",
                log_engine.url.render_as_string(hide_password=True),
                err,
            )

    def settle_gc() -> None:
        if freeze_gc:
            gc.collect()
            gc.freeze()

    async def poll_forever() -> None:
        while True:
            await asyncio.sleep(api.model_poll_seconds)
            try:
                if not tables["ready"]:
                    await run_in_threadpool(ensure_tables)
                initial = first_load["future"]
                if initial is not None:
                    if not initial.done():
                        continue  # the first load is still running (registry slow)
                    first_load["future"] = None
                    if holder.current is not None:
                        settle_gc()
                        continue
                if await _in_daemon_thread(holder.poll):
                    settle_gc()
            except Exception:
                log.exception("model poll failed")

    def checkpoint() -> None:
        try:
            guard.check()
            predlog.checkpoint(log_engine)
        except (SQLAlchemyError, predlog.LogUnavailable) as err:
            log.debug("WAL checkpoint failed: %s", err)

    def ping() -> None:
        guard.check()
        predlog.ping(log_engine)

    async def checkpoint_forever() -> None:
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            await run_in_threadpool(checkpoint)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(ensure_tables)
        initial = _in_daemon_thread(holder.load)
        done, _ = await asyncio.wait({initial}, timeout=model_wait_seconds)
        if initial in done:
            settle_gc()
        else:
            first_load["future"] = initial
            log.warning(
                "no model loaded after %.0f s (the registry is slow or unreachable); "
                "serving with /health at 503 until the load finishes",
                model_wait_seconds,
            )
        scorer.start()
        background = [asyncio.create_task(poll_forever(), name="churn-api-model-poll")]
        if predlog.is_sqlite(log_engine):
            background.append(
                asyncio.create_task(checkpoint_forever(), name="churn-api-wal-checkpoint")
            )
        try:
            yield
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await scorer.stop()
            if predlog.is_sqlite(log_engine):
                await run_in_threadpool(checkpoint)
            if engine is None:
                log_engine.dispose()

    app = FastAPI(
        title="churn-monitor prediction API",
        version=__version__,
        description=(
            "Churn probability for Telco customers from the MLflow champion model. Every "
            "prediction is logged for the drift monitor; POST the true outcome to "
            "/feedback when it is known."
        ),
        lifespan=lifespan,
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.holder = holder
    app.state.scorer = scorer
    app.state.engine = log_engine
    errors.install(app)

    BatchRequest = batch_request_model(api.max_batch)
    # With users, every route but OPEN_PATHS answers 401 first (BasicAuthMiddleware).
    auth: Responses = (
        {401: _answer("no or wrong credentials (HTTP basic auth, api.web_config_file)")}
        if web.users
        else {}
    )
    batch_errors: Responses = {
        **_SCORING_ERRORS,
        413: _answer(
            f"body over api.max_body_bytes, or more than {api.max_batch} customers "
            "(api.max_batch, the maxItems of `customers`)"
        ),
    }

    @app.post(
        "/predict",
        response_model=Prediction,
        responses={**auth, **_SCORING_ERRORS},
        tags=["predict"],
    )
    async def predict(customer: Customer) -> Response:
        """Churn probability of one customer; the prediction is logged before the answer."""
        served, scored = await scorer.score([customer])
        return _json(_prediction(served, scored[0]))

    @app.post(
        "/predict/batch",
        response_model=BatchResponse,
        responses={**auth, **batch_errors},
        tags=["predict"],
    )
    async def predict_batch(
        body: BatchRequest,  # type: ignore[valid-type]
        log_rows: Annotated[
            bool,
            Query(
                alias="log",
                description=(
                    "false: score without writing the predictions to the log the drift "
                    "monitor reads and without counting them in churn_api_predictions_total "
                    "or churn_api_prediction_score (what-if scoring); their prediction_id "
                    "cannot receive feedback"
                ),
            ),
        ] = True,
    ) -> Response:
        """Up to `api.max_batch` customers, scored together and logged in one transaction
        (all or none), unless `log=false`."""
        served, scored = await scorer.score(body.customers, log=log_rows)  # type: ignore[attr-defined]
        return _json(
            {
                "model_name": served.ref.name,
                "model_version": served.ref.version,
                "count": len(scored),
                "predictions": [_prediction(served, s) for s in scored],
            }
        )

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        status_code=201,
        responses={
            **auth,
            404: _answer("no such prediction or customer"),
            **_BODY_ERRORS,
            503: _answer("the prediction log unavailable"),
        },
        tags=["predict"],
    )
    def feedback(body: Feedback) -> FeedbackResponse:
        """Log the true outcome of a prediction (by prediction_id, or a customer's latest)."""
        guard.check()
        prediction_id = predlog.record_feedback(
            log_engine,
            actual=body.label,
            ts=time.time(),
            prediction_id=body.prediction_id,
            customer_id=body.customerID,
        )
        return FeedbackResponse(prediction_id=prediction_id, actual=body.label)  # type: ignore[arg-type]

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "not ready"}},
        tags=["service"],
    )
    async def health() -> JSONResponse:
        """Liveness and readiness: 200 when a model is loaded and the log answers."""
        served = holder.current
        try:
            await run_in_threadpool(ping)
            db_error = None
        except predlog.LogUnavailable as err:
            db_error = str(err)
        body = Health(
            status="ok" if served is not None and db_error is None else "unavailable",
            model=_model_info(served) if served is not None else None,
            model_error=None if served is not None else holder.error,
            database="ok" if db_error is None else "unavailable",
            database_error=db_error,
        )
        return JSONResponse(
            status_code=200 if body.status == "ok" else 503, content=body.model_dump()
        )

    @app.get(
        "/model",
        response_model=ModelInfo,
        responses={**auth, 503: _answer("no model loaded")},
        tags=["service"],
    )
    async def model() -> ModelInfo:
        """The model version being served, its baseline metrics and decision threshold."""
        served = holder.current
        if served is None:
            raise ModelNotReady(holder.error or "no model is loaded")
        return _model_info(served)

    @app.get(
        "/metrics",
        tags=["service"],
        response_class=Response,
        responses={
            **auth,
            200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        },
    )
    def prometheus_metrics() -> Response:
        """Prometheus text exposition of the `churn_api_*` families."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def root(request: Request) -> dict[str, str]:
        return {"service": "churn-monitor prediction API", "docs": "/docs", "health": "/health"}

    if web.users:
        _declare_basic_auth(app)
    known = {route.path for route in app.routes if hasattr(route, "path")}
    # The last added runs first: metrics see every answer, including 401 and 413, and
    # a request without credentials is refused before its body is read.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=api.max_body_bytes)
    if web.users:
        app.add_middleware(BasicAuthMiddleware, web=web)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, known_paths=known)
    app.state.web = web
    return app


def serve_api(config: MonitoringConfig, host: str | None = None, port: int | None = None) -> None:
    """Run the API with uvicorn on `host`:`port` (default ``api.host``/``api.port``).

    ``api.web_config_file`` is read first: a bad one raises `ConfigError` naming the
    field before anything starts (``churn-monitor api`` exits 2). Returns after
    SIGINT/SIGTERM, once in-flight requests have finished.
    """
    web = load_web_config(config.api.web_config_file, "api.web_config_file")
    import uvicorn

    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=config.logging.level,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    app = create_app(config, freeze_gc=True, web=web)
    uvicorn.run(
        app,
        host=host or config.api.host,
        port=config.api.port if port is None else port,
        log_config=None,
        log_level=config.logging.level.lower(),
        access_log=config.logging.level == "DEBUG",
        timeout_graceful_shutdown=10,
        ssl_certfile=web.cert_file,
        ssl_keyfile=web.key_file,
    )
