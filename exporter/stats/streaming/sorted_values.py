"""A multiset of finite floats whose ascending array is kept up to date incrementally.

The exact KS statistic and Wasserstein distance of a window need its values in
ascending order (:func:`~exporter.stats.drift.numeric.numeric_stats_from_sorted`).
Instead of sorting the whole window again after every change, :class:`SortedValues`
keeps the sorted array and buffers insertions and removals; :meth:`SortedValues.array`
applies them at once:

* insertions: the ``k`` buffered values are sorted (``O(k log k)``) and merged into the
  ``m`` kept ones at the positions a binary search gives (``O(m + k)``);
* removals: the ``r`` buffered values are sorted; the ``i``-th copy of a value removes
  the ``i``-th occurrence of that value in the array (``O(r log m + m)``).

The result equals ``np.sort`` of the multiset value for value (``0.0`` and ``-0.0``
compare equal and may appear in either order, as with ``np.sort``), so every statistic
computed from it equals the one computed from a fresh sort. The heavy steps are numpy
calls; the Python work is per batch, not per value.
"""

from __future__ import annotations

import numpy as np


class SortedValues:
    """A multiset of finite float64 values and its ascending array (module notes).

    Only values that are in the multiset may be removed; the caller (a window that
    stores each row's value) guarantees it.
    """

    def __init__(self) -> None:
        self._sorted = np.empty(0)
        self._added: list[np.ndarray] = []
        self._removed: list[np.ndarray] = []
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, values: np.ndarray) -> None:
        """Insert finite ``values`` (a 1-D float64 array)."""
        if values.size:
            self._added.append(values)
            self._size += int(values.size)

    def remove(self, values: np.ndarray) -> None:
        """Remove one occurrence of each of ``values`` (each must be in the multiset)."""
        if values.size:
            self._removed.append(values)
            self._size -= int(values.size)

    def array(self) -> np.ndarray:
        """The values in ascending order (read-only float64; valid until the next change)."""
        a = self._sorted
        if self._added:
            new = np.sort(np.concatenate(self._added))
            a = np.insert(a, np.searchsorted(a, new, side="right"), new)
            self._added.clear()
        if self._removed:
            gone = np.sort(np.concatenate(self._removed))
            # The i-th copy of a value goes at the i-th position of its run in ``a``.
            nth = np.arange(gone.size) - np.searchsorted(gone, gone, side="left")
            keep = np.ones(a.size, dtype=bool)
            keep[np.searchsorted(a, gone, side="left") + nth] = False
            a = a[keep]
            self._removed.clear()
        if a is not self._sorted:
            a.setflags(write=False)
            self._sorted = a
        return a
