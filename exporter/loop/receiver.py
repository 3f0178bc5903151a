"""The Alertmanager webhook receiver: notifications into the history, and the trigger.

Served by the exporter at ``POST /alerts/webhook``. Alertmanager retries a delivery
that did not get a 2xx, so storing is idempotent (see `history.record_alerts`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from exporter.data.history import WebhookError, parse_notification, record_alerts
from exporter.loop.retraining import RetrainingTrigger

log = logging.getLogger(__name__)

#: Larger bodies are refused (413): a notification of a few hundred alerts is far less.
MAX_BODY_BYTES = 5_000_000


class AlertReceiver:
    """Stores each notification and hands firing alerts to the retraining trigger."""

    def __init__(
        self,
        history: Engine,
        trigger: RetrainingTrigger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.trigger = trigger
        self.clock = clock
        self._lock = threading.Lock()

    def handle(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) for one webhook body."""
        try:
            records = parse_notification(json.loads(body))
        except (ValueError, WebhookError) as err:  # JSONDecodeError is a ValueError
            return 400, {"error": str(err)}
        try:
            with self._lock:
                added = record_alerts(self.history, records, self.clock())
        except SQLAlchemyError as err:
            log.error("alert history unavailable: %s", err)
            return 503, {"error": "alert history unavailable; retry later"}
        answer: dict[str, Any] = {"alerts": len(records), "new": added}
        if self.trigger is not None:
            answer["retraining"] = self.trigger.consider(records)
        return 200, answer
