"""The service routes: ``GET /health``, ``GET /model``, ``GET /metrics`` and ``GET /``."""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# run time.

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from exporter.api import openapi
from exporter.api.champion import Served
from exporter.api.models import Health, ModelInfo
from exporter.api.runtime import ApiRuntime
from exporter.api.scoring import ModelNotReady
from exporter.data import predlog


def _model_info(served: Served) -> ModelInfo:
    return ModelInfo(
        name=served.ref.name,
        version=served.ref.version,
        run_id=served.ref.run_id,
        threshold=served.threshold,
        baseline=served.baseline,
        loaded_at=served.loaded_at,
    )


def add_service_routes(app: FastAPI, runtime: ApiRuntime, auth: openapi.Responses) -> None:
    """Health, the served model, the ``churn_api_*`` metrics and the index."""
    holder = runtime.holder
    challenger = runtime.challenger

    @app.get(
        "/health",
        response_model=Health,
        responses={503: {"model": Health, "description": "not ready"}},
        tags=["service"],
    )
    async def health() -> JSONResponse:
        """Liveness and readiness: 200 when a model is loaded and the log answers (the
        challenger, scoring in the shadow, plays no part)."""
        served = holder.current
        shadow = challenger.current if challenger is not None else None
        try:
            await run_in_threadpool(runtime.ping)
            db_error = None
        except predlog.LogUnavailable as err:
            db_error = str(err)
        body = Health(
            status="ok" if served is not None and db_error is None else "unavailable",
            model=_model_info(served) if served is not None else None,
            model_error=None if served is not None else holder.error,
            database="ok" if db_error is None else "unavailable",
            database_error=db_error,
            challenger_version=shadow.ref.version if shadow is not None else None,
        )
        return JSONResponse(
            status_code=200 if body.status == "ok" else 503, content=body.model_dump()
        )

    @app.get(
        "/model",
        response_model=ModelInfo,
        responses={**auth, 503: openapi.answer("no model loaded")},
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
        return Response(generate_latest(runtime.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", include_in_schema=False)
    async def root() -> dict[str, str]:
        return {"service": "churn-monitor prediction API", "docs": "/docs", "health": "/health"}
