"""Which drift test applies to which kind of feature, and a feature's rule (one owner).

A rule is a test ``method`` and the ``threshold`` it is compared with: for ``ks`` the
feature drifted when the p-value is *below* the threshold; for ``psi``,
``wasserstein`` (normalised) and ``jensenshannon`` when the statistic is *above* it.
Numeric features accept ``ks``, ``psi`` and ``wasserstein``; categorical ones ``psi``
and ``jensenshannon``. The config's per-feature overrides and the statistics' defaults
(:data:`exporter.stats.decision.DEFAULT_RULES`) both follow this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

FeatureKind = Literal["numeric", "categorical"]
DriftMethod = Literal["ks", "psi", "wasserstein", "jensenshannon"]

#: The drift tests that apply to each kind of feature.
METHODS_BY_KIND: Mapping[FeatureKind, frozenset[DriftMethod]] = {
    "numeric": frozenset({"ks", "psi", "wasserstein"}),
    "categorical": frozenset({"psi", "jensenshannon"}),
}


def check_method(kind: FeatureKind, method: str) -> None:
    """Raise ValueError when the drift test `method` does not apply to `kind` features."""
    if method not in METHODS_BY_KIND[kind]:
        allowed = ", ".join(sorted(METHODS_BY_KIND[kind]))
        raise ValueError(f"{method!r} does not apply to {kind} features (use one of: {allowed})")


@dataclass(frozen=True)
class DriftRule:
    """The test that decides whether a feature drifted: its method and threshold."""

    method: DriftMethod
    threshold: float
