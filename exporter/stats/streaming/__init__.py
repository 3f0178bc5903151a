"""Incremental windows: drift and realized metrics updated at the cost of the new rows.

A streaming monitor keeps its window in memory and follows the prediction log: it adds
the rows and labels logged since its last look and evicts the rows that fell out of the
window (the newest ``N`` rows and/or the last ``H`` hours). Every statistic then equals
the full computation of :mod:`exporter.stats.drift`, :mod:`exporter.stats.decision` and
:mod:`exporter.stats.performance` on the same rows, because the state kept is what those
functions derive from the rows before their final step, and the final step is theirs.

Where each idea lives (formulas, costs and edge cases in each module's notes):

* :mod:`.window`: which rows are in, eviction by count and age, storage slots;
* :mod:`.sorted_values`: a numeric feature's values kept sorted without re-sorting;
* :mod:`.numeric`: a numeric feature (sorted values, missing count);
* :mod:`.categorical`: a categorical feature (counts per bin, missing count);
* :mod:`.labels`: scores, labels, confusion counts, ROC AUC, labels before their row;
* :mod:`.incremental`: the window that ties them together.

Pure computation: no I/O, no clock (the caller passes the time to ``expire``).
"""

from exporter.stats.streaming.incremental import DEFAULT_PENDING_LABELS, IncrementalWindow

__all__ = ["DEFAULT_PENDING_LABELS", "IncrementalWindow"]
