"""Score customers and log the predictions, micro-batching concurrent requests.

A call of an sklearn pipeline costs about the same for one row as for a hundred
(15-25 ms of per-call validation in the ColumnTransformer and encoders), so scoring
each request on its own caps a server at a few dozen predictions a second. `Scorer`
therefore queues requests and one worker takes everything queued, scores it with one
call (the verified fast path of :mod:`.fastpath` when the model has one, else
``predict_proba``) and logs it in one transaction, in a worker thread so the event
loop keeps accepting requests. No request waits for a batch to fill: a batch
is whatever arrived while the previous one was being scored, so a lone request is
scored at once and a burst is scored together.

The worker runs in a thread of its own with OpenMP limited to one thread (for that
thread only): the parallelism is across requests, and on a small, busy machine an
OpenMP team per tree of a boosted model costs more than it gains (measured: 44 ms for
32 rows of the boosted champion with two OpenMP threads, 14 ms with one). scikit-learn's
finiteness checks are skipped there too: the request models already reject NaN and
infinities, and a blank TotalCharges is the one NaN the pipeline imputes.

Each customer also gets its anomaly score and unusual flag (:mod:`.anomaly`), computed
for the whole micro-batch in the same worker call, vectorised, from the same columns
the fast path reads; when the served model has no anomaly model (no reference, or
multivariate disabled) or the computation fails, both are None (null in the answer
and in the log) and the prediction goes on.

With a challenger (``api.shadow_scoring``), the rows logged are handed, after their
transaction, to the challenger's own worker (:mod:`.shadow`), which scores them in the
background and fills their challenger columns through this worker (the log's one
writer); the answer is the champion's alone and never waits for the challenger.

A request's rows are never split across transactions, so a batch request is logged
all or nothing; an answer is sent only after its rows are committed. When the model
fails, every request of that micro-batch gets the error; when the log fails, every
logged request of it does, and no row is written. A request scored with ``log=False``
(``POST /predict/batch?log=false``) writes no row, is not counted in the prediction
metrics and does not depend on the log being available.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import operator
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.engine import Engine

from exporter.api.champion import ModelHolder, Served
from exporter.api.logguard import LogFileGuard
from exporter.api.metrics import ApiMetrics
from exporter.api.models import Customer
from exporter.api.shadow import ShadowScorer
from exporter.data import predlog
from exporter.domain import schema

log = logging.getLogger("churn_monitor.api")

_FEATURE_VALUES = operator.attrgetter(*schema.FEATURES)
#: A logged row is (id, ts, model, version, customer_id, *features, score, predicted,
#: anomaly_score, unusual, challenger_version, challenger_score).
_ROW_LAYOUT = (
    "id",
    "ts",
    "model",
    "version",
    "customer_id",
    *schema.FEATURES,
    "score",
    "predicted",
    "anomaly_score",
    "unusual",
    "challenger_version",
    "challenger_score",
)
#: The challenger columns of a row as logged: the shadow worker fills them afterwards.
_NO_SHADOW = (None, None)
if predlog.PREDICTION_COLUMNS != _ROW_LAYOUT:
    raise RuntimeError(f"predlog.predictions has columns {predlog.PREDICTION_COLUMNS}")


def _nothing() -> None:
    """A no-op for the worker: it returns once the work queued before it is done."""


class ModelNotReady(RuntimeError):
    """No model is loaded; the message says why."""


class InferenceFailed(RuntimeError):
    """The model raised while scoring."""


@dataclass(frozen=True)
class Scored:
    """The answer for one customer, after its row is committed."""

    prediction_id: str
    customer_id: str | None
    score: float
    predicted: int
    #: The customer's anomaly score and whether it is unusual (None: not computed).
    anomaly_score: float | None = None
    unusual: bool | None = None


def feature_columns(customers: Sequence[Customer]) -> dict[str, Any]:
    """The 19 features of validated customers, column by column.

    Numeric features are float64 arrays (a null TotalCharges is NaN), as
    ``modeling.prepare_features`` gives the model at training time; categorical ones
    are lists of strings.
    """
    columns: dict[str, Any] = {}
    for name in schema.FEATURES:
        values = [getattr(c, name) for c in customers]
        if name in schema.MODEL_NUMERIC_FEATURES:
            columns[name] = np.array(
                [math.nan if v is None else v for v in values], dtype=np.float64
            )
        else:
            columns[name] = values
    return columns


def feature_frame(customers: Sequence[Customer]) -> pd.DataFrame:
    """The model's input frame for validated customers: the 19 features in order."""
    return pd.DataFrame(feature_columns(customers), columns=list(schema.FEATURES))


