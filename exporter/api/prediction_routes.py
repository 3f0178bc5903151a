"""The prediction routes: ``POST /predict``, ``POST /predict/batch`` and ``POST /feedback``.

A prediction is logged before it is answered (unless ``log=false`` on a batch); the
feedback names a logged prediction by id, or a customer's latest one.
"""

# No `from __future__ import annotations` here: FastAPI reads the route signatures at
# run time, and the batch body is a class made for the configured batch limit.

import time
from typing import Annotated, Any

from fastapi import FastAPI, Query
from fastapi.responses import Response
from pydantic_core import to_json

from exporter.api import openapi
from exporter.api.champion import Served
from exporter.api.models import (
    BatchResponse,
    Customer,
    Feedback,
    FeedbackResponse,
    Prediction,
    batch_request_model,
)
from exporter.api.runtime import ApiRuntime
from exporter.api.scoring import Scored
from exporter.data import predlog
from exporter.domain import schema

_LOG_QUERY = Query(
    alias="log",
    description=(
        "false: score without writing the predictions to the log the drift "
        "monitor reads and without counting them in churn_api_predictions_total "
        "or churn_api_prediction_score (what-if scoring); their prediction_id "
        "cannot receive feedback"
    ),
)


def _prediction(served: Served, scored: Scored) -> dict[str, Any]:
    """One `Prediction` as a plain dict (a thousand pydantic models cost ~20 ms)."""
    anomaly = served.anomaly
    return {
        "prediction_id": scored.prediction_id,
        "customerID": scored.customer_id,
        "churn_probability": scored.score,
        "predicted": scored.predicted,
        "churn": schema.label_text(scored.predicted),
        "threshold": served.threshold,
        "model_name": served.ref.name,
        "model_version": served.ref.version,
        "anomaly_score": scored.anomaly_score,
        "unusual": scored.unusual,
        "anomaly_cutoff": (
            anomaly.cutoff if anomaly is not None and scored.anomaly_score is not None else None
        ),
    }


def _json(content: Any) -> Response:
    """A JSON response built directly: the answer is already in the response model's
    shape, so FastAPI's validation of the return value is skipped."""
    return Response(to_json(content), media_type="application/json")


def add_prediction_routes(
    app: FastAPI, runtime: ApiRuntime, auth: openapi.Responses, max_batch: int
) -> None:
    """``POST /predict`` and ``POST /predict/batch`` (at most `max_batch` customers)."""
    scorer = runtime.scorer
    BatchRequest = batch_request_model(max_batch)

    @app.post(
        "/predict",
        response_model=Prediction,
        responses={**auth, **openapi.SCORING_ERRORS},
        tags=["predict"],
    )
    async def predict(customer: Customer) -> Response:
        """Churn probability of one customer, and how unlike the training data it is
        (`anomaly_score`, `unusual`); the prediction is logged before the answer."""
        served, scored = await scorer.score([customer])
        return _json(_prediction(served, scored[0]))

    @app.post(
        "/predict/batch",
        response_model=BatchResponse,
        responses={**auth, **openapi.batch_errors(max_batch)},
        tags=["predict"],
    )
    async def predict_batch(
        body: BatchRequest,  # type: ignore[valid-type]
        log_rows: Annotated[bool, _LOG_QUERY] = True,
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


def add_feedback_route(app: FastAPI, runtime: ApiRuntime, auth: openapi.Responses) -> None:
    """``POST /feedback``: the true outcome of a logged prediction."""

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        status_code=201,
        responses={
            **auth,
            404: openapi.answer("no such prediction or customer"),
            **openapi.BODY_ERRORS,
            503: openapi.answer("the prediction log unavailable"),
        },
        tags=["predict"],
    )
    def feedback(body: Feedback) -> FeedbackResponse:
        """Log the true outcome of a prediction (by prediction_id, or a customer's latest)."""
        runtime.guard.check()
        prediction_id = predlog.record_feedback(
            runtime.engine,
            actual=body.label,
            ts=time.time(),
            prediction_id=body.prediction_id,
            customer_id=body.customerID,
        )
        return FeedbackResponse(prediction_id=prediction_id, actual=body.label)
