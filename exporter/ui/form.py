"""The form's inputs: value sets, defaults from the reference, consistency rules.

Pure functions over plain dicts (feature name -> value), so the Streamlit script only
draws widgets and the rules are tested without a browser.

Defaults are the *typical customer* of the reference snapshot written at training
time: the mode of each categorical feature, the median of each numeric one. The
typical customer is kept consistent with the schema's dependencies: the six internet
add-ons are "No internet service" exactly when InternetService is "No", and
MultipleLines is "No phone service" exactly when PhoneService is "No". For a customer
who has the service, the typical value of a dependent feature is its mode among the
reference customers who have that service (:attr:`Reference.with_service`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from exporter.domain import customers, schema

#: Feature name -> (service feature, its "no service" value, the dependent's value then).
#: InternetService "No" means the add-ons are "No internet service"; PhoneService "No"
#: means MultipleLines is "No phone service".
DEPENDENTS: dict[str, tuple[str, str, str]] = {
    **{addon: ("InternetService", "No", schema.NO_INTERNET) for addon in schema.INTERNET_ADDONS},
    "MultipleLines": ("PhoneService", "No", schema.NO_PHONE),
}

#: Typical values when no reference snapshot is available: the modes and medians of the
#: public IBM Telco export (:data:`exporter.domain.customers.TYPICAL`).
BUILTIN_TYPICAL: dict[str, Any] = customers.TYPICAL

#: SeniorCitizen's selectbox text by code (the schema's Yes/No, shown for 1/0).
SENIOR_LABELS: dict[int, str] = dict(enumerate(schema.YES_NO))


def _with_service_builtin() -> dict[str, str]:
    return {name: "No" for name in DEPENDENTS}


@dataclass(frozen=True)
class Reference:
    """The typical customer and where it comes from."""

    #: One consistent customer: the 19 features at their typical values.
    typical: dict[str, Any]
    #: Typical value of each dependent feature among customers who have the service.
    with_service: dict[str, str] = field(default_factory=_with_service_builtin)
    #: Human-readable origin ("reference snapshot data/...parquet (2,800 rows)").
    source: str = "built-in defaults (the public Telco export's typical customer)"
    #: Why the reference snapshot was not used, when it was not.
    note: str | None = None


def builtin_reference(note: str | None = None) -> Reference:
    return Reference(typical=dict(BUILTIN_TYPICAL), note=note)


def _clamp(name: str, value: float) -> float:
    low, high = schema.NUMERIC_RANGES[name]
    return min(max(value, low), high)


def _mode(series: pd.Series, allowed: tuple[str, ...], fallback: str) -> str:
    counts = series[series.isin(allowed)].value_counts()
    if counts.empty:
        return fallback
    best = counts.max()
    # Ties go to the earlier value in the schema's order, so the result is stable.
    return next(v for v in allowed if counts.get(v, 0) == best)


def reference_from_frame(frame: pd.DataFrame, source: str) -> Reference:
    """The typical customer of a frame in the Telco schema (missing columns: built-in)."""
    typical: dict[str, Any] = {}
    for name in schema.FEATURES:
        if name not in frame.columns:
            typical[name] = BUILTIN_TYPICAL[name]
            continue
        column = frame[name]
        if name in schema.CATEGORIES:
            typical[name] = _mode(column, schema.CATEGORIES[name], BUILTIN_TYPICAL[name])
        elif name == "SeniorCitizen":
            values = pd.to_numeric(column, errors="coerce").dropna()
            values = values[values.isin([0, 1])]
            typical[name] = int(values.mode().min()) if len(values) else 0
        else:
            values = pd.to_numeric(column, errors="coerce").dropna()
            median = float(values.median()) if len(values) else float(BUILTIN_TYPICAL[name])
            median = _clamp(name, median)
            typical[name] = round(median) if name in schema.INTEGER_FEATURES else round(median, 2)
    with_service: dict[str, str] = {}
    for name, (service, no_service, _dependent_none) in DEPENDENTS.items():
        if name in frame.columns and service in frame.columns:
            has = frame[frame[service] != no_service][name]
            with_service[name] = _mode(has, schema.YES_NO, "No")
        else:
            with_service[name] = "No"
    typical = consistent(typical, with_service)
    return Reference(typical=typical, with_service=with_service, source=source)


def load_reference(path: str | Path) -> Reference:
    """The reference snapshot at `path`, or the built-in defaults (with a note) when it
    is absent or unreadable. Never raises for a data problem."""
    from exporter.data.loader import DataSchemaError, load_customers

    path = Path(path)
    if not path.is_file():
        return builtin_reference(f"no reference snapshot at {path} (run `churn-monitor train`)")
    try:
        frame = load_customers(path).frame
    except DataSchemaError as err:
        return builtin_reference(f"cannot use the reference snapshot: {err}")
    if frame.empty:
        return builtin_reference(f"the reference snapshot {path} has no rows")
    return reference_from_frame(frame, f"reference snapshot {path} ({len(frame):,} rows)")


def has_service(customer: Mapping[str, Any], dependent: str) -> bool:
    """True when the customer has the service `dependent` belongs to."""
    service, no_service, _ = DEPENDENTS[dependent]
    return customer.get(service) != no_service


def consistent(customer: Mapping[str, Any], with_service: Mapping[str, str]) -> dict[str, Any]:
    """`customer` with every dependent feature fitting its service.

    No service: the dependent is the "no service" value. Service: a dependent that still
    says "no service" becomes its typical value among customers with the service.
    """
    out = dict(customer)
    for name, (_service, _no, none_value) in DEPENDENTS.items():
        if not has_service(out, name):
            out[name] = none_value
        elif out.get(name) == none_value:
            out[name] = with_service.get(name, "No")
    return out


def options(name: str, customer: Mapping[str, Any]) -> tuple[str, ...]:
    """The values a selectbox offers for `name` given the other inputs.

    A dependent feature offers only "No service" without the service and only No/Yes
    with it; every other categorical feature offers its whole value set.
    """
    if name in DEPENDENTS:
        none_value = DEPENDENTS[name][2]
        return (none_value,) if not has_service(customer, name) else schema.YES_NO
    return schema.CATEGORIES[name]


def total_charges_estimate(tenure: int, monthly: float) -> float:
    """tenure x MonthlyCharges, rounded to cents and kept in the schema's range."""
    return round(_clamp("TotalCharges", tenure * monthly), 2)


def customer_payload(values: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /predict`` for the form's values (19 features)."""
    body: dict[str, Any] = {}
    for name in schema.FEATURES:
        value = values[name]
        if name in schema.INTEGER_FEATURES:
            body[name] = int(value)
        elif name == "MonthlyCharges":
            body[name] = round(float(value), 2)
        elif name == "TotalCharges":
            body[name] = (
                None if value is None or math.isnan(float(value)) else round(float(value), 2)
            )
        else:
            body[name] = str(value)
    return body
