"""`churn-monitor simulate`: send synthetic customers to the prediction API.

Customers come from :func:`exporter.data.synthetic.generate_customers` under a drift
scenario (for ``gradual`` the drift advances with ``elapsed / duration``), at ``rate``
customers per second for ``duration`` seconds, one ``POST /predict`` each or in
``POST /predict/batch`` requests of ``batch`` customers. ``label_delay`` seconds after
a customer was accepted, the generator's true outcome (its ``Churn`` column) is posted
to ``/feedback``, as labels arrive late in production; the run ends once the last
label is sent.

Refusals are counted, not fatal: a 422 (the ``new_payment_method`` scenario's unseen
payment method, which the API's schema rejects) counts as ``rejected_invalid``; any
other 4xx/5xx on predict as ``refused``. A connection that cannot be made at all
(nothing listening) raises :class:`SimulationError` at once. A run is ``ok`` when
nothing was ``refused`` and no request failed; validation rejections alone do not
make it fail, they are what that scenario is for.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pandas as pd

from exporter.data import synthetic
from exporter.domain import schema
from exporter.domain.scenarios import SCENARIOS

log = logging.getLogger("churn_monitor.simulate")

#: Requests in flight at most (predict and feedback together).
MAX_IN_FLIGHT = 32
#: Customers are generated in blocks covering this many seconds of traffic.
BLOCK_SECONDS = 1.0
#: The simulator's customerIDs start here, far from the IDs a training run uses.
ID_BASE = 10_000_000


class SimulationError(RuntimeError):
    """The API could not be reached; `result` holds the counts so far."""

    def __init__(self, message: str, result: SimulationResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass
class SimulationResult:
    """Counts of one simulation run (customers, not requests)."""

    sent: int = 0
    accepted: int = 0
    #: Refused by the API's validation (422), e.g. an unseen payment method.
    rejected_invalid: int = 0
    #: Refused with another 4xx/5xx status.
    refused: int = 0
    #: Requests that failed without an HTTP answer (timeout, reset).
    failed: int = 0
    #: Predict requests (not customers) by the HTTP status of their answer.
    statuses: dict[int, int] = field(default_factory=dict)
    feedback_sent: int = 0
    feedback_failed: int = 0
    duration_seconds: float = 0.0
    first_error: str | None = None

    @property
    def ok(self) -> bool:
        return self.refused == 0 and self.failed == 0 and self.feedback_failed == 0

    def summary(self) -> str:
        rate = self.sent / self.duration_seconds if self.duration_seconds > 0 else 0.0
        line = (
            f"sent {self.sent} customers in {self.duration_seconds:.1f}s ({rate:.1f}/s): "
            f"{self.accepted} accepted, {self.rejected_invalid} rejected by validation, "
            f"{self.refused} refused, {self.failed} failed; "
            f"feedback {self.feedback_sent} sent, {self.feedback_failed} failed"
        )
        if self.first_error:
            line += f"; first error: {self.first_error}"
        return line


def _records(frame: pd.DataFrame) -> list[tuple[dict[str, Any], int]]:
    """(request body, true label) per generated customer; blank TotalCharges as null."""
    payload = frame[[schema.ID_COLUMN, *schema.FEATURES]]
    rows = payload.astype(object).where(payload.notna(), None).to_dict("records")
    labels = [schema.label_code(value) for value in frame[schema.TARGET]]
    out: list[tuple[dict[str, Any], int]] = []
    for row, label in zip(rows, labels, strict=True):
        record = {str(name): value for name, value in row.items()}
        for name in ("SeniorCitizen", "tenure"):
            record[name] = int(record[name])
        for name in ("MonthlyCharges", "TotalCharges"):
            if record[name] is not None:
                record[name] = float(record[name])
        out.append((record, label))
    return out


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict):
        text = body.get("message") or body.get("detail")
        return f"HTTP {response.status_code}: {text}"[:300]
    return f"HTTP {response.status_code}"


class _Run:
    def __init__(
        self,
        api_url: str,
        *,
        rate: float,
        duration: float,
        scenario: str,
        label_delay: float,
        seed: int,
        batch: int,
        bar: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = api_url.rstrip("/")
        self.rate = rate
        self.duration = duration
        self.scenario = scenario
        self.label_delay = label_delay
        self.seed = seed
        self.batch = batch
        self.bar = bar
        self.clock = clock
        self.result = SimulationResult()
        self.pending: list[tuple[float, int, str, int]] = []  # (due, seq, prediction_id, label)
        self._seq = 0
        self._fatal: BaseException | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._block = 0
        self._generated = 0
        # Runs with different seeds draw disjoint customerIDs.
        self._id_start = ID_BASE + (seed % 1000) * 100_000_000

    def _note_error(self, text: str) -> None:
        if self.result.first_error is None:
            self.result.first_error = text
            log.warning("%s", text)

    def _generate(self, n: int, elapsed: float) -> list[tuple[dict[str, Any], int]]:
        progress = min(1.0, max(0.0, elapsed / self.duration))
        seed = int(np.random.SeedSequence([self.seed, self._block]).generate_state(1)[0])
        frame = synthetic.generate_customers(
            n,
            seed=seed,
            scenario=self.scenario,
            progress=progress,
            id_offset=self._id_start + self._generated,
        )
        self._block += 1
        self._generated += n
        return _records(frame)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _predict(self, client: httpx.AsyncClient, chunk: list[tuple[dict, int]]) -> None:
        async with self._slots:
            try:
                if len(chunk) == 1 and self.batch == 1:
                    response = await client.post(f"{self.url}/predict", json=chunk[0][0])
                else:
                    response = await client.post(
                        f"{self.url}/predict/batch", json={"customers": [c for c, _ in chunk]}
                    )
            except httpx.ConnectError as err:
                self._fatal = err
                return
            except httpx.HTTPError as err:
                self.result.failed += len(chunk)
                self._note_error(f"predict failed: {err.__class__.__name__}: {err}")
                return
            finally:
                self.bar.update(len(chunk))
        result = self.result
        result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
        if response.status_code == 422:
            result.rejected_invalid += len(chunk)
            return
        if response.status_code >= 300:
            result.refused += len(chunk)
            self._note_error(f"predict refused: {_error_text(response)}")
            return
        body = response.json()
        predictions = body.get("predictions", [body])
        result.accepted += len(chunk)
        due = self.clock() + self.label_delay
        for (_, label), prediction in zip(chunk, predictions, strict=True):
            self._seq += 1
            heapq.heappush(self.pending, (due, self._seq, prediction["prediction_id"], label))

    async def _feedback(self, client: httpx.AsyncClient, prediction_id: str, label: int) -> None:
        async with self._slots:
            try:
                response = await client.post(
                    f"{self.url}/feedback", json={"prediction_id": prediction_id, "actual": label}
                )
            except httpx.ConnectError as err:
                self._fatal = err
                return
            except httpx.HTTPError as err:
                self.result.feedback_failed += 1
                self._note_error(f"feedback failed: {err.__class__.__name__}: {err}")
                return
        if response.status_code >= 300:
            self.result.feedback_failed += 1
            self._note_error(f"feedback refused: {_error_text(response)}")
        else:
            self.result.feedback_sent += 1

    def _release_feedback(self, client: httpx.AsyncClient, now: float) -> None:
        while self.pending and self.pending[0][0] <= now:
            _, _, prediction_id, label = heapq.heappop(self.pending)
            self._spawn(self._feedback(client, prediction_id, label))

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise SimulationError(f"cannot reach the API at {self.url}: {self._fatal}", self.result)

    async def run(self) -> SimulationResult:
        limits = httpx.Limits(
            max_connections=MAX_IN_FLIGHT, max_keepalive_connections=MAX_IN_FLIGHT
        )
        timeout = httpx.Timeout(30.0, connect=5.0)
        async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
            try:
                await self._loop(client)
            finally:
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.result

    async def _loop(self, client: httpx.AsyncClient) -> None:
        start = self.clock()
        total = max(1, math.floor(self.rate * self.duration))
        block_size = max(1, math.ceil(self.rate * min(BLOCK_SECONDS, self.duration)))
        queue: list[tuple[dict[str, Any], int]] = []
        # Sending: customer i is due at start + i / rate.
        while self.result.sent < total:
            self._check_fatal()
            now = self.clock()
            elapsed = now - start
            due = min(total, math.floor(elapsed * self.rate) + 1)
            while self.result.sent < due:
                take = min(self.batch, due - self.result.sent)
                if self.batch > 1 and take < self.batch and due < total:
                    break  # wait until a full batch is due
                while len(queue) < take:
                    queue.extend(self._generate(min(block_size, total - self._generated), elapsed))
                chunk, queue = queue[:take], queue[take:]
                self.result.sent += len(chunk)
                self._spawn(self._predict(client, chunk))
            self._release_feedback(client, now)
            next_due = start + (self.result.sent + max(0, self.batch - 1)) / self.rate
            await asyncio.sleep(max(0.0, min(0.05, next_due - self.clock())))
        # Draining: wait for answers, then for every label to come due.
        while self._tasks or self.pending:
            self._check_fatal()
            now = self.clock()
            self._release_feedback(client, now)
            wait = 0.05
            if self.pending and not self._tasks:
                wait = max(0.0, min(0.5, self.pending[0][0] - now))
            await asyncio.sleep(wait)
        self._check_fatal()
        self.result.duration_seconds = self.clock() - start


def simulate(
    api_url: str,
    *,
    rate: float = 10.0,
    duration: float = 60.0,
    scenario: str = "none",
    label_delay: float = 5.0,
    seed: int = 42,
    batch: int = 1,
    progress: bool = True,
) -> SimulationResult:
    """Send ``rate × duration`` synthetic customers to the API at `api_url`.

    Raises ``ValueError`` for bad arguments and :class:`SimulationError` when the API
    cannot be reached; returns the counts otherwise (check ``result.ok``).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario: unknown {scenario!r}; valid: {', '.join(SCENARIOS)}")
    if not rate > 0 or not math.isfinite(rate):
        raise ValueError(f"rate: must be a positive number of customers per second, got {rate!r}")
    if not duration > 0 or not math.isfinite(duration):
        raise ValueError(f"duration: must be a positive number of seconds, got {duration!r}")
    if not label_delay >= 0 or not math.isfinite(label_delay):
        raise ValueError(f"label_delay: must be zero or more seconds, got {label_delay!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch: must be a positive integer, got {batch!r}")
    if not api_url.startswith(("http://", "https://")):
        raise ValueError(f"api_url: expected an http:// or https:// URL, got {api_url!r}")

    from tqdm import tqdm

    total = max(1, math.floor(rate * duration))
    with tqdm(
        total=total, unit="customer", desc=f"simulate {scenario}", disable=not progress
    ) as bar:
        run = _Run(
            api_url,
            rate=rate,
            duration=duration,
            scenario=scenario,
            label_delay=label_delay,
            seed=seed,
            batch=batch,
            bar=bar,
        )
        result = asyncio.run(run.run())
        bar.set_postfix(
            accepted=result.accepted,
            invalid=result.rejected_invalid,
            refused=result.refused,
            feedback=result.feedback_sent,
        )
    return result
