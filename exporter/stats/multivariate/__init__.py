"""Multivariate drift and unusual rows: what per-feature tests cannot see.

A change in how features relate (TotalCharges no longer about tenure x MonthlyCharges,
Contract and PaymentMethod paired differently) moves no marginal distribution, so no
KS, PSI, Wasserstein or Jensen-Shannon test sees it. Two methods do, after NannyML's:

* :mod:`.reconstruction`: the mean error of reconstructing the window's rows from the
  reference's principal components;
* :mod:`.domain_classifier`: the cross-validated ROC AUC of a classifier telling
  window rows from reference rows.

Where each idea lives: :mod:`.encoding` (rows as vectors), :mod:`.reconstruction`,
:mod:`.domain_classifier`, :mod:`.thresholds` (alert bounds at the window's size),
:mod:`.profile` (the reference, fitted once; per-row scores for unusual inputs) and
:mod:`.assessment` (a window's statistics and verdicts). Pure computation, no I/O.
"""

from exporter.stats.multivariate.assessment import (
    DEFAULT_FALSE_ALARM_RATE,
    MultivariateDrift,
    assess_multivariate,
)
from exporter.stats.multivariate.domain_classifier import DEFAULT_MAX_ROWS, domain_auc
from exporter.stats.multivariate.encoding import RowEncoder, fit_encoder
from exporter.stats.multivariate.profile import (
    DEFAULT_UNUSUAL_RATE,
    MultivariateProfile,
    RowScores,
    fit_multivariate,
)
from exporter.stats.multivariate.reconstruction import (
    DEFAULT_VARIANCE_SHARE,
    Reconstruction,
    fit_reconstruction,
)

__all__ = [
    "DEFAULT_FALSE_ALARM_RATE",
    "DEFAULT_MAX_ROWS",
    "DEFAULT_UNUSUAL_RATE",
    "DEFAULT_VARIANCE_SHARE",
    "MultivariateDrift",
    "MultivariateProfile",
    "Reconstruction",
    "RowEncoder",
    "RowScores",
    "assess_multivariate",
    "domain_auc",
    "fit_encoder",
    "fit_multivariate",
    "fit_reconstruction",
]
