"""Classification metric names and their edge-case convention (one owner).

The five metrics of the model-quality contract, in the order they are reported:
accuracy, precision, recall, F1 (all at the model's tuned decision threshold) and ROC
AUC (of the scores). Their values are shares in [0, 1].

**Undefined values are left out, never reported as 0 or NaN.** Precision is undefined
when nothing is predicted positive, recall when no row is actually positive, F1 when
both hold, ROC AUC when the labels hold one class only. The training baseline and the
realized values follow this same convention (both are computed by
:func:`exporter.stats.performance.classification_metrics`), so the degradation
``baseline - realized`` exists exactly for the metrics defined on both sides.
"""

from __future__ import annotations

from typing import Literal, get_args

#: A metric name (Prometheus label ``metric``).
Metric = Literal["accuracy", "precision", "recall", "f1", "roc_auc"]
#: The metric names, in report order.
METRICS: tuple[str, ...] = get_args(Metric)
