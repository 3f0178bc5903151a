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
