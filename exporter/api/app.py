"""The FastAPI prediction service: the app factory and the uvicorn entry point.

``create_app(config)`` wires the champion model (loaded from the MLflow registry alias
or ``model.local_path``, and re-checked every ``api.model_poll_seconds``), with
``api.shadow_scoring`` the challenger at ``model.challenger_alias`` (loaded and
re-checked the same way, scoring every prediction in the shadow), the micro-batching
scorer, the prediction log at ``data.current.url``, the ``churn_api_*``
metrics and, with ``api.web_config_file``, basic auth: the parts and their lifecycle
are in :mod:`.runtime`, the routes in :mod:`.prediction_routes` and
:mod:`.service_routes`. ``serve_api(config, host, port)`` runs it with uvicorn (with TLS
when the web config has a certificate) until SIGINT/SIGTERM; a bad web config raises
`ConfigError` before anything starts.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from exporter import __version__
from exporter.api import errors, openapi
from exporter.api.anomaly import AnomalyProfiles
from exporter.api.auth import BasicAuthMiddleware
from exporter.api.bodylimit import BodySizeLimitMiddleware
from exporter.api.champion import ModelHolder, ModelLoader, WatchFactory
from exporter.api.logguard import LogFileGuard
from exporter.api.metrics import ApiMetrics, RequestMetricsMiddleware
from exporter.api.prediction_routes import add_feedback_route, add_prediction_routes
from exporter.api.runtime import ApiRuntime
from exporter.api.scoring import Scorer, single_threaded_openmp
from exporter.api.service_routes import add_service_routes
from exporter.api.shadow import ShadowScorer
from exporter.config import MonitoringConfig
from exporter.data import predlog
from exporter.model.roles import challenger_config
from exporter.web.webconfig import WebConfig, load_web_config

#: Rows one micro-batch aims at (a batch request is never split).
MICRO_BATCH_ROWS = 256
#: How long the start waits for the first model load before serving anyway (with
#: /health at 503 until a model is loaded): MLflow retries an unreachable tracking
#: server for minutes, and a server that does not listen meanwhile cannot say why.
MODEL_WAIT_SECONDS = 30.0

_DESCRIPTION = (
    "Churn probability for Telco customers from the MLflow champion model, and how "
    "unlike the training data each customer is (anomaly_score, unusual). Every "
    "prediction is logged for the drift monitor; POST the true outcome to "
    "/feedback when it is known."
)


def _default_loader() -> tuple[ModelLoader, WatchFactory]:
    from exporter.model import registry  # imports MLflow: only when the real registry is wanted

    return registry.load_champion, registry.ModelWatch


def _runtime(
    config: MonitoringConfig,
    model_loader: ModelLoader | None,
    model_watch: WatchFactory | None,
    engine: Engine | None,
    *,
    freeze_gc: bool,
    model_wait_seconds: float,
) -> ApiRuntime:
    """The holders, scorer, log engine and metrics of one app."""
    if model_loader is None:
        model_loader, default_watch = _default_loader()
        model_watch = model_watch or default_watch
    model_name = config.model.name
    metrics = ApiMetrics(model_name)
    holder = ModelHolder(
        config,
        model_loader,
        model_watch,
        on_swap=lambda s: metrics.serving(s.ref if s is not None else None),
        anomaly=AnomalyProfiles(config),
    )
    shadow = challenger_config(config) if config.api.shadow_scoring else None
    challenger = (
        ModelHolder(
            shadow,
            model_loader,
            model_watch,
            on_swap=lambda s: metrics.shadowing(s.ref if s is not None else None),
            role="challenger",
            on_load_failure=lambda: metrics.shadow_failed("load"),
        )
        if shadow is not None
        else None
    )
    log_engine = (
        engine
        if engine is not None
        else predlog.make_engine(config.data.current.url, autocheckpoint=False)
    )
    guard = LogFileGuard(log_engine)
    scorer = Scorer(
        holder,
        log_engine,
        metrics,
        model_name,
        max_rows=MICRO_BATCH_ROWS,
        guard=guard,
        shadow=(
            ShadowScorer(
                challenger, log_engine, metrics, guard, thread_initializer=single_threaded_openmp
            )
            if challenger is not None
            else None
        ),
    )
    return ApiRuntime(
        metrics=metrics,
        holder=holder,
        challenger=challenger,
        scorer=scorer,
        engine=log_engine,
        guard=guard,
        poll_seconds=config.api.model_poll_seconds,
        model_wait_seconds=model_wait_seconds,
        own_engine=engine is None,
        freeze_gc=freeze_gc,
    )


def _add_middleware(app: FastAPI, web: WebConfig, metrics: ApiMetrics, max_body: int) -> None:
    """Body limit, basic auth (with users) and request metrics, in that order of adding.

    The last added runs first: metrics see every answer, including 401 and 413, and a
    request without credentials is refused before its body is read.
    """
    known = {route.path for route in app.routes if hasattr(route, "path")}
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=max_body)
    if web.users:
        app.add_middleware(BasicAuthMiddleware, web=web)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, known_paths=known)


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
    retried every poll until it succeeds). Both serve the challenger too, called with
    :func:`exporter.model.roles.challenger_config` (its alias and reference). `engine` defaults to
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
    runtime = _runtime(
        config,
        model_loader,
        model_watch,
        engine,
        freeze_gc=freeze_gc,
        model_wait_seconds=model_wait_seconds,
    )
    app = FastAPI(
        title="churn-monitor prediction API",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=runtime.lifespan,
    )
    app.state.config = config
    app.state.metrics = runtime.metrics
    app.state.holder = runtime.holder
    app.state.challenger = runtime.challenger
    app.state.scorer = runtime.scorer
    app.state.engine = runtime.engine
    errors.install(app)
    auth = openapi.auth_errors(web)
    add_prediction_routes(app, runtime, auth, config.api.max_batch)
    add_feedback_route(app, runtime, auth)
    add_service_routes(app, runtime, auth)
    if web.users:
        openapi.declare_basic_auth(app)
    _add_middleware(app, web, runtime.metrics, config.api.max_body_bytes)
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
