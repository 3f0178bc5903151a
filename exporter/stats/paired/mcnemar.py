"""McNemar's test: are two models right equally often on the same rows?

Each model decides ``score >= threshold`` with its own threshold, and a decision is
correct when it equals the row's 0/1 label. Over the ``N`` rows the correctness pairs
form the 2x2 table (counts of rows)

                     b correct   b wrong
        a correct    n11         n10
        a wrong      n01         n00

and only the discordant rows, ``n10`` (only ``a`` right) and ``n01`` (only ``b``
right), carry evidence: under the null hypothesis of equal accuracy each discordant row
is equally likely to fall either way. Computed by statsmodels'
``statsmodels.stats.contingency_tables.mcnemar`` on that table:

* fewer than :data:`EXACT_BELOW` discordant rows: the exact binomial test, statistic
  ``min(n10, n01)``, p-value ``min(1, 2·P(Bin(n10 + n01, 1/2) <= min(n10, n01)))``;
* otherwise the chi-square approximation with continuity correction, statistic
  ``(|n10 - n01| - 1)² / (n10 + n01)`` on 1 degree of freedom.

The p-value is two-sided, a share in [0, 1]; the accuracy difference it tests is
``(n01 - n10) / N`` (b minus a).

Edge cases: no discordant row (including no row at all): the models are right on
exactly the same rows, statistic 0 and p-value 1.0 (exact test), never NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from statsmodels.stats.contingency_tables import mcnemar

from exporter.stats.paired._inputs import paired_inputs, threshold_value

#: The exact binomial test is used below this many discordant rows, chi-square above.
EXACT_BELOW = 25


@dataclass(frozen=True)
class McNemarResult:
    """The correctness table of two models on the same rows, and McNemar's test.

    ``both_correct`` = n11, ``only_a_correct`` = n10, ``only_b_correct`` = n01,
    ``both_wrong`` = n00 (module notes); ``exact`` says whether the binomial test was
    used (else chi-square with continuity correction).
    """

    both_correct: int
    only_a_correct: int
    only_b_correct: int
    both_wrong: int
    exact: bool
    statistic: float
    pvalue: float

    @property
    def n_rows(self) -> int:
        return self.both_correct + self.only_a_correct + self.only_b_correct + self.both_wrong

    @property
    def discordant(self) -> int:
        """Rows where exactly one model is right: ``n10 + n01``."""
        return self.only_a_correct + self.only_b_correct

    @property
    def table(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """``((n11, n10), (n01, n00))``: rows a correct/wrong, columns b correct/wrong."""
        return (
            (self.both_correct, self.only_a_correct),
            (self.only_b_correct, self.both_wrong),
        )


def mcnemar_test(
    labels: Any, scores_a: Any, scores_b: Any, threshold_a: float, threshold_b: float
) -> McNemarResult:
    """McNemar's test of ``score_a >= threshold_a`` against ``score_b >= threshold_b``
    on the same labelled rows (module notes). ValueError on invalid inputs
    (:mod:`._inputs`)."""
    y, a, b = paired_inputs(labels, scores_a, scores_b)
    ta = threshold_value(threshold_a, "threshold_a")
    tb = threshold_value(threshold_b, "threshold_b")
    correct_a = (a >= ta).astype(np.int64) == y
    correct_b = (b >= tb).astype(np.int64) == y
    n11 = int(np.sum(correct_a & correct_b))
    n10 = int(np.sum(correct_a & ~correct_b))
    n01 = int(np.sum(~correct_a & correct_b))
    n00 = int(np.sum(~correct_a & ~correct_b))
    discordant = n10 + n01
    exact = discordant < EXACT_BELOW
    if discordant == 0:
        statistic, pvalue = 0.0, 1.0
    else:
        result = mcnemar([[n11, n10], [n01, n00]], exact=exact, correction=True)
        statistic, pvalue = float(result.statistic), float(result.pvalue)
    return McNemarResult(
        both_correct=n11,
        only_a_correct=n10,
        only_b_correct=n01,
        both_wrong=n00,
        exact=exact,
        statistic=statistic,
        pvalue=pvalue,
    )
