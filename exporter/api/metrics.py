"""The API's own Prometheus families (`churn_api_*`, docs/metrics.md) and the ASGI
middleware that counts and times every request.

The shadow families describe the challenger scoring every prediction beside the
champion: its scores of logged predictions, the version loaded, and its failures by
``stage`` (``load``: a version at the challenger alias could not be loaded; ``score``:
it raised on the rows handed to it, whose shadow scores are then null; ``log``: the
prediction log refused their shadow scores; ``overload``: rows not queued because too
many were waiting; see :mod:`.shadow`).

Each app gets its own `CollectorRegistry`, so two apps in one process (tests) do not
collide. ``route`` is the route template (``/predict``), never the raw path, and
``unmatched`` for paths no route serves, so the label stays bounded.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exporter.domain.model import ModelRef

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_SCORE_BUCKETS = (*tuple(round(0.05 * i, 2) for i in range(1, 20)), 1.0)
#: Where shadow scoring can fail (the `stage` label of churn_api_shadow_failures_total).
ShadowStage = Literal["load", "score", "log", "overload"]
SHADOW_STAGES: tuple[ShadowStage, ...] = ("load", "score", "log", "overload")


class BulkHistogram(Collector):
    """A one-series histogram that takes a whole array per call.

    prometheus_client's ``Histogram.observe`` costs microseconds per value, which a
    batch of a thousand scores turns into milliseconds; this one bins the array with
    numpy and exposes the same histogram family.
    """

    def __init__(
        self, name: str, documentation: str, label: str, value: str, buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.label = label
        self.value = value
        self._bounds = np.asarray(sorted(buckets), dtype=np.float64)
        self._counts = np.zeros(len(self._bounds) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        # Bucket i counts values <= bound i: the first bound >= the value.
        index = np.searchsorted(self._bounds, values, side="left")
        counts = np.bincount(index, minlength=len(self._counts))
        total = float(values.sum())
        with self._lock:
            self._counts += counts
            self._sum += total

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            cumulative = np.cumsum(self._counts).tolist()
            total = self._sum
        family = HistogramMetricFamily(self.name, self.documentation, labels=[self.label])
        buckets = [
            (floatToGoString(bound), count)
            for bound, count in zip(self._bounds.tolist(), cumulative, strict=False)
        ]
        buckets.append(("+Inf", cumulative[-1]))
        family.add_metric([self.value], buckets, total)
        yield family


class ApiMetrics:
    """The `churn_api_*` families, registered in a registry of their own."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        # Every family in this app's registry; the latencies share their buckets.
        counter = functools.partial(Counter, registry=self.registry)
        latency = functools.partial(Histogram, buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.requests = counter(
            "churn_api_requests",
            "HTTP requests by route template, method and status code.",
            ("route", "method", "status"),
        )
        self.request_duration = latency(
            "churn_api_request_duration_seconds",
            "Request latency, from the first byte received to the last byte sent.",
            ("route", "method"),
        )
        self.predictions = counter(
            "churn_api_predictions",
            "Predictions served (and logged), by predicted label.",
            ("model", "predicted"),
        )
        self.score = BulkHistogram(
            "churn_api_prediction_score",
            "Churn probabilities served.",
            "model",
            model,
            _SCORE_BUCKETS,
        )
        self.registry.register(self.score)
        self.inference = latency(
            "churn_api_inference_duration_seconds",
            "Model inference time per predict_proba call (one call scores a micro-batch).",
            ("model",),
        )
        self.model_info = Gauge(
            "churn_api_model_info",
            "1 for the model version being served.",
            ("model", "version"),
            registry=self.registry,
        )
        self.shadow_failures = counter(
            "churn_api_shadow_failures",
            "Failures of the challenger's shadow scoring, by stage (load, score, log, overload).",
            ("model", "stage"),
        )
        self.shadow_score = BulkHistogram(
            "churn_api_shadow_score",
            "The challenger's churn probabilities of logged predictions (never served).",
            "model",
            model,
            _SCORE_BUCKETS,
        )
        self.registry.register(self.shadow_score)
        self.shadow_model_info = Gauge(
            "churn_api_shadow_model_info",
            "1 for the challenger version scoring predictions in the shadow.",
            ("model", "version"),
            registry=self.registry,
        )
        # Children created up front, so the series exist before the first prediction.
        self._predicted = {p: self.predictions.labels(model, str(p)) for p in (0, 1)}
        self._inference = self.inference.labels(model)
        self._shadow_failed = {s: self.shadow_failures.labels(model, s) for s in SHADOW_STAGES}
        self._served: str | None = None
        self._shadowing: str | None = None

    def serving(self, ref: ModelRef | None) -> None:
        """Point `churn_api_model_info` at `ref` (or at nothing)."""
        if self._served is not None:
            self.model_info.remove(self.model, self._served)
            self._served = None
        if ref is not None:
            self.model_info.labels(self.model, ref.version).set(1)
            self._served = ref.version

    def shadowing(self, ref: ModelRef | None) -> None:
        """Point `churn_api_shadow_model_info` at the challenger `ref` (or at nothing)."""
        if self._shadowing is not None:
            self.shadow_model_info.remove(self.model, self._shadowing)
            self._shadowing = None
        if ref is not None:
            self.shadow_model_info.labels(self.model, ref.version).set(1)
            self._shadowing = ref.version

    def shadow_failed(self, stage: ShadowStage) -> None:
        """Count one failure of the challenger at `stage`."""
        self._shadow_failed[stage].inc()

    def observe_shadow(self, scores: np.ndarray) -> None:
        self.shadow_score.observe_many(scores)

    def observe_inference(self, seconds: float) -> None:
        self._inference.observe(seconds)

    def observe_predictions(self, scores: np.ndarray, predicted: np.ndarray) -> None:
        ones = int(np.count_nonzero(predicted))
        if ones:
            self._predicted[1].inc(ones)
        if len(predicted) - ones:
            self._predicted[0].inc(len(predicted) - ones)
        self.score.observe_many(scores)


class RequestMetricsMiddleware:
    """Pure ASGI middleware: `churn_api_requests_total` and the request latency."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: ApiMetrics,
        known_paths: frozenset[str] | set[str] = frozenset(),
    ) -> None:
        self.app = app
        self.metrics = metrics
        # Requests refused before routing (413) are counted under their path when it
        # is one of the app's routes.
        self.known_paths = frozenset(known_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template is None:
                path = scope.get("path", "")
                template = path if path in self.known_paths else "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.request_duration.labels(template, method).observe(
                time.perf_counter() - start
            )
