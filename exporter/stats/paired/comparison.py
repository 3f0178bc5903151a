"""Champion against challenger on the same labelled rows: one comparison, every number.

Both models scored the same ``n`` rows, whose 0/1 labels are known; each decides
``score >= threshold`` with its own threshold. Differences are challenger minus
champion, so a positive difference favours the challenger.

ROC AUC
    each model's AUC (ties count one half), their difference, its DeLong variance and
    the two-sided DeLong p-value (:mod:`.delong`);
accuracy
    ``accuracy = (TP + TN) / n`` of each model's decisions, their difference, and the
    two-sided McNemar p-value (:mod:`.mcnemar`), which tests that difference;
agreement
    the share of rows on which the two decisions agree (:func:`agreement_ratio`), with
    or without labels.

All values are shares in [0, 1] except the differences (in [-1, 1]) and the variance
(of a difference of shares).

Edge cases (``reason`` says why a value is None):

* no rows: every value is None;
* fewer than ``min_rows`` rows, or one class only: the AUC fields are None, the
  accuracies, McNemar's p-value and the agreement are still given;
* a class with a single row: the AUCs and their difference are given, the variance and
  the DeLong p-value are None (a sample variance needs two rows);
* identical models: AUC difference 0, variance 0, both p-values 1.0, agreement 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from exporter.stats.paired._inputs import paired_inputs, paired_scores, threshold_value
from exporter.stats.paired.delong import delong_test, midrank_auc
from exporter.stats.paired.mcnemar import mcnemar_test


@dataclass(frozen=True)
class PairedComparison:
    """Champion and challenger on ``n_paired`` labelled rows (module notes).

    Differences are challenger minus champion; p-values are two-sided. ``reason`` says
    why any value is None, and is None when every value is given.
    """

    n_paired: int
    auc_champion: float | None
    auc_challenger: float | None
    auc_difference: float | None
    auc_difference_variance: float | None
    auc_pvalue: float | None
    accuracy_champion: float | None
    accuracy_challenger: float | None
    accuracy_difference: float | None
    mcnemar_pvalue: float | None
    agreement_ratio: float | None
    reason: str | None


def _agreement(decisions_a: np.ndarray, decisions_b: np.ndarray) -> float | None:
    return float(np.mean(decisions_a == decisions_b)) if len(decisions_a) else None


def agreement_ratio(
    champion_scores: Any,
    challenger_scores: Any,
    champion_threshold: float,
    challenger_threshold: float,
) -> float | None:
    """Share of rows where ``champion_score >= champion_threshold`` equals
    ``challenger_score >= challenger_threshold``; no labels needed. None for no rows.

    ValueError, naming the argument, on non-finite scores or thresholds or on score
    arrays of different lengths.
    """
    a, b = paired_scores(
        champion_scores, challenger_scores, ("champion_scores", "challenger_scores")
    )
    ta = threshold_value(champion_threshold, "champion_threshold")
    tb = threshold_value(challenger_threshold, "challenger_threshold")
    return _agreement(a >= ta, b >= tb)


def compare_paired(
    labels: Any,
    champion_scores: Any,
    challenger_scores: Any,
    champion_threshold: float,
    challenger_threshold: float,
    min_rows: int = 1,
) -> PairedComparison:
    """The champion-challenger comparison of the module notes on paired labelled rows.

    ``labels`` are 0/1; the score arrays are finite and aligned with them by position
    (:mod:`._inputs`: the caller keeps only rows scored by both models). ValueError,
    naming the argument, on invalid inputs.
    """
    y, a, b = paired_inputs(
        labels,
        champion_scores,
        challenger_scores,
        ("labels", "champion_scores", "challenger_scores"),
    )
    ta = threshold_value(champion_threshold, "champion_threshold")
    tb = threshold_value(challenger_threshold, "challenger_threshold")
    n = len(y)
    if n == 0:
        return PairedComparison(
            n_paired=0,
            auc_champion=None,
            auc_challenger=None,
            auc_difference=None,
            auc_difference_variance=None,
            auc_pvalue=None,
            accuracy_champion=None,
            accuracy_challenger=None,
            accuracy_difference=None,
            mcnemar_pvalue=None,
            agreement_ratio=None,
            reason="no paired labelled rows",
        )
    decisions_a, decisions_b = a >= ta, b >= tb
    accuracy_a = float(np.mean(decisions_a.astype(np.int64) == y))
    accuracy_b = float(np.mean(decisions_b.astype(np.int64) == y))
    mcnemar_p = mcnemar_test(y, a, b, ta, tb).pvalue

    auc_a = auc_b = auc_diff = variance = auc_p = None
    positives = int(y.sum())
    negatives = n - positives
    reason: str | None = None
    if n < min_rows:
        reason = f"{n} paired labelled rows, fewer than the minimum {min_rows}: no ROC AUC"
    elif positives == 0 or negatives == 0:
        reason = "one class only: ROC AUC is undefined"
    elif positives < 2 or negatives < 2:
        auc_a, auc_b = midrank_auc(y, a), midrank_auc(y, b)
        auc_diff = auc_b - auc_a
        reason = (
            f"{positives} positive and {negatives} negative rows: DeLong's variance "
            "needs at least 2 of each class"
        )
    else:
        delong = delong_test(y, a, b)
        auc_a, auc_b = delong.auc_a, delong.auc_b
        auc_diff, variance, auc_p = delong.difference, delong.variance, delong.pvalue
    return PairedComparison(
        n_paired=n,
        auc_champion=auc_a,
        auc_challenger=auc_b,
        auc_difference=auc_diff,
        auc_difference_variance=variance,
        auc_pvalue=auc_p,
        accuracy_champion=accuracy_a,
        accuracy_challenger=accuracy_b,
        accuracy_difference=accuracy_b - accuracy_a,
        mcnemar_pvalue=mcnemar_p,
        agreement_ratio=_agreement(decisions_a, decisions_b),
        reason=reason,
    )