def _rows_of(columns: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    """The feature columns of the rows where `keep` is True."""
    return {
        name: values[keep]
        if isinstance(values, np.ndarray)
        else list(np.asarray(values, dtype=object)[keep])
        for name, values in columns.items()
    }


def single_threaded_openmp() -> None:
    """Thread initializer: OpenMP teams of one in this thread (its own ICV)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1, user_api="openmp")
    except Exception:  # an optimisation only
        log.debug("cannot limit OpenMP threads", exc_info=True)


@dataclass
class _Job:
    customers: Sequence[Customer]
    future: asyncio.Future[tuple[Served, list[Scored]]]
    log: bool = True


class Scorer:
    """The micro-batching queue in front of the model and the prediction log."""

    def __init__(
        self,
        holder: ModelHolder,
        engine: Engine,
        metrics: ApiMetrics,
        model_name: str,
        max_rows: int,
        clock: Callable[[], float] = time.time,
        guard: LogFileGuard | None = None,
        shadow: ShadowScorer | None = None,
    ) -> None:
        self.holder = holder
        self.shadow = shadow
        self.engine = engine
        self.guard = guard if guard is not None else LogFileGuard(engine)
        self.metrics = metrics
        self.model_name = model_name
        self.max_rows = max_rows
        self.clock = clock
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._anomaly_failed: object = None  # the anomaly model whose failure was logged

    def start(self) -> None:
        self._executor = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="churn-api-scorer",
            initializer=single_threaded_openmp,
        )
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name="churn-api-scorer")
        if self.shadow is not None:
            self.shadow.start(writer=self._executor)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue is not None:
            while not self._queue.empty():
                job = self._queue.get_nowait()
                if not job.future.done():
                    job.future.set_exception(ModelNotReady("the server is shutting down"))
        if self._executor is not None:
            # The batch in flight (if any) ends first: its rows reach the challenger's
            # last flush, whose write still goes through this worker.
            await asyncio.get_running_loop().run_in_executor(self._executor, _nothing)
            if self.shadow is not None:
                await self.shadow.stop()
            self._executor.shutdown(wait=True)
            self._executor = None

    async def score(
        self, customers: Sequence[Customer], *, log: bool = True
    ) -> tuple[Served, list[Scored]]:
        """Score `customers` and log them (unless `log` is False); return the model used
        and one answer per customer."""
        if self._queue is None:
            raise RuntimeError("Scorer.start() was not called")
        future: asyncio.Future[tuple[Served, list[Scored]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._queue.put_nowait(_Job(customers, future, log))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await queue.get()]
            rows = len(jobs[0].customers)
            while not queue.empty() and rows < self.max_rows:
                # Peeking is not possible, so a job that would overflow is taken anyway;
                # max_rows is a target, not a hard limit.
                job = queue.get_nowait()
                jobs.append(job)
                rows += len(job.customers)
            live = [j for j in jobs if not j.future.cancelled()]
            if not live:
                continue
            try:
                served, results = await loop.run_in_executor(self._executor, self._process, live)
            except Exception as err:
                for job in live:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            for job, result in zip(live, results, strict=True):
                if job.future.done():
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result((served, result))

    def _anomaly(
        self, served: Served, columns: dict[str, Any], n: int
    ) -> tuple[Sequence[float | None], Sequence[bool | None]]:
        """Per customer, the anomaly score and unusual flag; Nones when the served model
        has no anomaly model or computing them fails (logged once per anomaly model)."""
        model = served.anomaly
        if model is not None:
            try:
                return model.scores(columns, n)
            except Exception:
                if self._anomaly_failed is not model:
                    self._anomaly_failed = model
                    log.exception("anomaly scores failed; answering null for them")
        nothing = [None] * n
        return nothing, nothing

    def _process(
        self, jobs: Sequence[_Job]
    ) -> tuple[Served, list[list[Scored] | predlog.LogUnavailable]]:
        """Blocking: one predict_proba call for all `jobs` and one transaction for the
        rows of those that are logged (their answers, or the log's error, per job); the
        rows logged then go to the challenger's worker."""
        served = self.holder.current
        if served is None:
            raise ModelNotReady(self.holder.error or "no model is loaded")
        customers = [c for job in jobs for c in job.customers]
        columns = feature_columns(customers)
        start = time.perf_counter()
        try:
            scores = served.probabilities(columns, len(customers))
        except Exception as err:
            log.exception(
                "model %s version %s failed to score", served.ref.name, served.ref.version
            )
            raise InferenceFailed(
                f"model {served.ref.name} version {served.ref.version} failed: {err}"
            ) from err
        self.metrics.observe_inference(time.perf_counter() - start)
        anomaly_scores, unusual = self._anomaly(served, columns, len(customers))
        flags = [job.log for job in jobs for _ in job.customers]
        predicted = (scores >= served.threshold).astype(int)
        now = self.clock()
        rows: list[tuple[object, ...]] = []
        logged = np.zeros(len(customers), dtype=bool)
        answers: list[Scored] = []
        name, version = served.ref.name, served.ref.version
        for i, (customer, score, label, keep, odd_score, odd) in enumerate(
            zip(
                customers,
                scores.tolist(),
                predicted.tolist(),
                flags,
                anomaly_scores,
                unusual,
                strict=True,
            )
        ):
            pid = str(uuid.uuid4())
            cid = customer.customerID
            if keep:
                features = _FEATURE_VALUES(customer)
                row = (pid, now, name, version, cid, *features, score, label, odd_score, odd)
                rows.append((*row, *_NO_SHADOW))
                logged[i] = True
            answers.append(Scored(pid, cid, score, label, odd_score, odd))
        failure: predlog.LogUnavailable | None = None
        if rows:
            try:
                self.guard.check()
                predlog.log_predictions(self.engine, rows)
            except predlog.LogUnavailable as err:
                failure = err
            else:
                if len(rows) == len(customers):
                    self.metrics.observe_predictions(scores, predicted)
                else:
                    self.metrics.observe_predictions(scores[logged], predicted[logged])
                if self.shadow is not None:
                    kept = columns if len(rows) == len(customers) else _rows_of(columns, logged)
                    self.shadow.submit([str(row[0]) for row in rows], kept)
        out: list[list[Scored] | predlog.LogUnavailable] = []
        offset = 0
        for job in jobs:
            if job.log and failure is not None:
                out.append(failure)
            else:
                out.append(answers[offset : offset + len(job.customers)])
            offset += len(job.customers)
        return served, out
