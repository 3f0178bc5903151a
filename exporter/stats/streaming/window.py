"""Which rows an incremental window holds: ids, timestamps, storage slots, eviction.

Membership
    The window holds the newest rows by timestamp ``ts`` (Unix seconds): at most
    ``max_rows`` of them, and only those with ``ts >= cutoff``, where ``cutoff = now -
    max_age_hours * 3600`` for the latest ``now`` given to :meth:`RowWindow.expire`
    (the cutoff never moves back). Either limit may be None (no limit). Rows of equal
    ``ts`` are ordered by arrival, the later one being newer. This is the prediction-log
    window read in full by the batch jobs (``ts >= now - hours * 3600``, newest ``N`` by
    ``ts`` and, among equal ``ts``, by the log's arrival key, in which order the stream
    reads rows), whatever the order in which rows arrive: a row evicted by count has
    ``max_rows`` newer rows in the window, and a row evicted by age is older than the
    cutoff, so neither can belong to the window again.
Eviction
    Both limits remove the oldest row first, from one heap ordered by ``(ts, arrival)``:
    ``O(log n)`` per row added or evicted.
Slots
    Each row gets a storage slot, a small integer reused after the row leaves, so the
    per-feature states keep their per-row data in flat numpy arrays indexed by slot
    (:func:`fit_slots`).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Sequence

import numpy as np


def fit_slots(arr: np.ndarray, slots: np.ndarray, fill: float) -> np.ndarray:
    """``arr``, or a copy grown so that every slot of ``slots`` indexes it (the size at
    least doubles; new entries are ``fill``)."""
    need = int(slots.max()) + 1 if slots.size else 0
    if need <= arr.size:
        return arr
    out = np.full(max(need, 2 * arr.size), fill, dtype=arr.dtype)
    out[: arr.size] = arr
    return out


class RowWindow:
    """The ids, timestamps and slots of the rows in a window (module notes)."""

    def __init__(self, max_rows: int | None, max_age_hours: float | None) -> None:
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1 or None, got {max_rows}")
        if max_age_hours is not None and not max_age_hours > 0:
            raise ValueError(f"max_age_hours must be positive or None, got {max_age_hours}")
        self.max_rows = max_rows
        self.max_age_hours = max_age_hours
        self._cutoff = -math.inf
        #: Slot of every row in the window, by id, in arrival order.
        self._slots: dict[str, int] = {}
        #: (ts, arrival number, slot, id) of every row in the window: a heap, oldest on top.
        self._heap: list[tuple[float, int, int, str]] = []
        self._arrivals = itertools.count()
        self._free: list[int] = []
        self._next_slot = 0

    def __len__(self) -> int:
        return len(self._slots)

    def __contains__(self, row_id: object) -> bool:
        return row_id in self._slots

    def ids(self) -> list[str]:
        """The ids of the rows in the window, in arrival order."""
        return list(self._slots)

    def slot(self, row_id: str) -> int | None:
        """The slot of row ``row_id``; None when it is not in the window."""
        return self._slots.get(row_id)

    def check_new(self, ids: Sequence[str], ts: np.ndarray) -> None:
        """Raise ValueError, naming the row, if ``ids`` and ``ts`` (float64) cannot be
        added: lengths differ, an id repeats or is already in the window, or a timestamp
        is not finite."""
        if len(ids) != ts.size:
            raise ValueError(f"{len(ids)} ids for {ts.size} timestamps")
        seen: set[str] = set()
        for row_id in ids:
            if row_id in self._slots:
                raise ValueError(f"row {row_id!r} is already in the window")
            if row_id in seen:
                raise ValueError(f"row {row_id!r} appears twice")
            seen.add(row_id)
        bad = np.flatnonzero(~np.isfinite(ts))
        if bad.size:
            raise ValueError(
                f"row {ids[int(bad[0])]!r}: timestamp {float(ts[bad[0]])} is not finite"
            )

    def add(self, ids: Sequence[str], ts: np.ndarray) -> np.ndarray:
        """Add rows (checked by :meth:`check_new`) and return their slots (int64).

        The rows are in the window until :meth:`evict` says otherwise; call it next.
        """
        reused = [self._free.pop() for _ in range(min(len(ids), len(self._free)))]
        fresh = range(self._next_slot, self._next_slot + len(ids) - len(reused))
        self._next_slot = fresh.stop
        slots = [*reused, *fresh]
        for row_id, t, slot in zip(ids, ts.tolist(), slots, strict=True):
            self._slots[row_id] = slot
            heapq.heappush(self._heap, (t, next(self._arrivals), slot, row_id))
        return np.array(slots, dtype=np.int64)

    def expire(self, now: float) -> None:
        """Move the age cutoff to ``now - max_age_hours * 3600`` (if that is later); call
        :meth:`evict` next."""
        if self.max_age_hours is not None:
            self._cutoff = max(self._cutoff, now - self.max_age_hours * 3600.0)

    def evict(self) -> np.ndarray:
        """Remove the rows beyond either limit, oldest first; return their slots (int64).

        The slots are free for new rows from now on: the caller drops their data before
        adding rows again.
        """
        gone: list[int] = []
        heap = self._heap
        limit = math.inf if self.max_rows is None else self.max_rows
        while heap and (heap[0][0] < self._cutoff or len(heap) > limit):
            _ts, _arrival, slot, row_id = heapq.heappop(heap)
            del self._slots[row_id]
            gone.append(slot)
        self._free.extend(gone)
        return np.array(gone, dtype=np.int64)
