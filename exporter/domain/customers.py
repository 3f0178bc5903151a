"""Two customers of the public IBM Telco export, as feature name -> value.

:data:`TYPICAL` is the export's typical customer (the Streamlit form's defaults when no
reference snapshot is available); :data:`FIRST` is the export's first row (the
prediction API's example request body). Both use the schema's names and values
(:mod:`exporter.domain.schema`).
"""

from __future__ import annotations

from typing import Any

#: The typical customer of the export (7,043 customers): the mode of each categorical
#: feature, the median of each numeric one; the 19 model features, no customerID.
TYPICAL: dict[str, Any] = {
    "gender": "Male",
    "SeniorCitizen": 0,
    "Partner": "No",
    "Dependents": "No",
    "tenure": 29,
    "PhoneService": "Yes",
    "MultipleLines": "No",
    "InternetService": "Fiber optic",
    "OnlineSecurity": "No",
    "OnlineBackup": "No",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "No",
    "StreamingMovies": "No",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": 70.35,
    "TotalCharges": 1397.48,
}

#: The export's first row, customer 7590-VHVEG, with its customerID: a new DSL customer
#: without phone service, typical in every feature not listed here.
FIRST: dict[str, Any] = {
    "customerID": "7590-VHVEG",
    **TYPICAL,
    "gender": "Female",
    "Partner": "Yes",
    "tenure": 1,
    "PhoneService": "No",
    "MultipleLines": "No phone service",
    "InternetService": "DSL",
    "OnlineBackup": "Yes",
    "MonthlyCharges": 29.85,
    "TotalCharges": 29.85,
}
