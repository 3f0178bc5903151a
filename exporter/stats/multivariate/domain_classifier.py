"""Domain classifier: can a model tell window rows from reference rows?

After NannyML's domain classifier. On encoded rows (:mod:`.encoding`):

* the window is subsampled to at most ``max_rows`` rows, and the reference to as many
  rows as the window keeps (or all of it when it is smaller), drawn without
  replacement by a generator seeded with ``seed``, so a window always gets the same
  answer;
* the rows are split in two stratified halves: a gradient-boosted tree classifier
  (sklearn's ``HistGradientBoostingClassifier``, :data:`CLASSIFIER_PARAMS`) learns to
  predict "window" on one half;
* the statistic is its ROC AUC (``roc_auc_score``) on the other, held-out half, of
  ``n1`` reference and ``n2`` window rows.

An AUC near 0.5 means the two sets look alike; 1 means every window row is told apart.

Why one held-out half and not k-fold cross-validation: the held-out AUC's no-drift
distribution is exactly the Mann-Whitney one (the scores are computed without the
held-out labels), which :func:`~.thresholds.auc_upper_bound` uses. The pooled k-fold AUC
is not: its folds share training rows, and on the Telco-like data its no-drift spread was
1.33 times the Mann-Whitney spread (3 folds, 300-row windows), for which no formula
exists. Measured against that inflated spread, k-fold's extra test rows buy no power.

Cost: one fit on ``(n1 + n2)`` rows, so ``max_rows`` caps it; a 100,000-row window
costs what a ``max_rows`` one does. The fit runs on one OpenMP thread: on small
inputs that is several times faster than spreading it over the cores, and it keeps the
classifier from contending with the other jobs and the API. Fewer than 2 rows on
either side give no AUC (None).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

#: Small, fixed trees: enough to find an interaction, cheap enough for every window.
CLASSIFIER_PARAMS = {
    "max_iter": 40,
    "max_leaf_nodes": 15,
    "learning_rate": 0.2,
    "early_stopping": False,
}
#: Default cap on the window rows (and so on the reference rows) the classifier sees.
DEFAULT_MAX_ROWS = 5000
_MIN_ROWS = 4  # two per class and half


def _subsample(matrix: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    if size >= len(matrix):
        return matrix
    return matrix[np.sort(rng.choice(len(matrix), size, replace=False))]


def domain_auc(
    reference: np.ndarray,
    window: np.ndarray,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    seed: int = 0,
) -> tuple[float | None, int, int]:
    """(held-out ROC AUC or None, ``n1`` held-out reference rows, ``n2`` held-out
    window rows); see the module notes."""
    rng = np.random.default_rng(seed)
    current = _subsample(window, max_rows, rng)
    ref = _subsample(reference, len(current), rng)
    if min(len(ref), len(current)) < _MIN_ROWS:
        return None, 0, 0
    x = np.vstack([ref, current])
    y = np.r_[np.zeros(len(ref)), np.ones(len(current))]
    x_fit, x_test, y_fit, y_test = train_test_split(
        x, y, test_size=0.5, stratify=y, random_state=seed
    )
    classifier = HistGradientBoostingClassifier(random_state=seed, **CLASSIFIER_PARAMS)
    with threadpool_limits(limits=1, user_api="openmp"):
        scores = classifier.fit(x_fit, y_fit).predict_proba(x_test)[:, 1]
    n2 = int(y_test.sum())
    return float(roc_auc_score(y_test, scores)), len(y_test) - n2, n2
