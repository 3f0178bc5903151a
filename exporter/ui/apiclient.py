"""The prediction API as the form uses it, every failure one readable `ApiError`.

The base URL is ``$CHURN_API_URL`` or ``api.url`` from the config (:func:`api_url`).
Errors say what happened in words a person can act on: the API is not reachable (and
where it was looked for), it rejected the input (the API's own message, which names
each field), or it failed (its status and message). No exception text from httpx
reaches the page unexplained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from exporter.config import MonitoringConfig

API_URL_ENV = "CHURN_API_URL"
#: Seconds to wait for an answer: one prediction, or a batch of 19 variants.
TIMEOUT = 15.0


def api_url(config: MonitoringConfig) -> str:
    """``$CHURN_API_URL`` when set, else ``api.url``; without a trailing slash."""
    return (os.environ.get(API_URL_ENV) or config.api.url).rstrip("/")


class ApiError(Exception):
    """The API could not give an answer; ``str()`` is the sentence to show."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ApiUnreachable(ApiError):
    """No connection, or no answer in time."""


class ApiRejected(ApiError):
    """A 4xx answer: the request (usually one input field) was refused."""


class ApiFailed(ApiError):
    """A 5xx answer or an answer the page cannot read."""


@dataclass(frozen=True)
class PredictionResult:
    """The fields of ``POST /predict``'s answer the page shows."""

    churn_probability: float
    predicted: int
    churn: str
    threshold: float
    model_name: str
    model_version: str
    prediction_id: str
    #: How unlike the training data the customer is, whether that is beyond the
    #: cut-off, and the cut-off; None when the API does not say (no reference profile,
    #: or an API that predates these fields).
    anomaly_score: float | None = None
    unusual: bool | None = None
    anomaly_cutoff: float | None = None


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _message(response: httpx.Response) -> str:
    """The API's error text: ``message`` (names each field), else ``detail``."""
    try:
        body = response.json()
    except ValueError:
        text = response.text.strip()
        return text[:300] if text else response.reason_phrase
    if isinstance(body, dict):
        if isinstance(body.get("message"), str):
            return body["message"]
        detail = body.get("detail")
        if isinstance(detail, str):
            return detail
        if isinstance(detail, list):
            parts = []
            for item in detail[:10]:
                if isinstance(item, dict):
                    loc = [str(p) for p in item.get("loc", []) if p != "body"]
                    parts.append(f"{'.'.join(loc) or 'body'}: {item.get('msg', '')}")
            if parts:
                return "; ".join(parts)
    return str(body)[:300]


class ApiClient:
    """A small synchronous client of the prediction API at `base_url`."""

    def __init__(
        self,
        base_url: str,
        timeout: float = TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._transport = transport

    def _request(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, str] | None = None
    ) -> Any:
        url = f"{self.base_url}{path}"
        try:
            with httpx.Client(timeout=self.timeout, transport=self._transport) as client:
                response = client.request(method, url, json=json, params=params)
        except httpx.TimeoutException:
            raise ApiUnreachable(
                f"The prediction API at {self.base_url} did not answer within "
                f"{self.timeout:g} seconds."
            ) from None
        except httpx.HTTPError as err:
            reason = str(err).strip() or type(err).__name__
            raise ApiUnreachable(
                f"The prediction API at {self.base_url} is not reachable ({reason}). "
                "Check that `churn-monitor api` is running and that CHURN_API_URL or "
                "api.url points at it."
            ) from None
        if 400 <= response.status_code < 500:
            raise ApiRejected(
                f"The prediction API rejected the input (HTTP {response.status_code}): "
                f"{_message(response)}",
                response.status_code,
            )
        if response.status_code >= 500:
            raise ApiFailed(
                f"The prediction API could not answer (HTTP {response.status_code}): "
                f"{_message(response)}",
                response.status_code,
            )
        try:
            return response.json()
        except ValueError:
            raise ApiFailed(
                f"The prediction API at {self.base_url} sent an answer that is not JSON "
                f"(HTTP {response.status_code}).",
                response.status_code,
            ) from None

    def predict(self, customer: Mapping[str, Any]) -> PredictionResult:
        """``POST /predict`` for one customer (logged by the API like any prediction)."""
        body = self._request("POST", "/predict", json=dict(customer))
        try:
            return PredictionResult(
                churn_probability=float(body["churn_probability"]),
                predicted=int(body["predicted"]),
                churn=str(body["churn"]),
                threshold=float(body["threshold"]),
                model_name=str(body["model_name"]),
                model_version=str(body["model_version"]),
                prediction_id=str(body["prediction_id"]),
                anomaly_score=_optional_float(body.get("anomaly_score")),
                unusual=None if body.get("unusual") is None else bool(body["unusual"]),
                anomaly_cutoff=_optional_float(body.get("anomaly_cutoff")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ApiFailed(
                f"The prediction API's answer lacks a field the page needs ({err})."
            ) from None

    def model(self) -> dict[str, Any]:
        """``GET /model``: name, version, run_id, threshold, baseline."""
        body = self._request("GET", "/model")
        if not isinstance(body, dict):
            raise ApiFailed("The prediction API's GET /model answer is not an object.")
        return body

    def supports_unlogged_batch(self) -> bool:
        """True when ``POST /predict/batch`` takes a ``log`` query parameter (so that
        the page's what-if variants can be scored without entering the prediction log
        the drift monitor reads). Read from the API's OpenAPI document."""
        try:
            spec = self._request("GET", "/openapi.json")
        except ApiError:
            return False
        return unlogged_batch_in_spec(spec)

    def predict_unlogged(self, customers: Sequence[Mapping[str, Any]]) -> list[float]:
        """Churn probabilities of `customers` from ``POST /predict/batch?log=false``."""
        body = self._request(
            "POST",
            "/predict/batch",
            json={"customers": [dict(c) for c in customers]},
            params={"log": "false"},
        )
        try:
            return [float(p["churn_probability"]) for p in body["predictions"]]
        except (KeyError, TypeError, ValueError) as err:
            raise ApiFailed(f"The prediction API's batch answer is not readable ({err}).") from None


def unlogged_batch_in_spec(spec: Any) -> bool:
    """True when an OpenAPI document gives ``POST /predict/batch`` a ``log`` parameter."""
    try:
        parameters = spec["paths"]["/predict/batch"]["post"].get("parameters", [])
    except (KeyError, TypeError, AttributeError):
        return False
    return any(
        isinstance(p, dict) and p.get("name") == "log" and p.get("in") == "query"
        for p in parameters
    )
