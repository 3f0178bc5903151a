"""Domain classifier: can a model tell window rows from reference rows?

After NannyML's domain classifier. On encoded rows (:mod:`.encoding`):

* the window is subsampled to at most ``max_rows`` rows, and the reference to as many
  rows as the window keeps (or all of it when it is smaller), drawn without
  replacement by a generator seeded with ``seed``, so a window always gets the same
  answer;
* the rows are split in two stratified halves, A and B: a gradient-boosted tree
  classifier (sklearn's ``HistGradientBoostingClassifier``, :data:`CLASSIFIER_PARAMS`)
  fitted on A scores B, and one fitted on B scores A;
* the statistic is the mean of the two held-out ROC AUCs (``roc_auc_score``), each
  measured on ``n1`` reference and ``n2`` window rows (the smaller half's counts).

An AUC near 0.5 means the two sets look alike; 1 means every window row is told apart.

The no-drift distribution: each held-out AUC is exactly Mann-Whitney's (its scores are
computed without the held-out labels), of mean 1/2 and variance ``v`` (see
:func:`~.thresholds.auc_upper_bound`). The two halves are correlated, but a mean of two
variables of variance ``v`` has variance at most ``v``, so the one-half bound holds for
the mean, conservatively, while the mean varies less than one half's AUC under drift:
more power at the same false-alarm rate. A pooled k-fold AUC has no such bound: its
folds share training rows, and on the Telco-like data its no-drift spread was 1.33
times the Mann-Whitney spread (3 folds, 300-row windows).

Cost: two fits, each on half of at most ``2 * max_rows`` rows, so ``max_rows`` caps it;
a 100,000-row window costs what a ``max_rows`` one does. Fits run on one OpenMP
thread: on small inputs that is several times faster than spreading them over the
cores, and it keeps the classifier from contending with the other jobs and the API.
Fewer than 4 rows on either side give no AUC (None).
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
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
    """(mean held-out ROC AUC or None, ``n1`` reference rows and ``n2`` window rows of
    the smaller half); see the module notes."""
    rng = np.random.default_rng(seed)
    current = _subsample(window, max_rows, rng)
    ref = _subsample(reference, len(current), rng)
    if min(len(ref), len(current)) < _MIN_ROWS:
        return None, 0, 0
    x = np.vstack([ref, current])
    y = np.r_[np.zeros(len(ref)), np.ones(len(current))]
    halves = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed).split(x, y)
    aucs, sizes = [], []
    with threadpool_limits(limits=1, user_api="openmp"):
        for fit, test in halves:
            classifier = HistGradientBoostingClassifier(random_state=seed, **CLASSIFIER_PARAMS)
            scores = classifier.fit(x[fit], y[fit]).predict_proba(x[test])[:, 1]
            aucs.append(roc_auc_score(y[test], scores))
            n2 = int(y[test].sum())
            sizes.append((len(test) - n2, n2))
    n1, n2 = min(sizes, key=lambda s: s[0] * s[1])
    return float(np.mean(aucs)), n1, n2
