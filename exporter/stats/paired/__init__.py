"""Paired comparison of two classifiers scored on the same labelled rows.

A champion (the model in service) and a challenger (a candidate) scored the same rows;
because the rows are shared, their metrics are correlated and the tests account for it:

* :mod:`.delong`: DeLong's test of the difference of the two ROC AUCs, with Sun & Xu's
  O(n log n) midrank algorithm;
* :mod:`.mcnemar`: McNemar's test of the difference of the two accuracies, on the rows
  where exactly one model is right;
* :mod:`.comparison`: both, with the accuracies and the decisions' agreement, in one
  :class:`PairedComparison`; and the agreement alone for unlabelled rows.

Input validation lives in :mod:`._inputs`. Pure computation, no I/O.
"""

from exporter.stats.paired.comparison import PairedComparison, agreement_ratio, compare_paired
from exporter.stats.paired.delong import DeLongResult, delong_test, midrank_auc
from exporter.stats.paired.mcnemar import EXACT_BELOW, McNemarResult, mcnemar_test

__all__ = [
    "EXACT_BELOW",
    "DeLongResult",
    "McNemarResult",
    "PairedComparison",
    "agreement_ratio",
    "compare_paired",
    "delong_test",
    "mcnemar_test",
    "midrank_auc",
]
