"""The Telco Customer Churn schema: column names, value sets and feature groups.

Names and values follow the public IBM "Telco Customer Churn" export exactly, so a
user's real export and the synthetic generator share one schema.
"""

from __future__ import annotations

ID_COLUMN = "customerID"
TARGET = "Churn"

YES_NO = ("No", "Yes")
NO_INTERNET = "No internet service"
NO_PHONE = "No phone service"
INTERNET_ADDON = ("No", "Yes", NO_INTERNET)

#: Allowed values of each categorical feature, in a fixed order.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": ("Female", "Male"),
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": ("No", "Yes", NO_PHONE),
    "InternetService": ("DSL", "Fiber optic", "No"),
    "OnlineSecurity": INTERNET_ADDON,
    "OnlineBackup": INTERNET_ADDON,
    "DeviceProtection": INTERNET_ADDON,
    "TechSupport": INTERNET_ADDON,
    "StreamingTV": INTERNET_ADDON,
    "StreamingMovies": INTERNET_ADDON,
    "Contract": ("Month-to-month", "One year", "Two year"),
    "PaperlessBilling": YES_NO,
    "PaymentMethod": (
        "Electronic check",
        "Mailed check",
        "Bank transfer (automatic)",
        "Credit card (automatic)",
    ),
}

INTERNET_ADDONS = (
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
)

#: Numeric features with their plausible ranges (inclusive), in the export's units.
NUMERIC_RANGES: dict[str, tuple[float, float]] = {
    "SeniorCitizen": (0, 1),
    "tenure": (0, 72),
    "MonthlyCharges": (18.0, 120.0),
    "TotalCharges": (0.0, 9000.0),
}

#: The 19 model features in the export's column order.
FEATURES: tuple[str, ...] = (
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
)

#: Drift is measured on these as continuous distributions (SeniorCitizen is 0/1 and
#: therefore treated as categorical for drift, numeric for the model).
NUMERIC_FEATURES: tuple[str, ...] = ("tenure", "MonthlyCharges", "TotalCharges")
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f for f in FEATURES if f not in NUMERIC_FEATURES)

ALL_COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURES, TARGET)


# ------------------------------------------------------------------------ the target

#: The positive class: the customer churned. As text in the Churn column, and as code.
POSITIVE_LABEL = "Yes"
NEGATIVE_LABEL = "No"
POSITIVE = 1

#: Every spelling of a label the project accepts, with its 0/1 code (True and False
#: hash as 1 and 0, so they are found too).
LABEL_CODES: dict[object, int] = {POSITIVE_LABEL: 1, NEGATIVE_LABEL: 0, 1: 1, 0: 0, "1": 1, "0": 0}


def label_code(value: object) -> int:
    """The 0/1 code of a label (``"Yes"``/``"No"``, 1/0, True/False, ``"1"``/``"0"``);
    ValueError for anything else."""
    try:
        return LABEL_CODES[value]
    except (KeyError, TypeError):
        raise ValueError(f"not a churn label: {value!r} (expected Yes/No or 1/0)") from None


def label_text(code: int) -> str:
    """``"Yes"`` for 1, ``"No"`` for 0: the label as the Churn column writes it."""
    return POSITIVE_LABEL if code else NEGATIVE_LABEL


def positive_column(classes: object) -> int:
    """The column of ``predict_proba`` that holds P(churn), for a classifier's
    ``classes_``: the position of the positive class in any of its spellings, else the
    last column (scikit-learn sorts classes, so the positive one comes last)."""
    found = list(classes) if classes is not None else [0, 1]  # type: ignore[call-overload]
    for positive in (POSITIVE, POSITIVE_LABEL, True, "1"):
        if positive in found:
            return found.index(positive)
    return len(found) - 1
