"""The Telco Customer Churn schema: column names, value sets and feature groups.

Names and values follow the public IBM "Telco Customer Churn" export exactly, so a
user's real export and the synthetic generator share one schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, get_args

ID_COLUMN = "customerID"
TARGET = "Churn"

NO_INTERNET = "No internet service"
NO_PHONE = "No phone service"

# The value sets as types (the prediction API validates requests with them).
Gender = Literal["Female", "Male"]
YesNo = Literal["No", "Yes"]
MultipleLines = Literal["No", "Yes", "No phone service"]
InternetService = Literal["DSL", "Fiber optic", "No"]
InternetAddon = Literal["No", "Yes", "No internet service"]
Contract = Literal["Month-to-month", "One year", "Two year"]
PaymentMethod = Literal[
    "Electronic check",
    "Mailed check",
    "Bank transfer (automatic)",
    "Credit card (automatic)",
]

#: "No" and "Yes" in code order: ``YES_NO[0]`` is "No", ``YES_NO[1]`` is "Yes".
YES_NO: tuple[str, ...] = get_args(YesNo)
INTERNET_ADDON: tuple[str, ...] = get_args(InternetAddon)

#: Allowed values of each categorical feature, in a fixed order.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "gender": get_args(Gender),
    "Partner": YES_NO,
    "Dependents": YES_NO,
    "PhoneService": YES_NO,
    "MultipleLines": get_args(MultipleLines),
    "InternetService": get_args(InternetService),
    "OnlineSecurity": INTERNET_ADDON,
    "OnlineBackup": INTERNET_ADDON,
    "DeviceProtection": INTERNET_ADDON,
    "TechSupport": INTERNET_ADDON,
    "StreamingTV": INTERNET_ADDON,
    "StreamingMovies": INTERNET_ADDON,
    "Contract": get_args(Contract),
    "PaperlessBilling": YES_NO,
    "PaymentMethod": get_args(PaymentMethod),
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

#: The largest value each numeric feature may take in a request or a logged prediction:
#: twice the plausible maximum of the charges (a price rise past the plausible range is
#: drift for the monitor to report, past this it is impossible), and the export's own
#: cap of the tenure. The API's request models and the push endpoint
#: (:mod:`exporter.data.records`) both refuse values above it.
HARD_MAXIMA: dict[str, float] = {
    "tenure": NUMERIC_RANGES["tenure"][1],
    "MonthlyCharges": 2 * NUMERIC_RANGES["MonthlyCharges"][1],
    "TotalCharges": 2 * NUMERIC_RANGES["TotalCharges"][1],
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
    *INTERNET_ADDONS,
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
#: The features that are numbers in the data and to the model (SeniorCitizen's 0/1
#: included), and those of them that hold whole numbers.
MODEL_NUMERIC_FEATURES: tuple[str, ...] = tuple(NUMERIC_RANGES)
INTEGER_FEATURES: tuple[str, ...] = ("SeniorCitizen", "tenure")

ALL_COLUMNS: tuple[str, ...] = (ID_COLUMN, *FEATURES, TARGET)


# ------------------------------------------------------------------------ the target

#: The positive class: the customer churned. As text in the Churn column, and as code.
POSITIVE_LABEL = "Yes"
NEGATIVE_LABEL = "No"
POSITIVE = 1

#: A label's code: 1 churned, 0 stayed.
LabelCode = Literal[0, 1]

#: The label as the Churn column writes it, by code: ``LABELS[code]``.
LABELS: tuple[str, str] = (NEGATIVE_LABEL, POSITIVE_LABEL)

#: Every spelling of a Yes/No value the project reads, with its 0/1 code: text in any
#: case (surrounding whitespace ignored) and numbers by value (True and False hash as 1
#: and 0, so they are found too). The churn label and the SeniorCitizen flag use it.
YES_NO_CODES: dict[object, LabelCode] = {
    "yes": 1,
    "no": 0,
    "true": 1,
    "false": 0,
    "1": 1,
    "0": 0,
    1: 1,
    0: 0,
}


def yes_no_code(value: object) -> LabelCode | None:
    """The 0/1 code of a Yes/No value in any of :data:`YES_NO_CODES`' spellings; None
    for anything else."""
    key = value.strip().lower() if isinstance(value, str) else value
    try:
        return YES_NO_CODES.get(key)
    except TypeError:  # unhashable
        return None


def label_code(value: object) -> LabelCode:
    """The 0/1 code of a label (``"Yes"``/``"No"`` in any case, 1/0, True/False,
    ``"1"``/``"0"``); ValueError for anything else."""
    code = yes_no_code(value)
    if code is None:
        raise ValueError(f"not a churn label: {value!r} (expected Yes/No or 1/0)")
    return code


def label_text(code: int) -> str:
    """``"Yes"`` for 1, ``"No"`` for 0: the label as the Churn column writes it."""
    return POSITIVE_LABEL if code else NEGATIVE_LABEL


def positive_column(classes: Iterable[object] | None) -> int:
    """The column of ``predict_proba`` that holds P(churn), for a classifier's
    ``classes_``: the position of the positive class in any of its spellings, else the
    last column (scikit-learn sorts classes, so the positive one comes last)."""
    found: list[object] = list(classes) if classes is not None else [0, 1]
    for positive in (POSITIVE, POSITIVE_LABEL, True, "1"):
        if positive in found:
            return found.index(positive)
    return len(found) - 1
