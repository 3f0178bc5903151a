"""The true churn relation of the synthetic generator: ``P(churn | x)`` per scenario.

A logistic model rising with month-to-month contracts, fiber, paying by electronic
check, short tenure, high charges, missing online security or tech support, paperless
billing and age; under ``concept`` long tenure and long contracts raise churn and cheap
plans churn (:mod:`exporter.data.synthetic` describes the scenarios).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from exporter.domain.scenarios import check_scenario


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function ``1 / (1 + exp(-x))``."""
    return 1.0 / (1.0 + np.exp(-x))


#: Logistic churn models: coefficients of the terms built by :func:`_churn_terms`.
_NONE_MODEL: dict[str, float] = {
    "intercept": -0.28,
    "one_year": -0.95,
    "two_year": -1.90,
    "fiber": 0.75,
    "no_internet": -0.30,
    "electronic_check": 0.45,
    "log_tenure": -0.55,
    "charges": 0.012,
    "no_security": 0.35,
    "no_tech_support": 0.35,
    "senior": 0.30,
    "paperless": 0.30,
    "dependents": -0.15,
}
#: Concept drift: long tenure and long contracts raise churn, cheap plans churn.
_CONCEPT_MODEL: dict[str, float] = {
    **_NONE_MODEL,
    "intercept": -3.43,
    "one_year": 0.30,
    "two_year": 1.00,
    "log_tenure": 0.35,
    "charges": -0.015,
}

_CHURN_INPUTS = (
    "SeniorCitizen",
    "Dependents",
    "tenure",
    "InternetService",
    "OnlineSecurity",
    "TechSupport",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
)


def _churn_terms(f: pd.DataFrame) -> dict[str, np.ndarray]:
    def eq(column: str, value: str) -> np.ndarray:
        return (f[column] == value).to_numpy(dtype=float)

    return {
        "one_year": eq("Contract", "One year"),
        "two_year": eq("Contract", "Two year"),
        "fiber": eq("InternetService", "Fiber optic"),
        "no_internet": eq("InternetService", "No"),
        "electronic_check": eq("PaymentMethod", "Electronic check"),
        "log_tenure": np.log1p(f["tenure"].to_numpy(dtype=float)),
        "charges": f["MonthlyCharges"].to_numpy(dtype=float) - 65.0,
        "no_security": eq("OnlineSecurity", "No"),
        "no_tech_support": eq("TechSupport", "No"),
        "senior": f["SeniorCitizen"].to_numpy(dtype=float),
        "paperless": eq("PaperlessBilling", "Yes"),
        "dependents": eq("Dependents", "Yes"),
    }


def _probability(terms: dict[str, np.ndarray], scenario: str) -> np.ndarray:
    model = _CONCEPT_MODEL if scenario == "concept" else _NONE_MODEL
    logit = np.full(len(terms["senior"]), model["intercept"])
    for name, value in terms.items():
        logit += model[name] * value
    return sigmoid(logit)


def churn_probability(features: pd.DataFrame, scenario: str = "none") -> np.ndarray:
    """The true ``P(churn | x)`` the generator draws labels from, one value per row.

    ``features`` needs the churn model's input columns (any other column is ignored).
    For every scenario except ``concept`` this is one and the same function. A
    category outside the schema (the new payment method) has no effect of its own,
    like an automatic payment; a missing tenure or MonthlyCharges gives NaN.
    """
    check_scenario(scenario)
    missing = [c for c in _CHURN_INPUTS if c not in features.columns]
    if missing:
        raise ValueError(f"churn_probability: missing feature columns: {', '.join(missing)}")
    return _probability(_churn_terms(features), scenario)
